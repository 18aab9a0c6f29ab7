import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  type Message,
  NotInTransactionError,
  type Outbox,
  SchemaNotMigratedError,
  type TransactionTarget,
} from '../../src/index.js';
import { isTransactionAdapter } from '../../src/producer/executor.js';
import { type TestDatabase, useTestDatabase } from './database.js';
import { listen, type Listener } from './listen.js';
import { outboxFactory } from './outboxes.js';
import { inTransaction as pgTransaction } from './transaction.js';
import { waitFor } from './wait-for.js';

/**
 * One data layer, set up against the test database by its test file: the real package, its own
 * connections, its transaction API.
 */
export interface DataLayerUnderTest {
  /** Runs `work` in one of the library's transactions, wrapped by its adapter; commits when it resolves. */
  inTransaction<T>(work: (target: TransactionTarget) => Promise<T>): Promise<T>;
  /** Runs `work` in one of the library's transactions, then rolls it back the library's way. */
  rolledBack(work: (target: TransactionTarget) => Promise<void>): Promise<void>;
  /** Builds the adapter from the library's non-transactional handle (`db`, `sql`, `prisma`, …): must throw. */
  wrapNonTransactional(): unknown;
  /** Closes the library's connections. */
  close(): Promise<void>;
}

export interface ConformanceOptions {
  /** How the adapter wakes subscribers by default (architecture/data-layers.md). */
  readonly wake: 'after-commit' | 'in-transaction';
  readonly setup: (db: TestDatabase) => Promise<DataLayerUnderTest>;
}

const ROLLBACK = new Error('roll back on purpose');

/** Rolls back by throwing out of a callback-style transaction; the sentinel is swallowed. */
export async function throwToRollBack(run: () => Promise<unknown>): Promise<void> {
  await assert.rejects(run(), (error) => error === ROLLBACK || (error instanceof Error && error.message === ROLLBACK.message));
}
export const rollbackError = (): Error => ROLLBACK;

async function backendPid(target: TransactionTarget): Promise<number> {
  assert.ok(isTransactionAdapter(target), 'the data layer hands over an adapter');
  const [row] = await target.query('SELECT pg_backend_pid() AS pid', []);
  return Number(row?.pid);
}

/**
 * The tests issue 14 asks of every data layer, against the real package and the real PostgreSQL:
 * commit → consumed byte for byte, rollback → nothing, a batch of 1,000 in order, a timer and
 * its cancel, fetchUnprocessed seeing the transaction's own rows, the non-transactional handle
 * refused, and the wake-up: only after COMMIT, never on rollback, from the connection the mode
 * says (the notifier's after commit, the transaction's own when it rides in the statement).
 */
export function adapterConformance(importMetaUrl: string, library: string, options: ConformanceOptions): void {
  const db = useTestDatabase(importMetaUrl);
  const outboxes = outboxFactory(db);
  let layer: DataLayerUnderTest;
  let outbox: Outbox;
  let listener: Listener;
  const received: Message[] = [];

  describe(`${library}: publish through its transaction`, () => {
    before(async () => {
      outbox = outboxes({ pool: db.pool });
      await outbox.migrate();
      outbox.subscribe(['conformance.q', 'batch.q', 'keyed.q'], (message) => {
        received.push(message);
      });
      outbox.start();
      listener = await listen(db.url, outbox.channel);
      layer = await options.setup(db);
    });
    after(async () => {
      await listener.close();
      await layer.close();
    });

    test('commit: the consumer receives exactly the body and headers published', async () => {
      const bodies: unknown[] = [
        Buffer.from([0, 1, 2, 127, 128, 254, 255]),
        { text: 'héllo wörld 🌍 漢字', n: 1.5, nested: [null, true] },
        '',
      ];
      const headers = { tenant: 'ünïcode ✓', 'x-empty': '' };
      const ids = await layer.inTransaction(async (target) => {
        const published: (string | null)[] = [];
        for (const body of bodies) published.push(await outbox.publish(target, 'conformance.q', body, { headers }));
        return published;
      });
      await waitFor(() => ids.every((id) => received.some((m) => m.id === id)), { what: 'every message consumed' });
      for (const [i, id] of ids.entries()) {
        const message = received.find((m) => m.id === id);
        assert.ok(message);
        assert.deepEqual(message.body, bodies[i]);
        assert.equal(message.headers.tenant, headers.tenant);
        assert.equal(message.headers['x-empty'], '');
      }
      assert.ok(Buffer.isBuffer(received.find((m) => m.id === ids[0])?.body), 'a Buffer body comes back as a Buffer');
    });

    test('rollback: nothing is stored, nothing consumed, nobody woken', async () => {
      const marker = `rolled-back-${Date.now()}`;
      await layer.rolledBack(async (target) => {
        await outbox.publish(target, 'rollback.q', marker);
      });
      // A committed sentinel on another queue: notifications arrive in commit order.
      await pgTransaction(db.pool, (client) => outbox.publish(client, 'sentinel-1.q', 'after'));
      await listener.waitFor('sentinel-1.q');
      assert.ok(!listener.payloads.includes('rollback.q'));
      assert.equal((await outbox.fetchUnprocessed({ queue: 'rollback.q' })).length, 0);
    });

    test('a batch of 1,000: ids in order, each body in its place; fetchUnprocessed sees the open transaction', async () => {
      const bodies = Array.from({ length: 1000 }, (_, i) => ({ i, s: `ü${i}` }));
      const ids = await layer.inTransaction(async (target) => {
        const inserted = await outbox.publishBatch(target, 'batch.q', bodies, { activateInMs: 60_000 });
        const seen = await outbox.fetchUnprocessed(target, { queue: 'batch.q', limit: 2000 });
        assert.deepEqual(
          seen.map((row) => row.id),
          inserted,
          'the transaction reads its own uncommitted rows',
        );
        assert.deepEqual(
          seen.map((row) => row.body),
          bodies,
        );
        return inserted;
      });
      assert.equal(ids.length, 1000);
      for (let i = 1; i < ids.length; i += 1) assert.ok(BigInt(ids[i]!) > BigInt(ids[i - 1]!), 'ids ascend in body order');
      assert.equal((await outbox.fetchUnprocessed({ queue: 'batch.q', limit: 2000 })).length, 1000);
    });

    test('a batch mixing bytes, text and JSON (empty, NUL, newlines, commas, non-ASCII): each body and header stored exactly', async () => {
      const bodies: unknown[] = [
        Buffer.from([0, 10, 44, 92, 127, 128, 255]),
        '',
        { nul: '\u0000', lines: 'a\nb,c', text: 'héllo 🌍 漢字' },
        'two\nlines, ünïcode',
        Buffer.alloc(0),
        [null, 1.5, 'x'],
      ];
      const headers = { note: 'multi\nline, ✓' };
      const ids = await layer.inTransaction((target) => outbox.publishBatch(target, 'mixed-batch.q', bodies, { headers }));
      const rows = await outbox.fetchUnprocessed({ queue: 'mixed-batch.q' });
      assert.deepEqual(
        rows.map((row) => row.id),
        ids,
      );
      assert.deepEqual(
        rows.map((row) => row.body),
        bodies,
      );
      assert.ok(Buffer.isBuffer(rows[0]?.body), 'a Buffer body comes back as a Buffer');
      for (const row of rows) assert.equal(row.headers.note, headers.note);
    });

    test('ordering keys: the key and its lock travel through the layer; the key is handled in publish order', async () => {
      const key = `account-${library}`;
      const ids = await layer.inTransaction(async (target) => [
        await outbox.publish(target, 'keyed.q', { seq: 0 }, { orderingKey: key }),
        ...(await outbox.publishBatch(target, 'keyed.q', [{ seq: 1 }, { seq: 2 }, { seq: 3 }], { orderingKey: key })),
      ]);
      await waitFor(() => ids.every((id) => received.some((m) => m.id === id)), { what: 'every keyed message consumed' });
      const keyed = received.filter((m) => m.orderingKey === key);
      assert.deepEqual(
        keyed.map((m) => (m.body as { seq: number }).seq),
        [0, 1, 2, 3],
      );
    });

    test('a timer: one live row per timer id, cancelled through the transaction', async () => {
      const timerId = `timer-${Date.now()}`;
      await layer.inTransaction(async (target) => {
        assert.notEqual(await outbox.publish(target, 'timer.q', 'first', { timerId, activateInMs: 60_000 }), null);
        assert.equal(await outbox.publish(target, 'timer.q', 'second', { timerId, activateInMs: 60_000 }), null);
      });
      assert.equal(await layer.inTransaction((target) => outbox.cancelTimer(target, 'timer.q', timerId)), true);
      assert.equal(await layer.inTransaction((target) => outbox.cancelTimer(target, 'timer.q', timerId)), false);
      assert.equal((await outbox.fetchUnprocessed({ queue: 'timer.q' })).length, 0);
    });

    test("a schema one migration behind: SchemaNotMigratedError through the layer's own error, naming the migration", async () => {
      const table = 'conformance_behind';
      const behind = outboxes({ pool: db.pool, table });
      await behind.migrate();
      await db.pool.query(`ALTER TABLE ${table} DROP COLUMN activate_at`);
      await db.pool.query(`DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version = 5`, [table]);
      const calls: [string, (target: TransactionTarget) => Promise<unknown>][] = [
        ['publish', (target) => behind.publish(target, 'behind.q', 'x')],
        ['publishBatch', (target) => behind.publishBatch(target, 'behind.q', ['x', 'y'])],
        ['cancelTimer', (target) => behind.cancelTimer(target, 'behind.q', 'timer-1')],
      ];
      for (const [operation, call] of calls) {
        let thrown: unknown;
        await assert.rejects(
          layer.inTransaction(async (target) => {
            try {
              await call(target);
            } catch (error) {
              thrown = error;
              throw error;
            }
          }),
        );
        assert.ok(thrown instanceof SchemaNotMigratedError, `${operation}: ${String(thrown)}`);
        assert.equal(thrown.operation, operation);
        assert.equal(thrown.missing, 'activate_at');
        assert.equal(thrown.migration, 'outbox/0005');
        assert.match(thrown.message, /txoutbox migrate --print --since 4/);
        assert.ok(thrown.cause !== undefined, "the data layer's own error is kept as the cause");
      }
    });

    test("a user's trigger on the outbox failing with undefined_table is passed through as the layer's own error", async () => {
      const table = 'conformance_trigger';
      const audited = outboxes({ pool: db.pool, table });
      await audited.migrate();
      await db.pool.query(`
        CREATE OR REPLACE FUNCTION ${table}_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO no_such_audit (id) VALUES (NEW.id); RETURN NEW; END $$;
        CREATE OR REPLACE TRIGGER ${table}_audit BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_audit();
      `);
      let thrown: unknown;
      await assert.rejects(
        layer.inTransaction(async (target) => {
          try {
            await audited.publish(target, 'audited.q', 'x');
          } catch (error) {
            thrown = error;
            throw error;
          }
        }),
      );
      assert.ok(thrown !== undefined && !(thrown instanceof SchemaNotMigratedError), String(thrown));
    });

    test('an un-awaited publish in a transaction that rolls back writes nothing, wherever its statement lands', async () => {
      const queue = `unawaited-${Date.now()}.q`;
      let publishing: Promise<unknown> | undefined;
      await layer.rolledBack((target) => {
        // Not awaited: the layer rolls back as the callback ends, maybe before publish sends its
        // INSERT. Inside the transaction, the INSERT rolls back with it; sent after the ROLLBACK, it
        // must be refused, never run on its own.
        publishing = outbox.publish(target, queue, 'x');
        publishing.catch(() => undefined);
        return Promise.resolve();
      });
      const outcome = await publishing?.then(
        () => 'resolved',
        (error: unknown) => error,
      );
      // Resolved: its INSERT ran inside the transaction and rolled back with it. Rejected: refused
      // (NotInTransactionError, or the layer's own refusal of a finished transaction).
      assert.ok(outcome === 'resolved' || outcome instanceof Error, String(outcome));
      assert.equal(
        (await outbox.fetchUnprocessed({ queue })).length,
        0,
        `committed on its own after its transaction rolled back (publish: ${String(outcome)})`,
      );
    });

    test('the non-transactional handle is refused with NotInTransactionError', () => {
      assert.throws(() => layer.wrapNonTransactional(), NotInTransactionError);
    });

    test(`wake-up (${options.wake}): only after COMMIT, from the ${options.wake === 'after-commit' ? "Outbox's notifier" : "transaction's own"} connection`, async () => {
      const queue = `wake-${Date.now()}.q`;
      let pid = 0;
      await layer.inTransaction(async (target) => {
        pid = await backendPid(target);
        await outbox.publish(target, queue, 'x');
        // While the transaction is open, a committed sentinel's wake-up arrives and ours does not.
        await pgTransaction(db.pool, (client) => outbox.publish(client, 'sentinel-2.q', 'during'));
        await listener.waitFor('sentinel-2.q');
        assert.ok(!listener.payloads.includes(queue), 'no wake-up before COMMIT');
      });
      await listener.waitFor(queue);
      const sender = listener.senders[listener.payloads.indexOf(queue)];
      if (options.wake === 'after-commit') assert.notEqual(sender, pid, "sent by the Outbox's notifier after COMMIT");
      else assert.equal(sender, pid, 'sent by the transaction itself, at its COMMIT');
    });
  });
}
