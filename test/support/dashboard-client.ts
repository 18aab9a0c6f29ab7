import { request as httpRequest } from 'node:http';

/** One answer of the dashboard, as a browser would see it (redirects not followed). */
export interface Answer {
  readonly status: number;
  readonly text: string;
  readonly headers: Headers;
}

export interface RequestOptions {
  /** The session cookie (`name=value`), sent as a browser would. */
  readonly cookie?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Leave out Sec-Fetch-Site and Origin (a browser too old to send them, curl, a script). */
  readonly bare?: boolean;
}

async function answer(response: Response): Promise<Answer> {
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** GET through fetch(), redirects not followed (a 303's Location is asserted on). */
export async function get(url: string, options: RequestOptions = {}): Promise<Answer> {
  const response = await fetch(url, {
    redirect: 'manual',
    headers: { ...(options.cookie === undefined ? {} : { cookie: options.cookie }), ...options.headers },
  });
  return await answer(response);
}

/** A form post as a browser on the dashboard's own page sends it (Sec-Fetch-Site: same-origin), unless headers say otherwise. */
export async function post(
  url: string,
  fields: Readonly<Record<string, string | readonly string[]>>,
  options: RequestOptions = {},
): Promise<Answer> {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    for (const item of typeof value === 'string' ? [value] : value) body.append(name, item);
  }
  const response = await fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(options.bare === true ? {} : { 'sec-fetch-site': 'same-origin', origin: new URL(url).origin }),
      ...(options.cookie === undefined ? {} : { cookie: options.cookie }),
      ...options.headers,
    },
    body,
  });
  return await answer(response);
}

/** The CSRF token of a page's forms. */
export function csrfOf(html: string): string {
  const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  if (token === undefined) throw new Error('no csrf field on this page');
  return token;
}

/** `name=value` of a Set-Cookie answer, as the browser sends it back. */
export function cookieOf(answer: Answer): string {
  const set = answer.headers.get('set-cookie');
  if (set === null) throw new Error(`no Set-Cookie (status ${answer.status})`);
  return set.split(';')[0] ?? '';
}

/**
 * A raw GET with any Host header (fetch() sets Host itself): what a DNS-rebinding page sends.
 */
export async function getWithHost(url: string, host: string): Promise<number> {
  const target = new URL(url);
  return await new Promise((resolve, reject) => {
    const request = httpRequest(
      { hostname: target.hostname, port: target.port, path: target.pathname, headers: { host } },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.on('error', reject);
    request.end();
  });
}
