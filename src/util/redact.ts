/**
 * Connection strings carry passwords; they must never reach logs, errors or metrics. Every place
 * that shows a connection string to a human goes through this function.
 */
export function redactConnectionString(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password !== '') url.password = '***';
    for (const key of [...url.searchParams.keys()]) {
      if (/^(password|pass|sslpassword)$/i.test(key)) url.searchParams.set(key, '***');
    }
    return url.toString();
  } catch {
    // Not a URL (a libpq keyword string such as "host=x password=y"): mask every password=value.
    return connectionString.replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
  }
}
