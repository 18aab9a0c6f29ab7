import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { txoutboxBin, txoutboxMain } from '../support/txoutbox-bin.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'cli_queue';

async function queueCli(...args: string[]) {
  return await txoutboxBin(['queue', ...args, '--table', TABLE], { env: { DATABASE_URL: db.url } });
}

interface PeekJson {
  rows: { id: string; state: string; body: unknown; payload: string; bodyPreview: string; acquiredAt: string | null }[];
  nextCursor: string | null;
}

describe('txoutbox queue', () => {
  let outbox: Outbox;
  let release!: () => void;
  const ids: Record<string, string> = {};

  // orders: two ready rows (published in two transactions, so oldest first is id order) and one
  // scheduled an hour out. mails: one row leased by a real subscriber whose handler blocks until
  // the file ends (concurrency 1, fetchBatchSize 1: it claims that row and nothing else).
  before(async () => {
    outbox = (await migratedOutbox(newOutbox, db.pool, TABLE)).outbox;
    const released = new Promise<void>((resolve) => (release = resolve));
    let running = 0;
    outbox.subscribe(
      'mails',
      async () => {
        running += 1;
        await released;
      },
      { concurrency: 1, fetchBatchSize: 1, ...FAST_POLL },
    );
    [ids.leased = ''] = await publishCommitted(outbox, db.pool, 'mails', [{ to: 'a@example.com' }]);
    outbox.start();
    await waitFor(() => running === 1, { what: 'the mails row leased by its running handler' });
    [ids.ready1 = ''] = await publishCommitted(outbox, db.pool, 'orders', [{ order: 1 }]);
    [ids.ready2 = ''] = await publishCommitted(outbox, db.pool, 'orders', ['plain\ntext']);
    ids.scheduled =
      (await inTransaction(db.pool, (c) => outbox.publish(c, 'orders', { order: 3 }, { activateInMs: 3_600_000 }))) ?? '';
  });

  after(async () => {
    release();
    await outbox.stop();
  });

  test('peek --json: every pending row oldest first with its state, decoded body and base64 payload; --limit pages with --cursor', async () => {
    const all = await queueCli('peek', 'orders', '--json');
    assert.equal(all.code, 0, all.err);
    const page = JSON.parse(all.out) as PeekJson;
    assert.deepEqual(
      page.rows.map((r) => [r.state, r.id]),
      [
        ['ready', ids.ready1],
        ['ready', ids.ready2],
        ['scheduled', ids.scheduled],
      ],
    );
    assert.equal(page.nextCursor, null);
    const [first] = page.rows;
    assert.deepEqual(first?.body, { order: 1 });
    assert.equal(page.rows[1]?.body, 'plain\ntext');
    assert.deepEqual(JSON.parse(Buffer.from(first?.payload ?? '', 'base64').toString('utf8')), first?.body);

    const one = JSON.parse((await queueCli('peek', 'orders', '--json', '--limit', '2')).out) as PeekJson;
    assert.equal(one.rows.length, 2);
    assert.ok(one.nextCursor !== null);
    const rest = JSON.parse(
      (await queueCli('peek', 'orders', '--json', '--limit', '2', '--cursor', one.nextCursor)).out,
    ) as PeekJson;
    assert.deepEqual(
      rest.rows.map((r) => r.id),
      [ids.scheduled],
    );

    const scheduled = JSON.parse((await queueCli('peek', 'orders', '--json', '--state', 'scheduled')).out) as PeekJson;
    assert.deepEqual(
      scheduled.rows.map((r) => r.id),
      [ids.scheduled],
    );
    const leased = JSON.parse((await queueCli('peek', 'mails', '--json', '--state', 'leased')).out) as PeekJson;
    assert.deepEqual(
      leased.rows.map((r) => [r.id, r.state, r.acquiredAt !== null]),
      [[ids.leased, 'leased', true]],
    );
  });

  test('peek as a table: one line per row (a newline in the body cannot split it), the next cursor below', async () => {
    const table = await queueCli('peek', 'orders', '--limit', '2');
    assert.equal(table.code, 0, table.err);
    const lines = table.out.split('\n');
    assert.match(lines[0] ?? '', /^\s*ID\s+STATE\s+CREATED AT\s+DUE AT\s+LEASED AT\s+DELIVERIES\s+BYTES\s+BODY$/);
    assert.match(lines[1] ?? '', new RegExp(`^\\s*${ids.ready1}\\s+ready\\s+\\S+\\s+\\S+\\s+0\\s+11\\s+\\{"order":1\\}$`));
    assert.match(lines[2] ?? '', new RegExp(`^\\s*${ids.ready2}\\s+ready\\s+.*\\s+plain text$`));
    assert.match(lines[3] ?? '', /^more: --cursor \S+$/);
    const empty = await queueCli('peek', 'nothing-here');
    assert.equal(empty.code, 0, empty.err);
    assert.equal(empty.out, "no pending rows in queue 'nothing-here'\n");
  });

  test('pause and resume: persisted, idempotent (exit 0 either way), visible in status(); no confirmation asked', async () => {
    const paused = await queueCli('pause', 'orders', '--reason', 'incident 42');
    assert.equal(paused.code, 0, paused.err);
    assert.match(paused.out, /^paused queue 'orders' \(reason: "incident 42"\): subscribers stop claiming it within a second/);
    const again = await queueCli('pause', 'orders', '--json');
    assert.equal(again.code, 0, again.err);
    const state = JSON.parse(again.out) as { queue: string; paused: boolean; pausedAt: string; reason: string; changed: boolean };
    assert.deepEqual(
      { ...state, pausedAt: typeof state.pausedAt },
      { queue: 'orders', paused: true, pausedAt: 'string', reason: 'incident 42', changed: false },
    );
    const [orders] = (await outbox.status({ queues: ['orders'] })).queues;
    assert.equal(orders?.paused, true);
    assert.equal(orders.pauseReason, 'incident 42');
    assert.equal(orders.pausedAt?.toISOString(), state.pausedAt);

    const resumed = await queueCli('resume', 'orders');
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.out, /^resumed queue 'orders': subscribers claim it again\n$/);
    assert.equal((await outbox.status({ queues: ['orders'] })).queues[0]?.paused, false);
    const notPaused = await queueCli('resume', 'orders', '--json');
    assert.equal(notPaused.code, 0, notPaused.err);
    assert.equal((JSON.parse(notPaused.out) as { changed: boolean }).changed, false);
  });

  test('bad usage exits 2 and names the argument or the flag', async () => {
    const spawned = await queueCli('pause');
    assert.equal(spawned.code, 2, spawned.err);
    for (const [args, message] of [
      [[], /queue takes pause, resume or peek, got nothing/],
      [['frobnicate', 'orders'], /queue takes pause, resume or peek, got 'frobnicate'/],
      [['constructor', 'orders'], /queue takes pause, resume or peek, got 'constructor'/],
      [['pause'], /queue pause takes <queue>/],
      [['peek'], /queue peek takes <queue>/],
      [['pause', 'a', 'b'], /unexpected argument 'b'/],
      [['resume', 'orders', '--reason', 'x'], /--reason does not go with queue resume/],
      [['pause', 'orders', '--state', 'ready'], /--state does not go with queue pause/],
      [['peek', 'orders', '--limit', 'ten'], /--limit: expected a whole number, got 'ten'/],
      [['peek', 'orders', '--limit', '0'], /--limit: expected an integer from 1 to 1000, got '0'/],
      [['peek', 'orders', '--state', 'sleeping'], /--state: expected 'ready', 'scheduled', 'leased', got 'sleeping'/],
      [['peek', 'orders', '--cursor', 'garbage'], /--cursor: expected the nextCursor of a previous peek\(\) page/],
      [['pause', 'orders', '--reason', 'x'.repeat(501)], /--reason: expected .*500/],
      [['peek', 'orders', '--bogus'], /--bogus/],
    ] as const) {
      const result = await txoutboxMain(['queue', ...args, '--table', TABLE], { DATABASE_URL: db.url });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.err}`);
      assert.match(result.err, message, args.join(' '));
    }
    // A value the API refuses: its fix, under the flag's name, without the forty lines of usage
    // burying it (an OptionError, as for the connection flags and txoutbox dashboard).
    const refused = await txoutboxMain(['queue', 'peek', 'orders', '--state', 'sleeping', '--table', TABLE], {
      DATABASE_URL: db.url,
    });
    assert.equal(refused.code, 2);
    assert.equal(
      refused.err,
      "txoutbox: --state: expected 'ready', 'scheduled', 'leased', got 'sleeping'\nFix: Pass one of these, or leave state out for every pending row.\n",
    );
  });
});
