/** Any origin no request can come from: `next` is resolved against it the way a browser would resolve a Location. */
const DUMMY_ORIGIN = 'http://local-path.invalid';

/**
 * Where a redirect may send the browser (a sign-in's `next`, the URL of a `?token=` link): a path
 * and query of this dashboard, never another site. The target is resolved the way a browser
 * resolves a Location (WHATWG URL: tabs and newlines dropped, `\` read as `/`, `.` segments
 * removed), and only a same-origin result is kept, as its path with any run of leading slashes
 * folded into one (`/.//evil.example` resolves to the path `//evil.example`, which a browser would
 * read as another host) plus its query. A control character anywhere, or any other result, gives `/`.
 */
export function safeLocal(target: string | null | undefined): string {
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  if (target === null || target === undefined || /[\u0000-\u001f\u007f-\u009f]/.test(target)) return '/';
  let url: URL;
  try {
    url = new URL(target, DUMMY_ORIGIN);
  } catch {
    return '/';
  }
  if (url.origin !== DUMMY_ORIGIN) return '/';
  return `${url.pathname.replace(/^\/+/, '/')}${url.search}`;
}
