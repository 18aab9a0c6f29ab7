import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-prometheus.sh', import.meta.url));

export type Promtool =
  | { readonly path: string; readonly prometheus: string; readonly skip?: undefined }
  | { readonly path?: undefined; readonly prometheus?: undefined; readonly skip: string };

let ensured: Promise<Promtool> | undefined;

/**
 * promtool, installed by scripts/ensure-prometheus.sh if needed (once per process). When it cannot
 * be installed (not root, no apt-get) the result carries the reason: the caller skips with
 * `t.skip(reason)`, and the reason is printed loudly here, so a skipped check never goes unnoticed.
 */
export function promtool(): Promise<Promtool> {
  ensured ??= new Promise((resolve) => {
    execFile('bash', [SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const path = /^promtool=(.+)$/m.exec(stdout)?.[1]?.trim();
      const prometheus = /^prometheus=(.+)$/m.exec(stdout)?.[1]?.trim();
      if (error === null && path !== undefined && path !== '' && prometheus !== undefined && prometheus !== '') {
        resolve({ path, prometheus });
        return;
      }
      const reason = `promtool unavailable (scripts/ensure-prometheus.sh failed: ${stderr.trim().split('\n').at(-1) ?? error?.message ?? 'no output'})`;
      console.warn(`!!! SKIPPING promtool checks: ${reason}`);
      resolve({ skip: reason });
    });
  });
  return ensured;
}

/** Runs `promtool check metrics` on `exposition` (stdin); resolves with its exit code and output. */
export function checkMetrics(path: string, exposition: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code: code ?? 1, output });
    });
    child.stdin.end(exposition);
  });
}
