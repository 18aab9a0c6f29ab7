import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { InvalidOptionError, MigrationLockTimeoutError } from '../../src/index.js';
import { MIGRATION_LOCK_NAMESPACE } from '../../src/schema/sql.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** A migrated table set back to the schema before outbox/0004 (an upgrade is pending: ALTER TABLEs). */
async function tableBeforeOrderingKey(table: string) {
  const outbox = newOutbox({ pool: db.pool, table });
  await outbox.migrate();
  await db.pool.query(`DROP INDEX ${table}_key_idx`);
  await db.pool.query(`ALTER TABLE ${table} DROP COLUMN ordering_key, DROP COLUMN activate_at`);
  await db.pool.query('DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version >= 4', [table]);
  return outbox;
}

/**
 * A session in a transaction that has read the table: it holds ACCESS SHARE on it until it ends,
 * as a long transactional-consume handler or a report query does.
 */
async function holdTable(table: string): Promise<{ pid: number; end(): Promise<void> }> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'long report' });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT count(*) FROM ${table}`);
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return {
    pid: rows[0]?.pid ?? 0,
    end: async () => {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** Whether a session of this database waits for a lock on the table (the migration's ALTER). */
async function lockWaiters(table: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = to_regclass($1)`,
    [table],
  );
  return rows[0]?.n ?? 0;
}

describe('migrate: an upgrade under load waits for its lock a bounded time', () => {
  test('a long transaction on the table: publishers are not stalled behind the waiting ALTER, and migrate() ends with an error naming the holder', async () => {
    const table = 'lock_held';
    const outbox = await tableBeforeOrderingKey(table);
    const holder = await holdTable(table);
    try {
      const migrating = outbox.migrate({ lockTimeoutMs: 300, lockAttempts: 2 });
      migrating.catch(() => undefined);
      await waitFor(async () => (await lockWaiters(table)) > 0, { what: 'the ALTER to wait for its lock' });
      // Queued behind the ALTER's ACCESS EXCLUSIVE request, an INSERT waits with it: without a
      // lock timeout it waited as long as the holder's transaction, i.e. every publish stalled.
      // (The running version's publisher, which writes the schema before 0004, as a rolling deploy has.)
      await db.pool.query(`INSERT INTO ${table} (queue, payload) VALUES ('q', '\\x7b7d')`);
      await assert.rejects(migrating, (error: unknown) => {
        assert.ok(error instanceof MigrationLockTimeoutError, String(error));
        assert.equal(error.code, 'MIGRATION_LOCK_TIMEOUT');
        assert.equal(error.table, table);
        assert.equal(error.attempts, 2);
        assert.equal(error.lockTimeoutMs, 300);
        assert.ok(
          error.holders.some((h) => h.pid === holder.pid && h.applicationName === 'long report'),
          JSON.stringify(error.holders),
        );
        assert.match(error.message, /outbox\/0004_ordering_key/);
        assert.match(error.message, new RegExp(`pid ${holder.pid}`));
        assert.match(error.message, /lockTimeoutMs/);
        return true;
      });
      // Nothing of the upgrade stayed: it is one transaction, rolled back.
      const { rows } = await db.pool.query(
        `SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = 'ordering_key'`,
        [table],
      );
      assert.equal(rows.length, 0);
    } finally {
      await holder.end();
    }
    assert.deepEqual((await outbox.migrate()).applied, ['outbox/0004_ordering_key', 'outbox/0005_activate_at']);
  });

  for (const [table, options, what] of [
    [
      'lock_released',
      { lockTimeoutMs: 200, lockAttempts: 20 },
      'a holder that ends between attempts: a later attempt applies the upgrade',
    ],
    [
      'lock_unbounded',
      { lockTimeoutMs: 0, lockAttempts: 1 },
      'lockTimeoutMs: 0 waits for the lock as long as it takes (PostgreSQL without lock_timeout)',
    ],
  ] as const) {
    test(what, async () => {
      const outbox = await tableBeforeOrderingKey(table);
      const holder = await holdTable(table);
      const migrating = outbox.migrate(options);
      migrating.catch(() => undefined);
      await waitFor(async () => (await lockWaiters(table)) > 0, { what: 'the ALTER to wait for its lock' });
      await holder.end();
      assert.deepEqual((await migrating).applied, ['outbox/0004_ordering_key', 'outbox/0005_activate_at']);
    });
  }

  /** A session holding the migration lock of `key` (`<schema>.<table>`) in an open transaction, as a migrator does. */
  async function holdMigrationLock(key: string): Promise<{ end(): Promise<void> }> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))', [MIGRATION_LOCK_NAMESPACE, key]);
    return {
      end: async () => {
        await client.query('COMMIT');
        await client.end();
      },
    };
  }

  async function migrationLockWaiters(): Promise<number> {
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::int::oid`,
      [MIGRATION_LOCK_NAMESPACE],
    );
    return rows[0]?.n ?? 0;
  }

  test('one table under two spellings takes one migration lock: the bare spelling, found through search_path past current_schema(), waits for the qualified one', async () => {
    // The bare spelling locked current_schema()'s key (empty_first.<t>) while the table is public's:
    // two migrators of one table ran at once, and the second failed (column already exists).
    const table = 'two_lock';
    await tableBeforeOrderingKey(table);
    await db.pool.query('CREATE SCHEMA IF NOT EXISTS empty_first');
    const searching = new pg.Pool({ connectionString: db.url, max: 2, options: '-c search_path=empty_first,public' });
    const holder = await holdMigrationLock(`public.${table}`);
    try {
      const migrating = newOutbox({ pool: searching, table }).migrate();
      migrating.catch(() => undefined);
      await waitFor(async () => (await migrationLockWaiters()) > 0, { what: 'the bare spelling to wait for the migration lock' });
      await holder.end();
      assert.deepEqual((await migrating).applied, ['outbox/0004_ordering_key', 'outbox/0005_activate_at']);
    } finally {
      await holder.end().catch(() => undefined);
      await searching.end();
    }
  });

  test('an Outbox made from a connection string waits for another migrator past its queryTimeoutMs (statement_timeout)', async () => {
    // The owned pool sets statement_timeout = queryTimeoutMs on its connections: the wait for the
    // migration lock, documented as unbounded, was cancelled (57014, untyped) after 10 s by default.
    const table = 'lock_other_migrator';
    await newOutbox({ pool: db.pool, table }).migrate();
    await db.pool.query('DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version = 5', [table]);
    await db.pool.query(`ALTER TABLE ${table} DROP COLUMN activate_at`);
    const holder = await holdMigrationLock(`public.${table}`);
    try {
      const migrating = newOutbox({ connectionString: db.url, table, queryTimeoutMs: 300 }).migrate();
      migrating.catch(() => undefined);
      await waitFor(async () => (await migrationLockWaiters()) > 0, { what: 'migrate() to wait for the migration lock' });
      await new Promise((resolve) => setTimeout(resolve, 800));
      await holder.end();
      assert.deepEqual((await migrating).applied, ['outbox/0005_activate_at']);
    } finally {
      await holder.end().catch(() => undefined);
    }
  });

  test('bad options are refused before anything runs, naming the option', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'lock_bad_options' });
    const bad: [string, unknown][] = [
      ['lockTimeoutMs', -1],
      ['lockTimeoutMs', 1.5],
      ['lockTimeoutMs', '5s'],
      ['lockTimeoutMs', 86_400_001],
      ['lockAttempts', 0],
      ['lockAttempts', 1001],
    ];
    for (const [option, value] of bad) {
      await assert.rejects(
        outbox.migrate({ [option]: value }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        `${option}: ${String(value)}`,
      );
    }
    await assert.rejects(
      outbox.migrate({ lockTimeout: 5 } as never),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'lockTimeout',
    );
    const { rows } = await db.pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', ['lock_bad_options']);
    assert.equal(rows[0]?.t, null, 'nothing was created');
  });
});
