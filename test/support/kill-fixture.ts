import { spawn } from 'node:child_process';

/**
 * Runs a fixture (`test/fixtures/<name>.fixture.ts`, under tsx) in a child process, waits for its
 * first output — the fixture writes once it reached the moment the test wants to crash it in —
 * then SIGKILLs it and resolves once it has exited: a crash with no chance to clean up.
 */
export async function killFixtureWhenReady(fixture: string, args: readonly string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await new Promise<void>((resolve) =>
    child.stdout.on('data', () => {
      resolve();
    }),
  );
  child.kill('SIGKILL');
  await exited;
}
