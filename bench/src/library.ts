/**
 * txoutbox as users run it: the compiled `dist/` (tsc output), not `src/` through tsx. tsx's
 * transform keeps function names by wrapping every function and class it defines in a `__name()`
 * call (an Object.defineProperty), and the delivery path defines a few per message: measured, ~15 %
 * of the Node CPU of a drain, a cost no user pays. `npm run bench` builds `dist/` first (see
 * ensure-build.mjs); the types still come from `src/`, so the harness typechecks against the code.
 */
import type * as Root from '../../src/index.js';
import type * as Opentelemetry from '../../src/opentelemetry/index.js';
import type * as Prometheus from '../../src/prometheus/index.js';

const dist = (path: string): string => new URL(`../../dist/${path}`, import.meta.url).href;

export const txoutbox = (await import(dist('index.js'))) as typeof Root;
export const txoutboxPrometheus = (await import(dist('prometheus/index.js'))) as typeof Prometheus;
export const loadOpentelemetry = async (): Promise<typeof Opentelemetry> =>
  (await import(dist('opentelemetry/index.js'))) as typeof Opentelemetry;

/** `txoutbox` (the bin) from dist/. */
export const CLI_MAIN_JS = new URL('../../dist/cli/main.js', import.meta.url);
