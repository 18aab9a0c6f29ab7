/**
 * W6: W3 through `txoutbox run` with 2 processes. The runner (src/cli `run`) is being written
 * alongside this harness; until `txoutbox run` exists this workload is skipped with a clear line,
 * and it lights up when it does.
 */
import { readFileSync } from 'node:fs';

const CLI_MAIN = new URL('../../src/cli/main.ts', import.meta.url);

/** undefined when `txoutbox run` exists, else why W6 cannot run. */
export function runnerUnavailable(): string | undefined {
  let source: string;
  try {
    source = readFileSync(CLI_MAIN, 'utf8');
  } catch {
    return 'runner not available: src/cli/main.ts is missing';
  }
  if (!/case\s+'run'\s*:/.test(source)) return 'runner not available: `txoutbox run` is not in src/cli yet';
  return 'runner not available: `txoutbox run` exists but its config format is not wired into the bench yet (bench/src/runner-workload.ts)';
}
