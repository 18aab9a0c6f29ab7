/**
 * The flags a runner child is forked with (consumer-slot.ts childExecArgv): SIGHUP is ignored from
 * the child's first module on, before tsx or the child's own modules load, so a SIGHUP sent to the
 * runner's whole process group cannot end a child that is still loading. Checked here with a real
 * Node process: one that signals itself SIGHUP from its main script survives.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { childExecArgv } from '../../src/runner/consumer-slot.js';

test('a child ignores SIGHUP from its first module on; the parent flags follow; none under a policy', () => {
  const argv = childExecArgv(['--import', 'tsx', '--max-old-space-size=512']);
  assert.equal(argv[0], '--import');
  assert.match(String(argv[1]), /^data:text\/javascript,/);
  assert.deepEqual(argv.slice(2), ['--import', 'tsx', '--max-old-space-size=512']);

  // The import runs before the main script: a SIGHUP to itself there does not end the process.
  const child = spawnSync(
    process.execPath,
    [...childExecArgv([]), '-e', "process.kill(process.pid, 'SIGHUP'); setTimeout(() => console.log('alive'), 50)"],
    { encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(child.signal, null, `ended by ${String(child.signal)}`);
  assert.equal(child.stdout.trim(), 'alive');

  // Without it, Node's default for SIGHUP ends the process: the check above means something.
  const bare = spawnSync(process.execPath, ['-e', "process.kill(process.pid, 'SIGHUP'); setTimeout(() => undefined, 50)"], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(bare.signal, 'SIGHUP');

  assert.deepEqual(childExecArgv(['--experimental-policy=policy.json']), ['--experimental-policy=policy.json']);
});
