/**
 * A real headless Chromium for end-to-end tests (architecture/browser-tests.md): Debian's `chromium`,
 * installed by scripts/ensure-chromium.sh, driven by playwright-core through its executable path
 * (playwright-core never downloads a browser of its own).
 *
 *   const opened = await openPage();
 *   if (opened.skip !== undefined) return t.skip(opened.skip);
 *   t.after(() => opened.close());
 *   await opened.page.goto(url);
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-chromium.sh', import.meta.url));

/** Where the docs' screenshots live (README and architecture pages link them). */
export const DOCS_SCREENSHOTS = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));

/** The fixed viewport every page opens at, so a regenerated screenshot differs only where the page does. */
export const VIEWPORT = { width: 1280, height: 800 } as const;

// Bounds, not expectations: a step that needs longer is broken, and the test says which step hung
// instead of running into the file's own timeout. Generous, because the full suite shares 2 cores.
const LAUNCH_TIMEOUT_MS = 60_000;
const ACTION_TIMEOUT_MS = 15_000;
const CLOSE_TIMEOUT_MS = 10_000;

export type Chromium =
  | { readonly path: string; readonly version: string; readonly skip?: undefined }
  | { readonly path?: undefined; readonly version?: undefined; readonly skip: string };

let ensured: Promise<Chromium> | undefined;

/**
 * In CI (`CI` set, as .ci/run and every CI service do) the setup contract holds: whatever the tests
 * need, the project's scripts install. A browser test skipped there would turn a broken dashboard
 * into a green run, so a Chromium that cannot be installed fails instead. `CI=false` or `CI=0`
 * count as unset.
 */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.trim().toLowerCase();
  return value !== undefined && value !== '' && value !== 'false' && value !== '0';
}

/**
 * Debian's chromium, installed by scripts/ensure-chromium.sh if needed (once per process). When it
 * cannot be installed (not root and no `sudo -n`, no apt-get) the result carries the reason, printed
 * loudly here: the caller skips with `t.skip(reason)`, as the promtool tests do (test/support/promtool.ts).
 * In CI (inCi()) it rejects with that reason instead, and every browser test fails.
 */
export function ensureChromium(): Promise<Chromium> {
  ensured ??= new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const path = /^chromium=(.+)$/m.exec(stdout)?.[1]?.trim();
      const version = /^chromium-version=(.+)$/m.exec(stdout)?.[1]?.trim() ?? 'unknown';
      if (error === null && path !== undefined && path !== '') {
        resolve({ path, version });
        return;
      }
      // The script's last stderr line is its own loud `!!!` line: keep what it says, not the marker.
      const said = stderr.trim().split('\n').at(-1)?.replace(/^!!! /, '');
      const reason = `chromium unavailable (scripts/ensure-chromium.sh failed: ${said === undefined || said === '' ? (error?.message ?? 'no output') : said})`;
      if (inCi()) {
        reject(
          new Error(
            `CI is set, so the browser tests fail instead of skipping: the project's scripts must install everything the tests need (architecture/browser-tests.md). ${reason}`,
          ),
        );
        return;
      }
      console.warn(`!!! SKIPPING browser tests: ${reason}`);
      resolve({ skip: reason });
    });
  });
  return ensured;
}

export interface PageOptions {
  /** false: the page as a visitor with JavaScript turned off sees it (server-rendered HTML only). */
  readonly javaScriptEnabled?: boolean;
}

export type OpenedPage =
  | { readonly page: Page; readonly chromium: string; readonly close: () => Promise<void>; readonly skip?: undefined }
  | { readonly page?: undefined; readonly chromium?: undefined; readonly close?: undefined; readonly skip: string };

// One browser per test process, shared by the pages open at the same time (a context is cheap, a
// launch is not); it closes with the last of them, so nothing outlives the test that opened it.
let shared: { browser: Promise<Browser>; open: number } | undefined;

/**
 * A page in a fresh browser context (its own cookies and storage) at VIEWPORT, in a headless
 * Chromium launched on first use. `close()` closes the context, and the browser with the last one;
 * bounded by CLOSE_TIMEOUT_MS.
 */
export async function openPage(options: PageOptions = {}): Promise<OpenedPage> {
  const installed = await ensureChromium();
  if (installed.skip !== undefined) return { skip: installed.skip };

  if (shared === undefined) {
    const session = { browser: launch(installed.path), open: 0 };
    // A crashed or killed Chromium is not reused: the next page launches a new one.
    void session.browser.then(
      (browser) =>
        browser.on('disconnected', () => {
          if (shared === session) shared = undefined;
        }),
      () => undefined,
    );
    shared = session;
  }
  const session = shared;
  session.open += 1;
  let context: BrowserContext | undefined;
  try {
    const browser = await session.browser;
    context = await browser.newContext({
      viewport: VIEWPORT,
      deviceScaleFactor: 1,
      // The same page renders the same pixels on every machine: no OS preference leaks in.
      colorScheme: 'light',
      reducedMotion: 'reduce',
      locale: 'en-US',
      timezoneId: 'UTC',
      javaScriptEnabled: options.javaScriptEnabled ?? true,
    });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    const page = await context.newPage();
    let closed: Promise<void> | undefined;
    const opened = context;
    return {
      page,
      chromium: installed.version,
      close: () => (closed ??= release(session, opened)),
    };
  } catch (error) {
    // The error that matters is this one (a failed launch rejects release's close again).
    await release(session, context).catch(() => undefined);
    throw error;
  }
}

function launch(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: LAUNCH_TIMEOUT_MS,
    // Chromium refuses to start as root with its sandbox on ("Running as root without --no-sandbox is
    // not supported"), and root is what CI and these machines are. As any other user the sandbox stays
    // on (user namespaces, or Debian's chromium-sandbox): a test never needs it off.
    // playwright-core adds the rest itself: --headless, --disable-background-networking,
    // --disable-component-update, --disable-sync, --no-first-run, --disable-dev-shm-usage and a fresh
    // temporary profile; on this machine's closed network nothing may try to reach Google.
    chromiumSandbox: process.getuid?.() !== 0,
  });
}

async function release(session: { browser: Promise<Browser>; open: number }, context: BrowserContext | undefined): Promise<void> {
  session.open -= 1;
  const last = session.open === 0;
  if (last && shared === session) shared = undefined;
  await bounded(
    (async () => {
      await context?.close();
      if (last) await (await session.browser).close();
    })(),
    'closing Chromium',
  );
}

// If close hangs the test fails here, with the step named; playwright-core kills the browser process
// when this test process exits, so a hung close leaves nothing behind either way.
async function bounded(work: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what} took longer than ${CLOSE_TIMEOUT_MS} ms`));
    }, CLOSE_TIMEOUT_MS);
  });
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Saves the viewport of `page` as `<dir>/<name>.png` (dir defaults to docs/screenshots/, created if
 * missing) and resolves with the file's path. Animations and the caret are frozen, so two runs over
 * the same data give the same picture.
 */
export async function screenshot(page: Page, name: string, dir: string = DOCS_SCREENSHOTS): Promise<string> {
  if (!/^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(name)) {
    throw new Error(`screenshot name ${JSON.stringify(name)}: expected lowercase words joined by '-' (it becomes a file name)`);
  }
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, type: 'png', fullPage: false, animations: 'disabled', caret: 'hide', scale: 'css' });
  return path;
}
