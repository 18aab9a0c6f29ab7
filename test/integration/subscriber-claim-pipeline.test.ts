/**
 * The claim loop's capacity and its pipelining (architecture/subscriber.md, "Pipelined claims"):
 * slow handlers hold at most concurrency + fetchBatchSize leases and never see two claims in
 * flight; handlers that outrun one claim at a time get a second claim overlapping the first, and
 * the subscription then holds at most concurrency + 2 × fetchBatchSize leases.
 *
 * Claims are slowed down by a pg.Pool subclass (test/support/claim-delay-pool.ts) whose clients delay the claim (the
 * database is real; only the round trip is made longer, as on a busy server far away) and counts
 * how many claims are in flight at once.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** A pool whose claim statements take `delayMs` longer. */
function slowClaimPool(delayMs: number): ClaimDelayPool {
  return new ClaimDelayPool({ connectionString: db.url, max: 6 }, () => new Promise((resolve) => setTimeout(resolve, delayMs)));
}

/** Samples the number of leased rows every few ms until stopped; returns the maximum seen. */
function sampleLeases(table: string): { stop: () => Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table} WHERE acquired_token IS NOT NULL`,
      );
      max = Math.max(max, rows[0]?.n ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return max;
    },
  };
}

describe('claim pipelining', () => {
  test('slow handlers: one claim in flight, at most concurrency + fetchBatchSize leases', async () => {
    const pool = slowClaimPool(10);
    db.onCleanup(() => pool.end());
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'p_slow');
    const seen = new Set<number>();
    outbox.subscribe(
      'slow',
      async (message) => {
        seen.add(message.body as number);
        // A batch lasts 400 ms, a claim 10 ms: the second loop engages only when a claim outlasts a
        // handler (the slots starve), so a claim must stall ~190 ms for that, not ~50 ms as with
        // 60 ms handlers, which a loaded CI machine managed.
        await new Promise((resolve) => setTimeout(resolve, 200));
      },
      { concurrency: 2, fetchBatchSize: 4, ...FAST_POLL },
    );
    await publishCommitted(
      outbox,
      db.pool,
      'slow',
      Array.from({ length: 16 }, (_, i) => i),
    );
    const sampler = sampleLeases('p_slow');
    outbox.start();
    await log.waitFor('acked', 16, 20_000);
    const maxLeased = await sampler.stop();
    assert.equal(seen.size, 16);
    assert.equal(pool.maxInFlight, 1, 'handlers slower than a claim never engage the second claim loop');
    // Running + buffered ≤ 2 + 4; a finished row stays leased until its coalesced ack DELETE lands,
    // which on a loaded machine can outlast the next claim: up to one per slot more.
    assert.ok(maxLeased <= 2 + 4 + 2, `leased at once: ${maxLeased}`);
    assert.equal(await remaining(db.pool, 'slow', 'p_slow'), 0);
  });

  test('slow handlers that all end in one turn (a shared promise) never engage the second claim loop', async () => {
    // Review: a loop woken once per turn (after the handlers that ended in it) found the buffer
    // empty and slots idle, and took that for handlers faster than a claim, although each had
    // waited 300 ms on one shared promise (a batched call, a rate-limit tick).
    const pool = slowClaimPool(5);
    db.onCleanup(() => pool.end());
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'p_tick');
    let release = (): void => undefined;
    let tick = new Promise<void>((resolve) => (release = resolve));
    let ticker: NodeJS.Timeout | undefined;
    outbox.subscribe(
      'tick',
      async () => {
        await tick;
      },
      { concurrency: 8, fetchBatchSize: 4, ...FAST_POLL },
    );
    await publishCommitted(
      outbox,
      db.pool,
      'tick',
      Array.from({ length: 48 }, (_, i) => i),
    );
    outbox.start();
    try {
      // Ticking once every slot waits on it: a tick during the startup claims (connections being
      // made, on a loaded machine) would be a real starvation, which pipelining is for.
      await log.waitFor('dispatched', 8, 10_000);
      ticker = setInterval(() => {
        release();
        tick = new Promise<void>((resolve) => (release = resolve));
      }, 300);
      await log.waitFor('acked', 48, 20_000);
    } finally {
      clearInterval(ticker);
    }
    assert.equal(pool.maxInFlight, 1, 'one claim in flight at a time');
    assert.equal(await remaining(db.pool, 'tick', 'p_tick'), 0);
  });

  test('handlers that outrun a claim: a second claim overlaps the first, at most concurrency + 2 × fetchBatchSize leases', async () => {
    const pool = slowClaimPool(25);
    db.onCleanup(() => pool.end());
    // Leases held counted in the process, not sampled from the table: a row whose handler returned
    // stays leased in the table until its coalesced ack DELETE lands, and on a loaded machine those
    // pile up without bound by the claim loop (they are the acker's, not the claimer's). Claimed
    // minus finished, read at each claim's `fetched` event, is what the loop holds.
    let claimed = 0;
    let finished = 0;
    let maxHeld = 0;
    const log = new EventLog();
    const { outbox } = await migratedOutbox(newOutbox, pool, 'p_fast', {
      recorder: (event) => {
        log.recorder(event);
        if (event.type !== 'fetched') return;
        claimed += event.count;
        maxHeld = Math.max(maxHeld, claimed - finished);
      },
    });
    const counts = new Map<number, number>();
    outbox.subscribe(
      'fast',
      (message) => {
        const n = message.body as number;
        counts.set(n, (counts.get(n) ?? 0) + 1);
        finished += 1;
      },
      { concurrency: 4, fetchBatchSize: 10, ...FAST_POLL },
    );
    await publishCommitted(
      outbox,
      db.pool,
      'fast',
      Array.from({ length: 600 }, (_, i) => i),
    );
    outbox.start();
    await log.waitFor('acked', 600, 30_000);
    assert.equal(counts.size, 600);
    assert.ok(
      [...counts.values()].every((c) => c === 1),
      'every row handled exactly once',
    );
    assert.equal(pool.maxInFlight, 2, 'two claims in flight at once, never more');
    assert.ok(maxHeld <= 4 + 2 * 10, `held at once: ${maxHeld}`);
    assert.equal(await remaining(db.pool, 'fast', 'p_fast'), 0);
  });
  for (const [kind, handler] of [
    ['synchronous', (): void => undefined],
    [
      'asynchronous',
      async (): Promise<void> => {
        await Promise.resolve();
      },
    ],
  ] as const)
    test(`fast ${kind} handlers at concurrency 1: every claim but the table's tail comes back full`, async () => {
      // Handlers that end within a microtask run a whole claim in one event-loop turn. The claim
      // loop woke at each completion and claimed as soon as half a batch was free: an asynchronous
      // handler's run drained with claims of half a batch, each costing the server about what a full
      // one does (bench: 302 claims instead of 202 for 20,000 rows, +7 µs of server CPU per message).
      const fetched: number[] = [];
      const log = new EventLog();
      const table = `p_full_${kind.slice(0, 5)}`;
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
        recorder: (event) => {
          log.recorder(event);
          if (event.type === 'fetched' && event.count > 0) fetched.push(event.count);
        },
      });
      outbox.subscribe('full', handler, { concurrency: 1, fetchBatchSize: 50, ...FAST_POLL });
      await publishCommitted(
        outbox,
        db.pool,
        'full',
        Array.from({ length: 1_000 }, (_, i) => i),
      );
      outbox.start();
      await log.waitFor('acked', 1_000, 30_000);
      const short = fetched.filter((count) => count < 50);
      assert.ok(short.length <= 2, `claims: ${fetched.join(' ')}`);
      assert.equal(await remaining(db.pool, 'full', table), 0);
    });
});

describe('stop() with a claim in flight', () => {
  test('rows buffered but never started are released at once, not after the claim in flight (which may outlast the drain)', async () => {
    // The release waited for the claim loop, and so for its claim in flight (up to queryTimeoutMs):
    // past gracefulTimeoutMs the rows kept their leases and their counted delivery until expiry.
    let claims = 0;
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const pool = new ClaimDelayPool({ connectionString: db.url, max: 6 }, () => {
      claims += 1;
      return claims === 1 ? Promise.resolve() : gate; // every claim after the first is held
    });
    db.onCleanup(async () => {
      openGate();
      await pool.end();
    });
    const table = 'p_stop_buffered';
    const outbox = newOutbox({ pool, table, gracefulTimeoutMs: 1_000 });
    await outbox.migrate();
    outbox.subscribe('buffered', () => new Promise<void>((resolve) => setTimeout(resolve, 200)), {
      concurrency: 1,
      fetchBatchSize: 4,
      ...FAST_POLL,
    });
    await publishCommitted(
      outbox,
      db.pool,
      'buffered',
      Array.from({ length: 8 }, (_, i) => i),
    );
    outbox.start();
    await waitFor(() => pool.inFlight === 1 && claims >= 2, { what: 'the second claim held in flight' });
    await outbox.stop();
    const { rows } = await db.pool.query<{ leased: number; counted: number }>(
      `SELECT count(*) FILTER (WHERE acquired_token IS NOT NULL)::int AS leased,
              count(*) FILTER (WHERE deliveries_count > 0)::int AS counted FROM ${table}`,
    );
    assert.deepEqual(
      rows[0],
      { leased: 0, counted: 0 },
      'the three rows buffered behind the running one went back unleased and uncounted',
    );
  });
});
