/**
 * `txoutbox run` and its connections: the start-up budget line (and its warning) read against the
 * real server, the connections a child really holds under load never above its budget
 * (pg_stat_activity by the application_name each process connects with), and a config that goes
 * through a real PgBouncer in transaction mode (architecture/pgbouncer.md).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { useTestDatabase } from '../support/database.js';
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.js';
import { type LogLine, runnerTestKit } from '../support/runner-process.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const HANDLERS = fileURLToPath(new URL('../fixtures/runner/handlers.ts', import.meta.url));
const { dir, prepare, publishMany, handledCount, remainingRows, start, whenStarted } = runnerTestKit(db);

let bouncer: PgBouncer | { skip: string } | undefined;
after(async () => {
  if (bouncer !== undefined && !('skip' in bouncer)) await bouncer.close();
});

/** A config file: `database` lines under url (the env var `urlVar`), one consumer `orders` with `consumer` lines. */
function writeConfig(
  name: string,
  table: string,
  database: readonly string[],
  consumer: readonly string[],
  urlVar = 'RUNNER_TEST_DATABASE_URL',
): string {
  const lines = [
    'database:',
    `  url: \${${urlVar}}`,
    ...database.map((line) => `  ${line}`),
    `table: ${table}`,
    'gracefulTimeoutMs: 5000',
    'metrics:',
    '  prometheus:',
    '    port: 0',
    'consumers:',
    '  orders:',
    `    handler: ${HANDLERS}`,
    '    export: orders',
    '    queues: [orders]',
    '    fetchBatchSize: 20',
    '    leaseTtlMs: 3000',
    '    minPollIntervalMs: 50',
    '    maxPollIntervalMs: 200',
    ...consumer.map((line) => `    ${line}`),
  ];
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

const isBudgetLine = (line: LogLine): boolean => line.msg.startsWith('connection budget: ');

/** Connections of this file's database whose application_name is `name`, now. */
async function connectionsOf(name: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
    [name],
  );
  return rows[0]?.n ?? 0;
}

describe('txoutbox run: connections', () => {
  test('under load a child never holds more connections than its budget, and the start-up line says the budget', async () => {
    const outbox = await prepare('budget_load');
    // Transactional: each running handler holds a connection, so the pool is really used.
    const config = writeConfig('load', 'budget_load', [], ['processes: 2', 'transactional: true', 'concurrency: 4']);
    const runner = start(config, { HANDLER_DELAY_MS: '3' });
    const line = await runner.waitForLog(isBudgetLine, 'the budget line');
    // pool 4 + 3, LISTEN and NOTIFY: 9 per process; 2 processes and the supervisor's 3 (pool 2 + the queue-state lock's session).
    assert.equal(line.level, 'info');
    assert.match(
      line.msg,
      /^connection budget: orders 9 \(pool 7 \+ LISTEN \+ NOTIFY\) × 2, supervisor 3 \(pool 2 \+ queue-state lock\) = 21 per host; server max_connections \d+ \(\d+ reserved\), \d+ in use: \d+ hosts? of this config fit$/,
    );
    assert.deepEqual([line.perHost, line.perProcess], [21, { orders: 9 }]);
    await whenStarted(runner, { orders: 2 });

    await publishMany(outbox, 'orders', 1500);
    let most = 0;
    const sampled: number[] = [];
    await waitFor(
      async () => {
        const now = await connectionsOf('txoutbox-orders');
        sampled.push(now);
        most = Math.max(most, now);
        return (await remainingRows('budget_load')) === 0;
      },
      { timeoutMs: 60_000, intervalMs: 5, what: 'the backlog drained' },
    );
    assert.equal(await handledCount('orders'), 1500);
    assert.ok(most <= 2 * 9, `at most 2 × 9 connections of txoutbox-orders, saw ${most}`);
    // The pool was exercised: more than the claim loop's and LISTEN's alone, in at least one sample.
    assert.ok(most > 2 * 2, `the load used the pools (max ${most} over ${sampled.length} samples)`);
    assert.ok((await connectionsOf('txoutbox-supervisor')) <= 3, 'the supervisor holds at most its pool and the lock session');
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('a config whose budget approaches max_connections starts with a warning that says how to fit', async () => {
    await prepare('budget_warn');
    // 300 transactional slots: a pool of 303 per process, far over any test server's max_connections.
    const config = writeConfig('warn', 'budget_warn', [], ['transactional: true', 'concurrency: 300']);
    const runner = start(config);
    const line = await runner.waitForLog(isBudgetLine, 'the budget line');
    assert.equal(line.level, 'warn');
    assert.match(
      line.msg,
      /orders 305 \(pool 303 \+ LISTEN \+ NOTIFY\) × 1, supervisor 3 \(pool 2 \+ queue-state lock\) = 308 per host; .*: 0 hosts of this config fit — this host takes the server to \d+ of \d+ connections\. Lower processes or poolSize, put PgBouncer in front/,
    );
    await whenStarted(runner, { orders: 1 });
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('through PgBouncer in transaction mode (LISTEN on a direct connection): drains, and stops on SIGTERM', async (t) => {
    bouncer = await startPgBouncer();
    if ('skip' in bouncer) {
      t.skip(bouncer.skip);
      return;
    }
    const outbox = await prepare('budget_bouncer');
    const config = writeConfig(
      'bouncer',
      'budget_bouncer',
      ['transactionPooling: true', 'listenUrl: ${RUNNER_TEST_DATABASE_URL}'],
      ['processes: 2', 'concurrency: 4'],
      'RUNNER_TEST_BOUNCER_URL',
    );
    const runner = start(config, { RUNNER_TEST_BOUNCER_URL: bouncer.urlFor(db.url) });
    const line = await runner.waitForLog(isBudgetLine, 'the budget line');
    // Two LISTEN connections and the supervisor's queue-state lock session, all on listenUrl.
    assert.match(line.msg, /through a transaction pooler: .* plus 3 direct connections per host/);
    await whenStarted(runner, { orders: 2 });
    await publishMany(outbox, 'orders', 500);
    await waitFor(async () => (await remainingRows('budget_bouncer')) === 0, {
      timeoutMs: 30_000,
      what: 'drained through PgBouncer',
    });
    assert.equal(await handledCount('orders'), 500);
    // LISTEN went to the server directly, one per process (PgBouncer's server connections carry the
    // client's application_name too, so the LISTEN statement tells them apart). A process opens it
    // when its subscription first waits for work: one busy with the rows until now may still be
    // connecting.
    const listening = async () =>
      (
        await db.pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'txoutbox-orders' AND query LIKE 'LISTEN %'",
        )
      ).rows[0]?.n;
    await waitFor(async () => (await listening()) === 2, { what: 'the two direct LISTEN connections' });
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
    assert.equal(
      runner.logs.filter((l) => l.level === 'error').length,
      0,
      runner.logs
        .filter((l) => l.level === 'error')
        .map((l) => JSON.stringify(l))
        .join('\n'),
    );
  });
});
