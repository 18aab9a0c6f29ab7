import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';

import type { Outbox, SubscribeOptions } from '../../src/index.js';
import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { listenersOf } from '../support/listener-backend.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * An idle loop's poll backs off from 100 ms, doubling (±25 %): its empty claims come about 0.1,
 * 0.3, 0.7, 1.5, 3.1 and 6.3 s after start. Nothing announces the rows below (`listen: false`, a
 * lease nobody writes to), so without a probe a row that turns claimable at 4 s runs at the claim
 * after it: 4.7 s at the earliest (the 3.1 s claim is at most 3.9 s), 6.3 s on average.
 */
const BACKING_OFF = { minPollIntervalMs: 100, maxPollIntervalMs: 60_000 } as const;
const CLAIMABLE_AT_MS = 4_000;
/** Later than this, the row was found by a poll, not the probe. */
const ON_TIME_MS = 4_500;

/** Rows of `table` leased by a process that died: their lease (from now) ends after the consumer's leaseTtlMs. */
async function leasedByTheDead(table: string): Promise<void> {
  await db.pool.query(`UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now()`);
}

/** A consumer (a pool of its own) of `queues` that records when each body's handler started (Date.now()). */
function consumerOf(table: string, queues: string | string[], options: SubscribeOptions = {}) {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  db.onCleanup(() => pool.end());
  const outbox = newOutbox({ pool, table, listen: false });
  const startedAt = new Map<string, number>();
  outbox.subscribe(
    queues,
    (message) => {
      startedAt.set(String(message.body), Date.now());
    },
    { ...BACKING_OFF, ...options },
  );
  return { outbox, startedAt };
}

/** A pool of its own that counts the claims and the probes sent through it. */
function countingPool(): { pool: pg.Pool; sent: { claims: number; probes: number } } {
  const sent = { claims: 0, probes: 0 };
  const pool = new ClaimDelayPool(
    { connectionString: db.url, max: 4 },
    (name) => {
      if (name.includes('next_claimable')) sent.probes += 1;
      else sent.claims += 1;
      return Promise.resolve();
    },
    () => Promise.resolve(),
    /claim/,
  );
  db.onCleanup(() => pool.end());
  return { pool, sent };
}

async function migrated(table: string): Promise<Outbox> {
  const producer = newOutbox({ pool: db.pool, table });
  await producer.migrate();
  return producer;
}

/**
 * `table`'s row `x` of queue `q`, leased by a process that died just before a consumer of `queues`
 * (with `options`, a CLAIMABLE_AT_MS lease) starts: how long after the lease its handler started.
 */
async function leaseRunsOut(table: string, queues: string | string[], options: SubscribeOptions = {}): Promise<number> {
  const producer = await migrated(table);
  await publishCommitted(producer, db.pool, typeof queues === 'string' ? queues : (queues[1] ?? 'q'), ['x']);
  const { outbox, startedAt } = consumerOf(table, queues, { leaseTtlMs: CLAIMABLE_AT_MS, ...options });
  const leasedAt = Date.now();
  await leasedByTheDead(table);
  outbox.start();
  await waitFor(() => startedAt.has('x'), { what: 'the row whose lease ran out', timeoutMs: 12_000 });
  return startedAt.get('x')! - leasedAt;
}

/** Ran when the lease ran out (or the row came due), not at a poll after it. */
function onTime(waited: number, what: string): void {
  assert.ok(waited >= CLAIMABLE_AT_MS - 10 && waited < ON_TIME_MS, `ran ${waited} ms after ${what}`);
}

describe('an idle loop wakes when a row turns claimable that nobody announces', () => {
  for (const lease of ['token', 'row-lock'] as const) {
    test(`a lease another process held runs out: its row runs then, not at the next poll (lease: ${lease})`, async () => {
      onTime(await leaseRunsOut(lease === 'token' ? 'ip_lease' : 'ip_lease_rl', 'q', { lease }), 'it was leased');
    });
  }

  test('listen: false: a delayed row runs when due, not at the next poll', async () => {
    const table = 'ip_delayed';
    const producer = await migrated(table);
    const { outbox, startedAt } = consumerOf(table, 'q');
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => producer.publish(c, 'q', 'x', { activateInMs: CLAIMABLE_AT_MS }));
    outbox.start();
    await waitFor(() => startedAt.has('x'), { what: 'the delayed row', timeoutMs: 12_000 });
    onTime(startedAt.get('x')! - publishedAt, 'it was published');
  });

  test('a fixed poll interval (minPollIntervalMs = maxPollIntervalMs): probed before every sleep', async () => {
    // Claims at 0, 3 and 6 s (no jitter at a fixed interval): the lease runs out at 4 s.
    onTime(await leaseRunsOut('ip_fixed_poll', 'q', { minPollIntervalMs: 3_000, maxPollIntervalMs: 3_000 }), 'it was leased');
  });

  test('after the wake for one row, the next is asked for at once: a row due 600 ms later runs on time too', async () => {
    const table = 'ip_chain';
    const producer = await migrated(table);
    await publishCommitted(producer, db.pool, 'q', ['leased']);
    // A poll from 2 s, doubling: claims at about 0 and 2 s (its probe sees the lease), then the
    // probe's wake at 4 s; the claim after taking the leased row is a first empty claim, whose
    // sleep (1.5–2.5 s) ends after 5.5 s: only a probe after the wake sees the row due at 4.6 s.
    const { outbox, startedAt } = consumerOf(table, 'q', {
      leaseTtlMs: CLAIMABLE_AT_MS,
      minPollIntervalMs: 2_000,
      maxPollIntervalMs: 60_000,
    });
    const leasedAt = Date.now();
    await leasedByTheDead(table);
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => producer.publish(c, 'q', 'delayed', { activateInMs: CLAIMABLE_AT_MS + 600 }));
    outbox.start();
    await waitFor(() => startedAt.has('delayed'), { what: 'the delayed row', timeoutMs: 12_000 });
    const leased = startedAt.get('leased')! - leasedAt;
    onTime(leased, 'it was leased');
    const delayed = startedAt.get('delayed')! - publishedAt - (CLAIMABLE_AT_MS + 600);
    assert.ok(delayed >= -10 && delayed < 400, `the delayed row ran ${delayed} ms after it was due`);
  });

  test('a subscription over several queues: the queue whose lease runs out is claimed then', async () => {
    onTime(await leaseRunsOut('ip_lease_many', ['a', 'b', 'c']), 'it was leased');
  });
});

describe('a row due far ahead', () => {
  test('a month ahead: no timer (Node would fire one past 24.8 days at once), the loop polls as usual', async () => {
    const table = 'ip_far';
    const producer = await migrated(table);
    await inTransaction(db.pool, (c) => producer.publish(c, 'q', 'x', { activateInMs: 30 * 24 * 3_600_000 }));
    const { pool, sent } = countingPool();
    const outbox = newOutbox({ pool, table, listen: false });
    outbox.subscribe('q', () => undefined, { minPollIntervalMs: 600, maxPollIntervalMs: 600 });
    outbox.start();
    await delay(2_500);
    // A poll every 600 ms: 5 claims, and a probe before each sleep but at most one a second.
    assert.ok(sent.claims <= 6 && sent.probes <= 4, `${sent.claims} claims and ${sent.probes} probes in 2.5 s`);
    assert.ok(sent.probes >= 1, 'probed');
  });
});

describe('the probe statement', () => {
  /** What nextClaimable answers for `queues` ($3: `held`), leases judged by a 10 s leaseTtlMs, the claim just sent. */
  async function probe(
    table: string,
    queues: string[],
    held: string[] = [],
  ): Promise<{ queue: string; in_ms: number } | undefined> {
    const { nextClaimable } = buildSubscriberSql(resolveSchemaNames(table, false));
    const { rows } = await db.pool.query<{ queue: string; in_ms: number }>(nextClaimable.text, [queues, 10_000, held, 0]);
    return rows[0];
  }

  const near = (actual: number | undefined, expected: number) => {
    assert.ok(actual !== undefined && Math.abs(actual - expected) < 1_000, `${actual} ms, expected about ${expected}`);
  };

  test('the earliest of the queues: a delayed row coming due, a lease held elsewhere running out; neither due nor expired rows', async () => {
    const table = 'ip_statement';
    const producer = await migrated(table);
    assert.equal(await probe(table, ['a', 'b']), undefined, 'an empty table');
    await publishCommitted(producer, db.pool, 'a', ['due now']);
    await inTransaction(db.pool, (c) => producer.publish(c, 'a', 'later', { activateInMs: 60_000 }));
    near((await probe(table, ['a', 'b']))?.in_ms, 60_000);
    await inTransaction(db.pool, (c) => producer.publish(c, 'b', 'sooner', { activateInMs: 30_000 }));
    assert.equal((await probe(table, ['a', 'b']))?.queue, 'b');
    near((await probe(table, ['a', 'b']))?.in_ms, 30_000);
    assert.equal((await probe(table, ['a']))?.queue, 'a', 'only the queues listed');
    // The due row, leased 2 s ago: its lease (10 s) runs out in 8 s, the earliest now.
    await db.pool.query(
      `UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now() - interval '2 seconds' WHERE queue = 'a' AND next_attempt_at <= now()`,
    );
    assert.equal((await probe(table, ['a', 'b']))?.queue, 'a');
    near((await probe(table, ['a', 'b']))?.in_ms, 8_000);
    // Expired already: claimable now, the claim's to take; the next one counts.
    await db.pool.query(`UPDATE ${table} SET acquired_at = now() - interval '11 seconds' WHERE acquired_token IS NOT NULL`);
    near((await probe(table, ['a', 'b']))?.in_ms, 30_000);
  });

  test('leaves out paused queues and the leases the subscription holds ($3)', async () => {
    const table = 'ip_statement_left_out';
    const producer = await migrated(table);
    await publishCommitted(producer, db.pool, 'q', ['leased']);
    await db.pool.query(`UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now()`);
    const { rows } = await db.pool.query<{ id: string }>(`SELECT id::text FROM ${table}`);
    near((await probe(table, ['q']))?.in_ms, 10_000);
    assert.equal(await probe(table, ['q'], [rows[0]!.id]), undefined, 'held here: its own to end');
    await producer.pause('q');
    assert.equal(await probe(table, ['q']), undefined, 'paused');
    await producer.resume('q');
    near((await probe(table, ['q']))?.in_ms, 10_000);
  });
});

describe('when the loop probes', () => {
  test('at most once a second while NOTIFYs keep cutting its sleeps short (its rows are announced)', async () => {
    const table = 'ip_notified';
    await migrated(table);
    const { pool, sent } = countingPool();
    const outbox = newOutbox({ pool, table });
    outbox.subscribe('q', () => undefined, { minPollIntervalMs: 1_000, maxPollIntervalMs: 60_000 });
    outbox.start();
    await waitFor(async () => (await listenersOf(db.pool, table)) === 1, { what: 'the consumer listening' });
    // Every 200 ms for 3 s a wake-up with nothing to claim (a row another consumer took first):
    // each empty claim is one more in a row, before a sleep of 2 s and longer, cut short.
    const before = { ...sent };
    const startedAt = performance.now();
    for (let i = 0; i < 15; i += 1) {
      await db.pool.query('SELECT pg_notify($1, $2)', [`txoutbox.${table}`, 'q']);
      await delay(200);
    }
    const seconds = (performance.now() - startedAt) / 1_000;
    const probes = sent.probes - before.probes;
    assert.ok(sent.claims - before.claims >= 10, `the wake-ups reached it: ${sent.claims - before.claims} claims`);
    assert.ok(probes <= Math.ceil(seconds) + 1, `${probes} probes in ${seconds.toFixed(1)} s`);
  });
});

describe('a probe that fails', () => {
  test('is warned about once per streak; the loop polls on, and the next probe that succeeds wakes the row on time', async () => {
    const table = 'ip_failing';
    const producer = await migrated(table);
    await publishCommitted(producer, db.pool, 'q', ['x']);
    let failures = 2;
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 4 },
      () => {
        if (failures === 0) return Promise.resolve();
        failures -= 1;
        return Promise.reject(new Error('the probe failed'));
      },
      () => Promise.resolve(),
      /next_claimable/,
    );
    db.onCleanup(() => pool.end());
    const outbox = newOutbox({ pool, table, listen: false });
    const startedAt: number[] = [];
    // Probes before each 1.2 s sleep: at 0 and 1.2 s they fail, at 2.4 s the third finds the lease;
    // the poll alone would find it at 4.8 s.
    outbox.subscribe('q', () => void startedAt.push(Date.now()), {
      minPollIntervalMs: 1_200,
      maxPollIntervalMs: 1_200,
      leaseTtlMs: CLAIMABLE_AT_MS,
    });
    const leasedAt = Date.now();
    await leasedByTheDead(table);
    outbox.start();
    await waitFor(() => startedAt.length === 1, { what: 'the row whose lease ran out', timeoutMs: 12_000 });
    const warnings = newOutbox.logger.messages('warn').filter((m) => m.startsWith('could not ask when the next delayed row'));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    const waited = startedAt[0]! - leasedAt;
    assert.ok(waited >= CLAIMABLE_AT_MS - 10 && waited < ON_TIME_MS, `ran ${waited} ms after it was leased`);
  });
});
