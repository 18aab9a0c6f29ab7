/**
 * txoutbox behind a real PgBouncer in transaction mode (Debian's package, scripts/ensure-pgbouncer.sh):
 * every server session may serve another client's next transaction, and PgBouncer below 1.21
 * keeps no prepared statements. architecture/pgbouncer.md says what each option does here.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry, type Message } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.js';
import { pooledOutbox as pooledOutboxOn } from '../support/pooled-outbox.js';
import { remaining } from '../support/publish.js';
import { inTransaction } from '../support/transaction.js';
import { txoutboxBin } from '../support/txoutbox-bin.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const FAST_POLL = { minPollIntervalMs: 20, maxPollIntervalMs: 100 } as const;

let bouncer: PgBouncer | { skip: string };
/** An application's own pool through PgBouncer: its transactions publish. */
let appPool: pg.Pool | undefined;

before(async () => {
  bouncer = await startPgBouncer();
  if ('skip' in bouncer) return;
  appPool = new pg.Pool({ connectionString: bouncer.urlFor(db.url), max: 4 });
});
after(async () => {
  await appPool?.end();
  if (bouncer !== undefined && !('skip' in bouncer)) await bouncer.close();
});

/** The running PgBouncer and the app's pool through it, or the skip reason (never in CI: there the start rejects). */
function through(): { bouncer: PgBouncer; pool: pg.Pool } | { skip: string } {
  if ('skip' in bouncer) return bouncer;
  assert.ok(appPool !== undefined);
  return { bouncer, pool: appPool };
}

/** An Outbox through PgBouncer (support/pooled-outbox.ts), on this file's database. */
function pooledOutbox(b: PgBouncer, table: string, extra: Record<string, unknown> = {}) {
  return pooledOutboxOn(newOutbox, b, db.url, table, extra);
}

describe('behind PgBouncer, pool_mode = transaction', () => {
  test('without transactionPooling the Outbox cannot even connect: PgBouncer refuses the statement_timeout startup parameter (the reproduction)', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    const outbox = newOutbox({ connectionString: env.bouncer.urlFor(db.url), poolSize: 1 });
    assert.equal(await outbox.ping(), false);
    await assert.rejects(outbox.migrate(), /unsupported startup parameter: statement_timeout/);
    await outbox.stop();
  });

  test('publish (one, a batch, in the caller’s transaction; a rollback leaves nothing), drain with retries and a DLQ, stop()', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    const { outbox, log } = await pooledOutbox(env.bouncer, 'pgb_plain');
    await inTransaction(env.pool, async (client) => {
      await outbox.publish(client, 'orders', { n: 0 });
      await outbox.publishBatch(client, 'orders', [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    });
    await assert.rejects(
      inTransaction(env.pool, async (client) => {
        await outbox.publish(client, 'orders', { n: 99 });
        throw new Error('the domain write failed');
      }),
      /domain write failed/,
    );
    assert.equal(await remaining(db.pool, 'orders', 'pgb_plain'), 5, 'the rolled-back publish left no row');

    const runs = new Map<number, number>();
    outbox.subscribe(
      'orders',
      async (message: Message<{ n: number }>, ctx) => {
        const n = message.body.n;
        runs.set(n, (runs.get(n) ?? 0) + 1);
        if (n === 4) {
          ctx.reject('poison');
          return;
        }
        // Two failures, then success: two retries written through PgBouncer.
        if (n === 1 && (runs.get(n) ?? 0) <= 2) throw new Error('transient');
        // A follow-up through the pool (autocommit), woken after commit by the notifier.
        if (n === 2) await ctx.publish('receipts', { for: n });
      },
      { ...FAST_POLL, concurrency: 4, retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }) },
    );
    outbox.start();
    // The pool sets no session state here: when the role lacks statement_timeout, the Outbox says which ALTER ROLE to run.
    const { rows: settings } = await db.pool.query<{ t: string }>("SELECT current_setting('statement_timeout') AS t");
    if (settings[0]?.t === '0') {
      await waitFor(
        () => newOutbox.logger.messages('warn').some((m) => m.includes("ALTER ROLE <role> SET statement_timeout = '10000ms'")),
        {
          what: 'the role-settings warning',
        },
      );
    }
    await waitFor(async () => (await remaining(db.pool, 'orders', 'pgb_plain')) === 0, { what: 'orders drained' });
    assert.equal(runs.get(1), 3, 'two retries, then the ack');
    assert.equal(log.of('nacked_retried').length, 2);
    const dead = await outbox.dlq.list();
    assert.deepEqual(
      dead.rows.map((row) => [row.queue, row.failureReason]),
      [['orders', 'rejected']],
    );
    assert.equal(await remaining(db.pool, 'receipts', 'pgb_plain'), 1, 'the follow-up committed');
    assert.equal(log.of('lease_lost').length, 0);
    // Bounded: stop() resolves (its pool ends through PgBouncer); the leak guard would hang otherwise.
    await outbox.stop();
  });

  test('transactional subscriptions and row-lock mode hold their transaction on one server session', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    await db.pool.query('CREATE TABLE pgb_side (n int NOT NULL)');
    const { outbox } = await pooledOutbox(env.bouncer, 'pgb_tx', { poolSize: 8 });
    await inTransaction(env.pool, (client) => outbox.publishBatch(client, 'tx', [1, 2, 3, 4, 5, 6]));
    await inTransaction(env.pool, (client) => outbox.publishBatch(client, 'locked', [7, 8, 9, 10]));
    outbox.subscribe(
      'tx',
      async (message: Message<number>, ctx) => {
        await ctx.client.query('INSERT INTO pgb_side (n) VALUES ($1)', [message.body]);
        // A failed run rolls its write back with it.
        if (message.body === 3 && message.deliveriesCount === 1) throw new Error('roll me back');
      },
      { ...FAST_POLL, transactional: true, concurrency: 3, retry: new ConstantRetry({ delayMs: 10, maxAttempts: 3 }) },
    );
    outbox.subscribe(
      'locked',
      async (message: Message<number>) => {
        await db.pool.query('INSERT INTO pgb_side (n) VALUES ($1)', [message.body]);
      },
      { ...FAST_POLL, lease: 'row-lock', concurrency: 2, fetchBatchSize: 2 },
    );
    outbox.start();
    await waitFor(async () => (await remaining(db.pool, 'tx', 'pgb_tx')) + (await remaining(db.pool, 'locked', 'pgb_tx')) === 0, {
      what: 'both queues drained',
    });
    const { rows } = await db.pool.query<{ n: number }>('SELECT n FROM pgb_side ORDER BY n');
    assert.deepEqual(
      rows.map((row) => row.n),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      'each row’s write once: the failed run of 3 rolled back',
    );
    await outbox.stop();
  });

  test('LISTEN on a direct connection (listenConnectionString) wakes the subscription while statements go through PgBouncer', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    const { outbox: consumer } = await pooledOutbox(env.bouncer, 'pgb_listen', { listenConnectionString: db.url });
    // Another process's publisher: only its NOTIFY (sent through PgBouncer) can wake the consumer
    // before its next poll, a minute away.
    const producer = newOutbox({ connectionString: env.bouncer.urlFor(db.url), transactionPooling: true, table: 'pgb_listen' });
    const seen: string[] = [];
    consumer.subscribe('wake', (message: Message<string>) => void seen.push(message.body), {
      minPollIntervalMs: 60_000,
      maxPollIntervalMs: 60_000,
    });
    consumer.start();
    // This file's database only: other test files run beside it on the same server, with LISTEN
    // connections of their own (seen in CI).
    await waitFor(
      async () =>
        (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"))
          .rowCount === 1,
      {
        what: 'the LISTEN connection is up',
      },
    );
    await inTransaction(env.pool, (client) => producer.publish(client, 'wake', 'ding'));
    await waitFor(() => seen.length === 1, { what: 'woken by NOTIFY, not by a poll' });
    await producer.stop();
    await consumer.stop();
  });

  test('the CLI reads a config with transactionPooling the way the runner does: migrate and status through PgBouncer', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'txoutbox-pgb-cli-'));
    t.after(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const config = (pooling: boolean): string => {
      const path = join(dir, `${String(pooling)}.yaml`);
      const lines = [
        'database:',
        '  url: ${BOUNCER_URL}',
        ...(pooling ? ['  transactionPooling: true'] : []),
        'table: pgb_cli',
        'relays:',
      ];
      lines.push('  out:', '    queues: [out]', '    sink: { type: webhook, url: "http://127.0.0.1:1/hook" }');
      writeFileSync(path, `${lines.join('\n')}\n`);
      return path;
    };
    const bin = (args: string[]) => txoutboxBin(args, { env: { BOUNCER_URL: env.bouncer.urlFor(db.url) } });
    const refused = await bin(['migrate', '--config', config(false)]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /unsupported startup parameter: statement_timeout/);
    const migrated = await bin(['migrate', '--config', config(true)]);
    assert.equal(migrated.code, 0, migrated.err);
    const status = await bin(['status', '--config', config(true)]);
    assert.equal(status.code, 0, status.err);
    // The status transaction (BEGIN … SET LOCAL statement_timeout, one round trip) ran through PgBouncer.
    assert.match(status.out, /no queue has pending rows/);
  });

  test('stop() is bounded when PgBouncer freezes mid-drain (SIGSTOP): connections to it are destroyed, not waited for', async (t) => {
    const env = through();
    if ('skip' in env) {
      t.skip(env.skip);
      return;
    }
    // A PgBouncer of its own: this one is frozen.
    const frozen = await startPgBouncer();
    if ('skip' in frozen) {
      t.skip(frozen.skip);
      return;
    }
    t.after(async () => {
      if (frozen.pid !== undefined) process.kill(frozen.pid, 'SIGCONT');
      await frozen.close();
    });
    const { outbox } = await pooledOutbox(frozen, 'pgb_frozen', { queryTimeoutMs: 1000, gracefulTimeoutMs: 500 });
    await inTransaction(db.pool, (client) => outbox.publishBatch(client, 'slow', [1, 2, 3, 4, 5, 6, 7, 8]));
    const started: number[] = [];
    outbox.subscribe(
      'slow',
      async (message: Message<number>) => {
        started.push(message.body);
        await new Promise<void>((resolve) => setImmediate(resolve));
      },
      { ...FAST_POLL, concurrency: 2 },
    );
    outbox.start();
    await waitFor(() => started.length > 0, { what: 'a first delivery through PgBouncer' });
    assert.ok(frozen.pid !== undefined);
    process.kill(frozen.pid, 'SIGSTOP');
    // Resolves: statements in flight fail by queryTimeoutMs, the pool's close destroys what is left.
    await outbox.stop();
    assert.equal(await outbox.ping(), false, 'stopped');
  });
});
