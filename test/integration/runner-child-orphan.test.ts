/**
 * A runner child never outlives its supervisor (protocol.ts), even when the supervisor is gone
 * before the child listens for it: the channel closed while the child was still loading its
 * OpenTelemetry peers, the 'disconnect' event came before its listener, and the child ran on, an
 * orphan nobody drains. The real child entry point, forked as the supervisor forks it.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { ConsumerChildSpec } from '../../src/runner/protocol.js';
import { useTestDatabase } from '../support/database.js';

const db = useTestDatabase(import.meta.url);
const CHILD_ENTRY = fileURLToPath(new URL('../../src/runner/child/child-main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'txoutbox-orphan-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** One child started with `spec`, its channel closed `afterMs` later: how it ended, and whether it saw the early close. */
async function startThenDisconnect(
  spec: ConsumerChildSpec,
  afterMs: number,
): Promise<{ code: number | null; signal: string | null; early: boolean }> {
  const child = fork(CHILD_ENTRY, [], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, TXOUTBOX_LOG_LEVEL: 'info' },
    execArgv: ['--import', 'tsx'],
  });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = once(child, 'exit');
  await once(child, 'spawn');
  child.send({ type: 'start', spec });
  await new Promise((resolve) => setTimeout(resolve, afterMs));
  // The supervisor dies: the channel closes under the starting child.
  if (child.connected) child.disconnect();
  // An orphan runs on: killed here, after a generous wait.
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code, signal] = (await exited) as [number | null, string | null];
  clearTimeout(timer);
  return { code, signal, early: output.includes('supervisor channel closed before the consumer started') };
}

test('the supervisor gone before the child listened for it: the child drains and exits, never an orphan', async (t) => {
  const handlerPath = join(dir, 'handler.mjs');
  writeFileSync(handlerPath, 'export default async () => {};\n');
  const spec: ConsumerChildSpec = {
    consumer: 'orphan',
    databaseUrl: db.url,
    poolSize: 2,
    queryTimeoutMs: 5_000,
    table: 'orphan_outbox',
    dlqTable: false,
    gracefulTimeoutMs: 1_000,
    queues: ['orders'],
    subscribe: {},
    metricsPrefix: 'txoutbox',
    flushIntervalMs: 500,
    statsd: null,
    handlerPath,
    handlerExport: 'default',
    // Loading the tracing peers is the widest window between `start` and the child's listeners.
    tracing: {
      endpoint: 'http://127.0.0.1:1/v1/traces',
      headers: {},
      serviceName: 'orphan',
      sampler: 1,
      consumerSpanRelation: 'parent',
      skipUnsampledParents: true,
    },
  };
  // Where the window falls depends on the machine: closes swept across it until one lands in it.
  const landed: number[] = [];
  for (let afterMs = 300; afterMs <= 1_800 && landed.length === 0; afterMs += 150) {
    const ended = await startThenDisconnect(spec, afterMs);
    assert.deepEqual(
      { code: ended.code, signal: ended.signal },
      { code: 0, signal: null },
      `closed after ${afterMs} ms: exited by itself`,
    );
    if (ended.early) landed.push(afterMs);
  }
  t.diagnostic(
    landed.length === 0 ? 'no close landed in the window on this machine' : `a close after ${landed[0]} ms landed in the window`,
  );
});
