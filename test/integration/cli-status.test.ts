import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { NoRetry, type Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { txoutboxBin, txoutboxMain } from '../support/txoutbox-bin.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'cli_status';
/** Above status()'s exact-count cap (10,000): this queue's ready count is the planner's estimate. */
const BULK = 12_000;

async function status(...args: string[]) {
  return await txoutboxBin(['status', ...args, '--table', TABLE], { env: { DATABASE_URL: db.url } });
}

interface StatusJson {
  at: string;
  queues: {
    queue: string;
    ready: number;
    scheduled: number;
    leased: number;
    dlq: number | null;
    estimated: Record<'ready' | 'scheduled' | 'leased' | 'dlq', boolean>;
    oldestReadyAgeMs: number;
    paused: boolean;
    pausedAt: string | null;
    pauseReason: string | null;
    throughput: { minute: string; handled: number; retried: number; deadLettered: number }[];
    handledPerMinute: number;
  }[];
}

describe('txoutbox status', () => {
  let holder: Outbox;
  let release!: () => void;

  // Every state, each in a queue of its own, made the real way:
  // - orders: 2 ready, 1 scheduled an hour out;
  // - mails: 1 leased, by a subscriber whose handler blocks until the file ends;
  // - fast: 3 handled by a subscriber (its Outbox stopped, so its per-minute counts are flushed);
  // - spam: 1 dead letter (NoRetry), in the same Outbox;
  // - billing: nothing but a pause with a reason;
  // - bulk: 12,000 ready rows, more than status() counts exactly (ANALYZEd for the estimate).
  before(async () => {
    const handling = (await migratedOutbox(newOutbox, db.pool, TABLE)).outbox;
    let handled = 0;
    handling.subscribe(
      'fast',
      () => {
        handled += 1;
      },
      FAST_POLL,
    );
    handling.subscribe(
      'spam',
      () => {
        throw new RangeError('spam');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    handling.start();
    await publishCommitted(handling, db.pool, 'fast', [1, 2, 3]);
    await publishCommitted(handling, db.pool, 'spam', ['buy now']);
    await waitFor(async () => handled === 3 && (await db.pool.query(`SELECT 1 FROM ${TABLE}_dlq`)).rowCount === 1, {
      what: '3 handled, 1 dead letter',
    });
    await handling.stop();

    holder = newOutbox({ pool: db.pool, table: TABLE });
    const released = new Promise<void>((resolve) => (release = resolve));
    let running = 0;
    holder.subscribe(
      'mails',
      async () => {
        running += 1;
        await released;
      },
      { concurrency: 1, fetchBatchSize: 1, ...FAST_POLL },
    );
    await publishCommitted(holder, db.pool, 'mails', [{ to: 'a@example.com' }]);
    holder.start();
    await waitFor(() => running === 1, { what: 'the mails row leased' });

    await publishCommitted(holder, db.pool, 'orders', [{ order: 1 }, { order: 2 }]);
    await inTransaction(db.pool, (c) => holder.publish(c, 'orders', { order: 3 }, { activateInMs: 3_600_000 }));
    await holder.pause('billing', { reason: 'invoice run' });
    await publishCommitted(
      holder,
      db.pool,
      'bulk',
      Array.from({ length: BULK }, (_, i) => i),
    );
    await db.pool.query(`ANALYZE ${TABLE}`);
  });

  after(async () => {
    release();
    await holder.stop();
  });

  test('--json: every queue with its depth by state, DLQ, oldest age, pause and throughput; the big count estimated', async () => {
    const run = await status('--json');
    assert.equal(run.code, 0, run.err);
    const report = JSON.parse(run.out) as StatusJson;
    assert.ok(!Number.isNaN(Date.parse(report.at)));
    const byQueue = new Map(report.queues.map((q) => [q.queue, q]));
    assert.deepEqual([...byQueue.keys()], ['billing', 'bulk', 'fast', 'mails', 'orders', 'spam'], 'sorted by name');
    const depth = (queue: string) => {
      const q = byQueue.get(queue);
      return [q?.ready, q?.scheduled, q?.leased, q?.dlq, q?.paused];
    };
    assert.deepEqual(depth('orders'), [2, 1, 0, 0, false]);
    assert.deepEqual(depth('mails'), [0, 0, 1, 0, false]);
    assert.deepEqual(depth('spam'), [0, 0, 0, 1, false]);
    assert.deepEqual(depth('billing'), [0, 0, 0, 0, true]);
    assert.deepEqual(depth('fast'), [0, 0, 0, 0, false]);

    const orders = byQueue.get('orders');
    assert.ok(orders !== undefined && orders.oldestReadyAgeMs >= 0);
    assert.deepEqual(orders.estimated, { ready: false, scheduled: false, leased: false, dlq: false });
    const billing = byQueue.get('billing');
    assert.equal(billing?.pauseReason, 'invoice run');
    assert.ok(billing.pausedAt !== null && !Number.isNaN(Date.parse(billing.pausedAt)));

    const fast = byQueue.get('fast');
    assert.equal(fast?.throughput.length, 16, 'the default 15 whole minutes and the current one');
    assert.equal(
      fast.throughput.reduce((sum, m) => sum + m.handled, 0),
      3,
    );
    assert.ok(fast.handledPerMinute > 0);
    const spam = byQueue.get('spam');
    assert.equal(
      spam?.throughput.reduce((sum, m) => sum + m.deadLettered, 0),
      1,
    );

    const bulk = byQueue.get('bulk');
    assert.equal(bulk?.estimated.ready, true);
    assert.ok(bulk.ready > 10_000, `an estimate, never below the cap: ${bulk.ready}`);
  });

  test('the table (the default, also without a terminal): one row per queue, ~ on the estimate, the pause below', async () => {
    const run = await status();
    assert.equal(run.code, 0, run.err);
    const lines = run.out.split('\n');
    assert.match(lines[0] ?? '', /^QUEUE\s+READY\s+SCHEDULED\s+LEASED\s+DLQ\s+OLDEST READY\s+HANDLED\/MIN\s+PAUSED$/);
    const row = (queue: string) => lines.find((line) => line.startsWith(`${queue} `)) ?? '';
    assert.match(row('billing'), /^billing\s+0\s+0\s+0\s+0\s+-\s+0\s+paused$/);
    assert.match(row('bulk'), /^bulk\s+~\d{2},\d{3}\s+0\s+0\s+0\s+\d+s\s+0$/);
    assert.match(row('orders'), /^orders\s+2\s+1\s+0\s+0\s+\d+s\s+0$/);
    assert.match(row('mails'), /^mails\s+0\s+0\s+1\s+0\s+-\s+0$/);
    assert.match(row('fast'), /^fast\s+0\s+0\s+0\s+0\s+-\s+\d+(\.\d)?$/);
    assert.match(run.out, /\nbilling is paused since \S+: "invoice run" \(txoutbox queue resume billing\)\n/);
    assert.match(run.out, /\n~ = planner estimate/);
    assert.match(run.out, /\nas of \S+\n$/);
  });

  test('--queue: exactly the queues asked, an empty one included; --minutes sets the history', async () => {
    const run = await status('--json', '--queue', 'orders', '--queue', 'nothing-here', '--minutes', '3');
    assert.equal(run.code, 0, run.err);
    const report = JSON.parse(run.out) as StatusJson;
    assert.deepEqual(
      report.queues.map((q) => [q.queue, q.ready, q.throughput.length]),
      [
        ['nothing-here', 0, 4],
        ['orders', 2, 4],
      ],
    );
  });

  test('bad usage exits 2 and names the flag', async () => {
    const spawned = await status('--minutes', 'x');
    assert.equal(spawned.code, 2, spawned.err);
    for (const [args, message] of [
      [['--minutes', 'x'], /--minutes: expected a whole number, got 'x'/],
      [['--minutes', '0'], /--minutes: expected an integer from 1 to \d+, got '0'/],
      [['--queue', ''], /--queue: expected a non-empty string/],
      [['--state', 'ready'], /--state/],
      [['orders'], /unexpected argument 'orders'/],
    ] as const) {
      const result = await txoutboxMain(['status', ...args, '--table', TABLE], { DATABASE_URL: db.url });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.err}`);
      assert.match(result.err, message, args.join(' '));
    }
    // Reported (review): these exited 1 naming the API's option (`table:`, `connectionString:`).
    for (const [args, message] of [
      [['--table', 'bad name'], /--table: "bad name" is not a valid identifier/],
      [['--table', TABLE, '--dlq-table', 'x;y'], /--dlq-table: "x;y" is not a valid identifier/],
    ] as const) {
      const result = await txoutboxMain(['status', ...args], { DATABASE_URL: db.url });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.err}`);
      assert.match(result.err, message, args.join(' '));
    }
    // An empty --database-url (an unset shell variable) counts as not given: DATABASE_URL is used.
    const empty = await txoutboxMain(['status', '--database-url', '', '--table', TABLE], { DATABASE_URL: db.url });
    assert.equal(empty.code, 0, empty.err);
  });
});
