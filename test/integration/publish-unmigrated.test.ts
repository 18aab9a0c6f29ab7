/**
 * Code deployed before its migrations: a publish on a schema that lacks what this version writes
 * fails with SchemaNotMigratedError, naming the table, what is missing, the migration that adds it
 * and the command that applies it, instead of PostgreSQL's bare undefined_column or
 * undefined_table. Errors that only share the SQLSTATE (a user's trigger) pass through unchanged.
 * Every data layer's own error shape is covered by the adapter conformance suite.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SchemaNotMigratedError } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** Migrates `table`, then takes it back to `version` by undoing the column migrations after it. */
async function schemaAt(table: string, version: 3 | 4): Promise<void> {
  await newOutbox({ pool: db.pool, table }).migrate();
  const dropped = version === 3 ? 'DROP COLUMN ordering_key, DROP COLUMN activate_at' : 'DROP COLUMN activate_at';
  await db.pool.query(`ALTER TABLE ${table} ${dropped}`);
  await db.pool.query(`DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version > $2`, [table, version]);
}

function notMigrated(operation: string, missing: string, migration: string | undefined) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof SchemaNotMigratedError, String(error));
    assert.equal(error.code, 'SCHEMA_NOT_MIGRATED');
    assert.equal(error.operation, operation);
    assert.equal(error.missing, missing);
    assert.equal(error.migration, migration);
    assert.match(error.message, /txoutbox migrate/);
    assert.equal((error.cause as { code?: string }).code, migration === undefined ? '42P01' : '42703');
    return true;
  };
}

describe('publish on a schema this version was not migrated to', () => {
  test('one migration behind (no activate_at): publish, a timer, publishBatch and cancelTimer name outbox/0005', async () => {
    const table = 'unmigrated_v4';
    await schemaAt(table, 4);
    const outbox = newOutbox({ pool: db.pool, table });
    const expected = notMigrated('publish', 'activate_at', 'outbox/0005');
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x')),
      expected,
    );
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x', { timerId: 't', activateInMs: 1000 })),
      expected,
    );
    await assert.rejects(outbox.publish(db.pool, 'q', 'x', { autocommit: true }), expected);
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publishBatch(client, 'q', ['a', 'b'])),
      notMigrated('publishBatch', 'activate_at', 'outbox/0005'),
    );
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.cancelTimer(client, 'q', 't')),
      notMigrated('cancelTimer', 'activate_at', 'outbox/0005'),
    );
    const message = await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x')).then(
      () => 'resolved',
      (error: unknown) => (error as Error).message,
    );
    assert.match(message, /unmigrated_v4 has no column activate_at/);
    assert.match(message, /--since 4/);
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    assert.equal(rows[0]?.n, 0, 'nothing was written');
    // migrate() heals it without a new Outbox.
    await newOutbox({ pool: db.pool, table }).migrate();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'after the upgrade'));
  });

  test('two migrations behind (no ordering_key): names outbox/0004 and the script from version 3', async () => {
    const table = 'unmigrated_v3';
    await schemaAt(table, 3);
    const outbox = newOutbox({ pool: db.pool, table });
    const error = await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x', { orderingKey: 'k' })).catch(
      (thrown: unknown) => thrown,
    );
    assert.ok(notMigrated('publish', 'ordering_key', 'outbox/0004')(error));
    assert.match((error as Error).message, /--since 3/, 'the script from the version the table is at');
  });

  test('no table at all: names the table and the migrations', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'never_migrated' });
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x')),
      notMigrated('publish', 'never_migrated', undefined),
    );
  });

  test("a user's trigger failing with undefined_column is not mistaken for a missing migration", async () => {
    const table = 'unmigrated_trigger';
    await newOutbox({ pool: db.pool, table }).migrate();
    await db.pool.query(`
      CREATE FUNCTION ${table}_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM NEW.no_such_field; RETURN NEW; END $$;
      CREATE TRIGGER ${table}_audit BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_audit();
    `);
    const outbox = newOutbox({ pool: db.pool, table });
    const error = await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x')).catch((thrown: unknown) => thrown);
    assert.ok(!(error instanceof SchemaNotMigratedError), String(error));
    assert.equal((error as { code?: string }).code, '42703');
  });
});

describe('outbox.dlq on a DLQ table this version was not migrated to', () => {
  test('no ordering_key (dlq/0004): list, get and redrive name the migration; no DLQ table names the table', async () => {
    const table = 'unmigrated_dlq';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await db.pool.query(`ALTER TABLE ${table}_dlq DROP COLUMN ordering_key`);
    const expected = (operation: string) => (error: unknown) => {
      assert.ok(error instanceof SchemaNotMigratedError, String(error));
      assert.equal(error.operation, operation);
      assert.equal(error.table, `${table}_dlq`);
      assert.equal(error.missing, 'ordering_key');
      assert.equal(error.migration, 'dlq/0004');
      assert.match(error.message, /--since 3/);
      return true;
    };
    await assert.rejects(outbox.dlq.list(), expected('dlq.list'));
    await assert.rejects(outbox.dlq.get('1'), expected('dlq.get'));
    await assert.rejects(outbox.dlq.redrive({ queue: 'q' }), expected('dlq.redrive'));
    // purge reads no added column: it works on the older table.
    assert.deepEqual(await outbox.dlq.purge({ queue: 'q' }), { purged: 0, remaining: 0 });

    await db.pool.query(`DROP TABLE ${table}_dlq`);
    await assert.rejects(outbox.dlq.list(), (error: unknown) => {
      assert.ok(error instanceof SchemaNotMigratedError, String(error));
      assert.equal(error.missing, `${table}_dlq`);
      assert.equal(error.migration, undefined);
      return true;
    });
  });

  for (const lease of ['token', 'row-lock'] as const) {
    test(`a consumer's DLQ move into it (${lease} lease) logs the missing migration; the row is kept`, async () => {
      const table = `unmigrated_dlq_move_${lease.replace('-', '_')}`;
      const logger = new TestLogger();
      const outbox = newOutbox({ pool: db.pool, table, logger });
      await outbox.migrate();
      await db.pool.query(`ALTER TABLE ${table}_dlq DROP COLUMN ordering_key`);
      outbox.subscribe(
        'q',
        (_message, ctx) => {
          ctx.reject('not for us');
        },
        { ...FAST_POLL, lease, leaseTtlMs: 60_000 },
      );
      await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'x'));
      outbox.start();
      const failedMove = () => logger.entries.find((entry) => entry.message.startsWith('DLQ move failed'));
      await waitFor(() => failedMove() !== undefined, { what: 'the failed DLQ move logged' });
      await outbox.stop();
      const logged = String(failedMove()?.fields.err);
      assert.match(logged, /dlq\/0004/);
      assert.match(logged, /ordering_key/);
      assert.match(logged, /--since 3/);
      const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE queue = 'q'`);
      assert.deepEqual(rows, [{ n: 1 }], 'kept in the outbox, to be redelivered');
    });
  }
});
