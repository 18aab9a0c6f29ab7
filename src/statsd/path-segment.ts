/**
 * A name as one segment of a statsd key: a `.` would nest the path one level deeper, and a `:`, `|`
 * or line break would break the line (`…exception.a:b:1|c`), which the server drops or misreads.
 */
export function pathSegment(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_');
}
