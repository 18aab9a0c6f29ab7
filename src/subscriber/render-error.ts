/** Longest `last_exception` stored in the DLQ. */
export const MAX_LAST_EXCEPTION_CHARS = 8192;
const TRUNCATED = '…[truncated]';

/**
 * Turns a handler's failure into the DLQ's `last_exception`. The default keeps the stack; pass
 * `renderError` to the Outbox to redact (messages can carry payload data or secrets) or return
 * null to store nothing.
 */
export type RenderError = (error: unknown) => string | null;

export function defaultRenderError(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return typeof error === 'string' ? error : (jsonOf(error) ?? String(error));
}

/** JSON.stringify's declared type hides that it returns undefined for functions and undefined. */
function jsonOf(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

export function boundedLastException(render: RenderError, error: unknown): string | null {
  let text: string | null;
  try {
    text = render(error);
  } catch {
    text = '[renderError threw; the original error is not recorded]';
  }
  if (text === null) return null;
  // PostgreSQL text cannot hold NUL: an error message carrying one (a handler quoting binary input)
  // would fail the retry or DLQ write that stores it, every time.
  if (text.includes('\0')) text = text.replaceAll('\0', '\\0');
  return text.length > MAX_LAST_EXCEPTION_CHARS ? text.slice(0, MAX_LAST_EXCEPTION_CHARS - TRUNCATED.length) + TRUNCATED : text;
}
