import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { type Message, NoRetry, Outbox, type OutboxOptions, SchemaDriftError, TableInOtherSchemaError } from '../../src/index.js';
import { quoteIdent } from '../../src/schema/identifiers.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

/**
 * Where the tables live (issue 14, item 2): in a `txoutbox` schema by default, `public` on request,
 * and the upgrade from 0.1 — whose default was an unqualified `outbox`, so `public.outbox` — must
 * not migrate a second, empty outbox beside the one holding rows. Each test gets a database of its
 * own holding what 0.1 left, since `public.outbox` and `txoutbox.outbox` are the names under test.
 */

const db = useTestDatabase(import.meta.url);

let databases = 0;

/** A fresh database (dropped after the file) and an Outbox factory on it whose Outboxes are stopped first. */
async function freshDatabase(): Promise<{ pool: pg.Pool; newOutbox: (options?: Partial<OutboxOptions>) => Outbox }> {
  const { rows } = await db.pool.query<{ d: string }>('SELECT current_database() AS d');
  const name = `${rows[0]?.d}_${(databases += 1)}`;
  await db.pool.query(`CREATE DATABASE ${quoteIdent(name)}`);
  const url = new URL(db.url);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => undefined);
  const created: Outbox[] = [];
  // Cleanups run last-registered first: the Outboxes stop, then the pool ends, then the drop.
  db.onCleanup(async () => {
    await pool.end();
    await db.pool.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
  db.onCleanup(async () => {
    await Promise.all(created.map((outbox) => outbox.stop()));
  });
  const logger = new TestLogger();
  const newOutbox = (options: Partial<OutboxOptions> = {}): Outbox => {
    const outbox = new Outbox({ pool, logger, ...options } as OutboxOptions);
    created.push(outbox);
    return outbox;
  };
  return { pool, newOutbox };
}

/**
 * What 0.1.0 left: `outbox` and `outbox_dlq` in public, their history in public.txoutbox_migrations
 * under the bare names, without what the version-2 migrations added; `queue` holds `rows` messages.
 */
async function install01(pool: pg.Pool, newOutbox: (options?: Partial<OutboxOptions>) => Outbox, queue: string, rows: number) {
  const legacy = newOutbox({ table: 'outbox', listen: false });
  await legacy.migrate();
  const ids = await publishCommitted(
    legacy,
    pool,
    queue,
    Array.from({ length: rows }, (_, n) => ({ n })),
  );
  await pool.query(
    'ALTER TABLE public.outbox DROP COLUMN last_exception_type, DROP COLUMN last_exception, DROP COLUMN ordering_key, DROP COLUMN activate_at',
  );
  await pool.query('ALTER TABLE public.outbox_dlq DROP COLUMN last_exception_type, DROP COLUMN ordering_key');
  // 0.1 had neither the pause nor the stats table (outbox migration 3), nor the DLQ's time index (dlq 3).
  await pool.query('DROP TABLE public.outbox_paused, public.outbox_stats');
  await pool.query('DROP INDEX public.outbox_dlq_time_idx');
  await pool.query('DELETE FROM public.txoutbox_migrations WHERE version > 1');
  return { legacy, ids };
}

async function refusal(action: Promise<unknown>): Promise<TableInOtherSchemaError> {
  try {
    await action;
  } catch (error) {
    assert.ok(error instanceof TableInOtherSchemaError, `expected TableInOtherSchemaError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected TableInOtherSchemaError');
}

/** A default Outbox consumes the `old` rows 0.1 published: `count` acks, none left. */
async function consumesOld(pool: pg.Pool, newOutbox: (options?: Partial<OutboxOptions>) => Outbox, count: number): Promise<void> {
  const log = new EventLog();
  const consumer = newOutbox({ recorder: log.recorder });
  consumer.subscribe('old', () => undefined, FAST_POLL);
  consumer.start();
  await log.waitFor('acked', count);
  assert.equal(await remaining(pool, 'old'), 0);
}

async function exists(pool: pg.Pool, relation: string): Promise<boolean> {
  const { rows } = await pool.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [relation]);
  return rows[0]?.found === true;
}

describe('upgrading from 0.1 (tables in public)', () => {
  test('migrate() and validateSchema() refuse with both names and the fix, and create nothing', async () => {
    const { pool, newOutbox } = await freshDatabase();
    await install01(pool, newOutbox, 'old', 2);
    const current = newOutbox();
    const error = await refusal(current.migrate());
    assert.equal(error.code, 'TABLE_IN_OTHER_SCHEMA');
    assert.equal(error.option, 'table');
    assert.equal(error.table, 'txoutbox.outbox');
    assert.equal(error.found, 'public.outbox');
    assert.match(error.message, /txoutbox\.outbox does not exist, but public\.outbox \(and its DLQ public\.outbox_dlq\) does/);
    assert.match(error.fix, /table: 'public\.outbox'/);
    assert.match(error.fix, /ALTER TABLE "public"\."outbox" SET SCHEMA "txoutbox";/);
    assert.match(error.fix, /ALTER TABLE "public"\."outbox_dlq" SET SCHEMA "txoutbox";/);
    const { rows } = await pool.query<{ schema: string | null }>(`SELECT to_regnamespace('txoutbox')::text AS schema`);
    assert.equal(rows[0]?.schema, null, 'not even the schema was created');
    assert.ok(error.message.includes(error.fix));
    await refusal(current.validateSchema());
  });

  test("table: 'public.outbox' keeps them: migrate applies what 0.1 lacked; publish, consume and the DLQ work; 0.1's spelling shares the channel", async () => {
    const { pool, newOutbox } = await freshDatabase();
    const { legacy, ids: oldIds } = await install01(pool, newOutbox, 'old', 2);
    const log = new EventLog();
    const kept = newOutbox({ table: 'public.outbox', recorder: log.recorder });
    assert.deepEqual((await kept.migrate()).applied, [
      'outbox/0002_last_exception',
      'outbox/0003_queue_controls',
      'outbox/0004_ordering_key',
      'outbox/0005_activate_at',
      'dlq/0002_last_exception_type',
      'dlq/0003_failed_at_idx',
      'dlq/0004_ordering_key',
    ]);
    await kept.validateSchema();
    assert.equal(kept.dlqTable, 'public.outbox_dlq');
    assert.equal(kept.channel, 'txoutbox.outbox');
    assert.equal(kept.channel, legacy.channel, 'processes still on 0.1 wake this one, and the reverse');

    const handled: Message[] = [];
    kept.subscribe(
      ['old', 'orders'],
      (message) => {
        handled.push(message);
      },
      FAST_POLL,
    );
    kept.subscribe(
      'poison',
      () => {
        throw new RangeError('bad order');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    kept.start();
    const [orderId] = await publishCommitted(kept, pool, 'orders', [{ order: 1 }]);
    const [poisonId] = await publishCommitted(kept, pool, 'poison', [{ order: 2 }]);
    await log.waitFor('acked', 3);
    await log.waitFor('dlq_written');
    assert.deepEqual(handled.map((m) => m.id).sort(), [...oldIds, orderId].sort(), "0.1's rows are consumed too");
    assert.equal(await remaining(pool, 'orders', 'public.outbox'), 0);
    const dead = await pool.query<{ original_id: string; failure_reason: string }>(
      'SELECT original_id::text, failure_reason FROM public.outbox_dlq',
    );
    assert.deepEqual(dead.rows, [{ original_id: poisonId, failure_reason: 'retry_terminal' }]);
    assert.ok(!(await exists(pool, 'txoutbox.outbox')), 'no second outbox');
  });

  test("the error's SQL moves them into txoutbox with their history: migrate() then applies only what 0.1 lacked, rows published before are consumed", async () => {
    const { pool, newOutbox } = await freshDatabase();
    await install01(pool, newOutbox, 'old', 3);
    const current = newOutbox();
    const { fix } = await refusal(current.migrate());
    const move = fix.slice(fix.indexOf('move them in one transaction: ') + 'move them in one transaction: '.length);
    await pool.query(`BEGIN; ${move} COMMIT;`);
    assert.ok(!(await exists(pool, 'public.outbox')));
    assert.ok(!(await exists(pool, 'public.outbox_dlq')));
    const left = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM public.txoutbox_migrations');
    assert.equal(left.rows[0]?.n, 0, "public's history no longer claims the moved tables");

    assert.deepEqual((await current.migrate()).applied, [
      'outbox/0002_last_exception',
      'outbox/0003_queue_controls',
      'outbox/0004_ordering_key',
      'outbox/0005_activate_at',
      'dlq/0002_last_exception_type',
      'dlq/0003_failed_at_idx',
      'dlq/0004_ordering_key',
    ]);
    assert.deepEqual((await current.migrate()).applied, []);
    await current.validateSchema();
    assert.equal((await current.fetchUnprocessed({ queue: 'old' })).length, 3);
    await consumesOld(pool, newOutbox, 3);
  });

  test("first kept with table: 'public.outbox' (migrated there), then moved by the error's SQL: the companion tables and the whole history go along", async () => {
    // Kept first, migrate() created public.outbox_paused and public.outbox_stats and recorded
    // versions 2–4 under 'public.outbox'. The move took the outbox, its DLQ and version 1 only:
    // migrate() then ran 0002 again (column exists) and every claim read a missing pause table.
    const { pool, newOutbox } = await freshDatabase();
    await install01(pool, newOutbox, 'old', 2);
    await newOutbox({ table: 'public.outbox' }).migrate();
    const current = newOutbox();
    const { fix } = await refusal(current.migrate());
    const move = fix.slice(fix.indexOf('move them in one transaction: ') + 'move them in one transaction: '.length);
    await pool.query(`BEGIN; ${move} COMMIT;`);
    for (const table of ['outbox', 'outbox_dlq', 'outbox_paused', 'outbox_stats']) {
      assert.ok(await exists(pool, `txoutbox.${table}`), `txoutbox.${table}`);
      assert.ok(!(await exists(pool, `public.${table}`)), `public.${table} moved`);
    }
    assert.deepEqual((await current.migrate()).applied, [], 'every version was recorded before the move');
    await current.validateSchema();
    await consumesOld(pool, newOutbox, 2);
  });

  test('only txoutbox-schema tables are checked, and only against a table of txoutbox shape', async () => {
    const { pool, newOutbox } = await freshDatabase();
    // A table of the same name but not ours.
    await pool.query('CREATE TABLE events (id int PRIMARY KEY, name text)');
    await newOutbox({ table: 'txoutbox.events' }).migrate();
    // An explicit other schema beside a public outbox of the same name: two outboxes on purpose.
    await newOutbox({ table: 'orders_outbox' }).migrate();
    await newOutbox({ table: 'billing.orders_outbox' }).migrate();
    // The default schema is checked whatever the table's name.
    const error = await refusal(newOutbox({ table: 'txoutbox.orders_outbox', dlqTable: false }).migrate());
    assert.equal(error.found, 'public.orders_outbox');
    assert.doesNotMatch(error.fix, /orders_outbox_dlq/, 'dlqTable: false moves no DLQ');
  });

  test('a consumer started without migrate() says once why its claims fail: the 0.1 tables and both fixes, or migrations not run', async () => {
    const upgraded = await freshDatabase();
    await install01(upgraded.pool, upgraded.newOutbox, 'old.q', 1);
    const logger = new TestLogger();
    const consumer = upgraded.newOutbox({ logger, listen: false });
    consumer.subscribe('old.q', () => undefined, FAST_POLL);
    consumer.start();
    await waitFor(() => logger.messages('error').some((m) => m.includes('public.outbox')), { what: 'the explanation' });
    const explanation = logger.messages('error').find((m) => m.includes('public.outbox')) ?? '';
    assert.match(explanation, /txoutbox\.outbox does not exist, but public\.outbox/);
    assert.match(explanation, /table: 'public\.outbox'/);
    await waitFor(() => logger.messages('error').filter((m) => m.startsWith('claim failed')).length >= 2, {
      what: 'a retried claim',
    });
    assert.equal(
      logger.messages('error').filter((m) => m.includes('does not exist')).length,
      1,
      'explained once, not at every retry',
    );

    const empty = await freshDatabase();
    const emptyLogger = new TestLogger();
    const unmigrated = empty.newOutbox({ logger: emptyLogger, listen: false });
    unmigrated.subscribe('q', () => undefined, FAST_POLL);
    unmigrated.start();
    await waitFor(() => emptyLogger.messages('error').some((m) => m.includes('run the migrations first')), { what: 'the hint' });
  });

  test("migrate --print's script refuses itself beside 0.1's tables, with TableInOtherSchemaError's message, and creates nothing", async () => {
    const { pool, newOutbox } = await freshDatabase();
    await install01(pool, newOutbox, 'old', 1);
    for (const options of [{}, { dlqTable: false as const }]) {
      const current = newOutbox(options);
      const expected = await refusal(current.migrate());
      const client = await pool.connect();
      let raised: (Error & { code?: string }) | undefined;
      try {
        // As an ORM migration runs it: the printed text, inside the tool's transaction.
        await client.query(`BEGIN; ${current.migrationScript()} COMMIT;`);
      } catch (error) {
        raised = error as Error & { code?: string };
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      assert.ok(raised !== undefined, 'the script ran beside 0.1 tables');
      assert.equal(raised.code, 'P0001', 'raised by the script itself, not by a failing statement');
      assert.equal(raised.message, expected.message, 'the same message and fixes as migrate()');
      assert.ok(!(await exists(pool, 'txoutbox.outbox')));
      const { rows } = await pool.query<{ schema: string | null }>(`SELECT to_regnamespace('txoutbox')::text AS schema`);
      assert.equal(rows[0]?.schema, null, 'not even the schema');
    }
  });
});

/**
 * A txoutbox.outbox that exists beside 0.1's public.outbox still holding rows: made by a printed
 * script run before it refused itself, or by hand. 0.2 reads only txoutbox.outbox.
 */
async function strandedBeside01(rows: number) {
  const fresh = await freshDatabase();
  // The new tables first: install01 then puts 0.1's in public, as a pasted old script left them.
  await fresh.newOutbox({ listen: false }).migrate();
  const { ids } = await install01(fresh.pool, fresh.newOutbox, 'old', rows);
  return { ...fresh, ids };
}

async function drift(action: Promise<unknown>): Promise<SchemaDriftError> {
  try {
    await action;
  } catch (error) {
    assert.ok(error instanceof SchemaDriftError, `expected SchemaDriftError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected SchemaDriftError');
}

describe("rows stranded in 0.1's table beside txoutbox.outbox", () => {
  test('validateSchema() reports them as a stranded_rows finding with both fixes; the move in the fix clears it and the rows are consumed', async () => {
    const { pool, newOutbox } = await strandedBeside01(2);
    const current = newOutbox({ listen: false });
    const error = await drift(current.validateSchema());
    assert.equal(error.findings.length, 1, error.message);
    const [finding] = error.findings;
    assert.equal(finding?.kind, 'stranded_rows');
    assert.equal(finding?.table, 'public.outbox');
    assert.match(finding?.message ?? '', /public\.outbox, .*holds rows .*txoutbox\.outbox/);
    assert.match(finding?.fix ?? '', /second Outbox on table: 'public\.outbox'/);
    assert.match(finding?.fix ?? '', /INSERT INTO "txoutbox"\."outbox" \(/);
    assert.match(finding?.fix ?? '', /DROP TABLE "public"\."outbox";/);

    const fix = finding?.fix ?? '';
    const move = fix.slice(fix.indexOf('BEGIN;'));
    await pool.query(move);
    assert.ok(!(await exists(pool, 'public.outbox')));
    await current.validateSchema();
    await consumesOld(pool, newOutbox, 2);
  });

  test('the move keeps the columns a twin migrated by this version has: ordering_key, activate_at, the last exception', async () => {
    // Reported (review): the move copied 0.1's columns only, so a keyed row moved from a twin that
    // migrate() had upgraded lost its ordering key (and per-key order) without a word.
    const { pool, newOutbox } = await strandedBeside01(1);
    const twin = newOutbox({ table: 'public.outbox', listen: false });
    await twin.migrate();
    await twin.publish(pool, 'keyed', { k: 1 }, { autocommit: true, orderingKey: 'customer-7' });
    await pool.query(`UPDATE public.outbox SET last_exception = 'boom', last_exception_type = 'Error' WHERE queue = 'keyed'`);
    const fix = (await drift(newOutbox({ listen: false }).validateSchema())).findings[0]?.fix ?? '';
    await pool.query(fix.slice(fix.indexOf('BEGIN;')));
    const { rows } = await pool.query<{ ordering_key: string; last_exception: string; last_exception_type: string }>(
      `SELECT ordering_key, last_exception, last_exception_type FROM txoutbox.outbox WHERE queue = 'keyed'`,
    );
    assert.deepEqual(rows, [{ ordering_key: 'customer-7', last_exception: 'boom', last_exception_type: 'Error' }]);
  });

  test('an empty 0.1 table is not reported: consumed by a second Outbox on public.outbox, validateSchema() passes', async () => {
    const { newOutbox } = await strandedBeside01(1);
    await drift(newOutbox({ listen: false }).validateSchema());
    const log = new EventLog();
    const drain = newOutbox({ table: 'public.outbox', recorder: log.recorder, listen: false });
    await drain.migrate();
    drain.subscribe('old', () => undefined, FAST_POLL);
    drain.start();
    await log.waitFor('acked', 1);
    await newOutbox({ listen: false }).validateSchema();
  });

  test('a started Outbox with subscriptions logs the stranded rows once, at error level, with the fix', async () => {
    const { pool, newOutbox } = await strandedBeside01(1);
    const logger = new TestLogger();
    const log = new EventLog();
    const consumer = newOutbox({ logger, recorder: log.recorder, listen: false });
    consumer.subscribe('new', () => undefined, FAST_POLL);
    consumer.subscribe('other', () => undefined, FAST_POLL);
    consumer.start();
    const stranded = (): string[] => logger.messages('error').filter((m) => m.includes('public.outbox'));
    await waitFor(() => stranded().length > 0, { what: 'the stranded-rows error' });
    assert.match(stranded()[0] ?? '', /public\.outbox, .*holds rows/);
    assert.match(stranded()[0] ?? '', /table: 'public\.outbox'/);
    assert.match(stranded()[0] ?? '', /INSERT INTO "txoutbox"\."outbox"/);
    // The subscriptions keep working, and the check does not run again.
    await publishCommitted(consumer, pool, 'new', [{ n: 1 }]);
    await log.waitFor('acked', 1);
    assert.equal(stranded().length, 1, 'logged once per Outbox');
  });
});
