import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import type { LeaseMode, Message, RetryContext } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { otherNodePostgres } from '../support/other-node-postgres.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * Session settings that change how the server prints bytea and timestamps: the claim returns its
 * own texts (sql.ts claimedColumns, decoded by claimed-row.ts), so none of them may reach a message.
 */
const ODD_SESSION = '-c bytea_output=escape -c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham';

/** Every byte value, twice: escape-format bytea prints these as octal escapes and backslashes. */
const ALL_BYTES = Buffer.from([...Array.from({ length: 256 }, (_, i) => i), ...Array.from({ length: 256 }, (_, i) => 255 - i)]);

async function storedRow(table: string, id: string): Promise<{ createdMs: string; headers: Record<string, string> }> {
  const { rows } = await db.pool.query<{ createdMs: string; headers: Record<string, string> }>(
    `SELECT floor(extract(epoch FROM created_at) * 1000)::int8::text AS "createdMs", headers FROM ${table} WHERE id = $1`,
    [id],
  );
  const row = rows[0];
  assert.ok(row !== undefined, `row ${id} not found`);
  return row;
}

/**
 * The claim's rows are decoded off the wire by a query class of txoutbox's node-postgres
 * (util/decoded-query.ts); a pool of another copy takes the plain path. Both must give the same message.
 */
const COPIES = [
  ['', pg],
  [', a pool of another node-postgres copy', otherNodePostgres()],
] as const;

for (const lease of ['token', 'row-lock'] as LeaseMode[]) {
  describe(`a claimed row as the handler sees it (lease: '${lease}')`, () => {
    for (const [copyLabel, copy] of COPIES)
      test(`payload, headers, times and counts are the stored ones, whatever the session prints bytea and timestamps as${copyLabel}`, async () => {
        const table = `cd_${lease.replace('-', '_')}${copy === pg ? '' : '_other'}`;
        const pool = new copy.Pool({ connectionString: db.url, options: ODD_SESSION, max: 4 });
        db.onCleanup(() => pool.end());
        const { outbox } = await migratedOutbox(newOutbox, pool, table);
        const [bytesId, jsonId, textId, emptyId] = await inTransaction(db.pool, async (c) => [
          await outbox.publish(c, 'decode', ALL_BYTES, { headers: { tenant: 'ä "quoted" \\ tenant' } }),
          await outbox.publish(c, 'decode', { text: 'grüße', n: 7 }, { orderingKey: 'k1' }),
          await outbox.publish(c, 'decode', 'plain ✓ text'),
          await outbox.publish(c, 'decode', Buffer.alloc(0)),
        ]);
        assert.ok(bytesId !== null && jsonId !== null && textId !== null && emptyId !== null);
        const stored = { bytes: await storedRow(table, bytesId), json: await storedRow(table, jsonId) };
        const seen: Message[] = [];
        const retries: RetryContext[] = [];
        outbox.subscribe(
          'decode',
          (message) => {
            seen.push(message);
            // The JSON row fails its first run: its second delivery carries the retry's bookkeeping.
            if (message.id === jsonId && message.attemptsCount === 0) throw new Error('first run fails');
          },
          {
            name: `decode-${lease}${copy === pg ? '' : '-other'}`,
            lease,
            retry: {
              nextDelayMs: (context) => {
                retries.push(context);
                return 0;
              },
            },
            ...FAST_POLL,
          },
        );
        outbox.start();
        await waitFor(() => seen.length === 5, { what: 'five deliveries (the JSON row twice)' });
        assert.equal(seen.find((m) => m.id === textId)?.body, 'plain ✓ text');
        assert.deepEqual(seen.find((m) => m.id === emptyId)?.payload, Buffer.alloc(0));

        const bytes = seen.find((m) => m.id === bytesId);
        assert.ok(bytes !== undefined);
        assert.deepEqual(bytes.payload, ALL_BYTES);
        assert.deepEqual(bytes.body, ALL_BYTES);
        assert.deepEqual(bytes.headers, stored.bytes.headers);
        assert.equal(bytes.headers.tenant, 'ä "quoted" \\ tenant');
        assert.equal(bytes.createdAt.getTime(), Number(stored.bytes.createdMs));
        assert.equal(bytes.correlationId, stored.bytes.headers['correlation-id']);
        assert.equal(bytes.queue, 'decode');
        assert.equal(bytes.deliveriesCount, 1);
        assert.equal(bytes.attemptsCount, 0);
        assert.equal(bytes.timerId, null);
        assert.equal(bytes.orderingKey, null);

        const [first, second] = seen.filter((m) => m.id === jsonId);
        assert.ok(first !== undefined && second !== undefined);
        assert.deepEqual(second.body, { text: 'grüße', n: 7 });
        assert.equal(second.createdAt.getTime(), Number(stored.json.createdMs));
        assert.equal(second.orderingKey, 'k1');
        assert.equal(second.deliveriesCount, 2);
        assert.equal(second.attemptsCount, 1);
        // The first failure's retry got the run's start as its first attempt, and the row kept it.
        const [retry] = retries;
        assert.ok(retry !== undefined);
        assert.equal(retry.attempt, 1);
        assert.equal(retry.firstAttemptAt.getTime(), retry.lastAttemptAt.getTime());
      });

    test('times before 1970 are floored to the millisecond, and an infinite one (written by hand) does not fail the claim', async () => {
      const table = `cd_edge_${lease.replace('-', '_')}`;
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
      const [early, endless] = await inTransaction(db.pool, async (c) => [
        await outbox.publish(c, 'edge', { n: 1 }),
        await outbox.publish(c, 'edge', { n: 2 }),
      ]);
      await db.pool.query(`UPDATE ${table} SET created_at = '1969-12-31 23:59:59.9985+00' WHERE id = $1`, [early]);
      // Before the CASE in sql.ts epochMs, this row failed every claim: "cannot convert infinity to bigint".
      await db.pool.query(`UPDATE ${table} SET created_at = 'infinity' WHERE id = $1`, [endless]);
      const seen = new Map<string, Message>();
      outbox.subscribe(
        'edge',
        (message) => {
          seen.set(message.id, message);
        },
        { name: `edge-${lease}`, lease, ...FAST_POLL },
      );
      outbox.start();
      await waitFor(() => seen.size === 2, { what: 'both rows delivered' });
      assert.equal(seen.get(early ?? '')?.createdAt.getTime(), -2, 'floored: -1.5 ms is -2, as Date.parse gives');
      assert.ok(Number.isNaN(seen.get(endless ?? '')?.createdAt.getTime()), 'infinity: an invalid Date');
    });

    test('headers written by hand as something other than an object are read as none, with a consume middleware too', async () => {
      // Review finding: a row whose headers were JSON null (NOT NULL allows it) threw a TypeError
      // while the consume observers' scope was built, outside the handler: logged, nothing
      // written, the row claimed again after each lease (row-lock: at once), never dead-lettered.
      const table = `cd_headers_${lease.replace('-', '_')}`;
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: [
          {
            name: 'pass-through',
            consume: async (_ctx, next) => {
              await next();
            },
          },
        ],
      });
      const ids = await inTransaction(db.pool, async (c) => [
        await outbox.publish(c, 'odd-headers', { n: 1 }),
        await outbox.publish(c, 'odd-headers', { n: 2 }),
        await outbox.publish(c, 'odd-headers', { n: 3 }),
        await outbox.publish(c, 'odd-headers', { n: 4 }),
      ]);
      const stored = ['null', '[1, 2]', '"text"', '{"correlation-id": 7, "tenant": "a"}'];
      for (const [i, headers] of stored.entries()) {
        await db.pool.query(`UPDATE ${table} SET headers = $2::jsonb WHERE id = $1`, [ids[i], headers]);
      }
      const seen = new Map<string, Message>();
      outbox.subscribe(
        'odd-headers',
        (message) => {
          seen.set(message.id, message);
        },
        { name: `odd-headers-${lease}`, lease, leaseTtlMs: 1_000, ...FAST_POLL },
      );
      outbox.start();
      await waitFor(async () => (await db.pool.query(`SELECT 1 FROM ${table}`)).rowCount === 0, {
        what: 'every row handled and acked',
      });
      for (const id of ids.slice(0, 3)) assert.deepEqual(seen.get(id ?? '')?.headers, {});
      // A correlation id that is not a string is no correlation id: the row id stands in.
      const last = seen.get(ids[3] ?? '');
      assert.equal(last?.correlationId, ids[3]);
      assert.equal(last?.headers.tenant, 'a');
    });
  });
}

describe('the handler message object', () => {
  test('keeps its own enumerable keys in order, body included, so spreads and JSON carry the body', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'cd_shape');
    let message: Message | undefined;
    outbox.subscribe(
      'shape',
      (m) => {
        message = m;
      },
      { name: 'shape', ...FAST_POLL },
    );
    outbox.start();
    await inTransaction(db.pool, async (c) => await outbox.publish(c, 'shape', { a: 1 }));
    await waitFor(() => message !== undefined, { what: 'the delivery' });
    assert.ok(message !== undefined);
    assert.deepEqual(Object.keys(message), [
      'id',
      'queue',
      'body',
      'payload',
      'headers',
      'correlationId',
      'createdAt',
      'deliveriesCount',
      'attemptsCount',
      'timerId',
      'orderingKey',
    ]);
    assert.deepEqual({ ...message }.body, { a: 1 });
    assert.deepEqual((JSON.parse(JSON.stringify(message)) as { body: unknown }).body, { a: 1 });
  });
});
