/**
 * The workloads, each a function of one system instance in a fresh database. They return what
 * they measured; the harness (run-one.ts) wraps them with the meter, the database and cleanup.
 */
import type pg from 'pg';

import { beforeDeadline } from '../../src/util/deadline.js';
import type { PhaseMeter } from './measure.js';
import { percentile } from './stats.js';
import type { SystemInstance } from './systems/system.js';

export interface Sizes {
  readonly reps: number;
  readonly producers: number;
  readonly publishSingle: number;
  readonly publishBatch: number;
  readonly batchSize: number;
  readonly drain: number;
  /**
   * W5's backlog: longer than W3's, because W5 judges budgets of a fraction of a µs of Node CPU per
   * message, and over 20,000 messages (under a second) one run's CPU per message moved by several
   * µs with where the process's garbage collections fell (BENCHMARKS.md, issue 18 round nine).
   */
  readonly seamDrain: number;
  readonly drainConcurrency: readonly number[];
  readonly wakeMessages: number;
  readonly wakeRatePerSecond: number;
  readonly wakeConcurrency: number;
  readonly timeoutMs: number;
}

export const FULL: Sizes = {
  reps: 3,
  producers: 8,
  publishSingle: 10_000,
  publishBatch: 10_000,
  batchSize: 100,
  drain: 20_000,
  seamDrain: 100_000,
  drainConcurrency: [1, 4, 16],
  wakeMessages: 2_000,
  wakeRatePerSecond: 200,
  wakeConcurrency: 4,
  timeoutMs: 180_000,
};

export const QUICK: Sizes = {
  reps: 1,
  producers: 8,
  publishSingle: 400,
  publishBatch: 2_000,
  batchSize: 100,
  drain: 2_000,
  seamDrain: 2_000,
  drainConcurrency: [1, 4, 16],
  wakeMessages: 60,
  wakeRatePerSecond: 200,
  wakeConcurrency: 4,
  timeoutMs: 30_000,
};

export interface Measured {
  readonly messages: number;
  readonly seconds: number;
  readonly duplicates?: number;
  readonly losses?: number;
  readonly remaining?: number;
  readonly latencyMs?: { p50: number; p95: number; p99: number; max: number; negative: number };
  /** W5 seams on: spans exported while it ran (one `process` span per handler run). */
  readonly spans?: number;
  /** W5: the spans it had to export (handler runs × spans per run: 0 when the sampler drops them). */
  readonly spansExpected?: number;
  readonly note?: string | undefined;
}

export interface WorkloadContext {
  readonly instance: SystemInstance;
  readonly producers: pg.Pool;
  readonly sizes: Sizes;
  readonly meter: PhaseMeter;
  readonly databaseUrl: string;
  readonly database: string;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Opens every producer connection before the clock starts: connection set-up is not publishing. */
async function warm(pool: pg.Pool, count: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: count }, () => pool.connect()));
  for (const client of clients) client.release();
}

async function publishAll(
  instance: SystemInstance,
  pool: pg.Pool,
  first: number,
  end: number,
  batch: number,
  producers: number,
): Promise<void> {
  let next = first;
  const producer = async (): Promise<void> => {
    const client = await pool.connect();
    try {
      while (next < end) {
        // Claim the range before the first await: the other producers advance `next` meanwhile.
        const from = next;
        const to = Math.min(end, from + batch);
        next = to;
        await client.query('BEGIN');
        if (batch === 1) await instance.publishOne(client, from);
        else await instance.publishBatch(client, range(from, to));
        await client.query('COMMIT');
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: producers }, () => producer()));
}

/** Long enough for a connection opened in the background to finish (a connect here takes ~25 ms). */
const WARM_SETTLE_MS = 250;

/**
 * Before the clock, every system alike: one untimed transaction per producer (messages numbered
 * after the measured ones), then a pause for what it started in the background. A system's first
 * use of a connection (preparing its statements) and the connections it opens lazily (txoutbox's
 * NOTIFY connection, opened on the first after-commit wake-up: ~7 ms of Node CPU and ~17 ms of
 * backend CPU, a tenth of a 10,000-message W2 run) are set-up, not publishing, as the producers'
 * connections are (warm). Returns how many messages it published.
 */
async function warmPublishing(ctx: WorkloadContext, total: number, batch: number): Promise<number> {
  const count = ctx.sizes.producers * batch;
  await publishAll(ctx.instance, ctx.producers, total, total + count, batch, ctx.sizes.producers);
  await new Promise((resolve) => setTimeout(resolve, WARM_SETTLE_MS));
  return count;
}

/** W1 / W2: `total` messages, `batch` per transaction, `producers` concurrent producers, after warmPublishing. */
export async function publishWorkload(ctx: WorkloadContext, total: number, batch: number): Promise<Measured> {
  await warm(ctx.producers, ctx.sizes.producers);
  const warmed = await warmPublishing(ctx, total, batch);
  await ctx.meter.start();
  const started = performance.now();
  await publishAll(ctx.instance, ctx.producers, 0, total, batch, ctx.sizes.producers);
  const seconds = (performance.now() - started) / 1000;
  ctx.meter.markEnd();
  // The warm-up's messages are in the table too; `remaining` reports the measured ones.
  const remaining = (await ctx.instance.remaining()) - warmed;
  return {
    messages: total,
    seconds,
    remaining,
    losses: Math.max(0, total - remaining),
    duplicates: Math.max(0, remaining - total),
  };
}

/** Counts deliveries per sequence number; resolves when every message was seen once. */
class DeliveryLedger {
  readonly #counts: Uint16Array;
  #distinct = 0;
  #resolve: () => void = () => undefined;
  readonly done: Promise<void>;
  lastAt = 0;

  readonly total: number;

  constructor(total: number) {
    this.total = total;
    this.#counts = new Uint16Array(total);
    this.done = new Promise((resolve) => {
      this.#resolve = resolve;
      if (total === 0) resolve();
    });
  }

  seen(n: number): void {
    const before = this.#counts[n] ?? 0;
    this.#counts[n] = before + 1;
    if (before === 0) {
      this.#distinct += 1;
      if (this.#distinct === this.total) {
        this.lastAt = performance.now();
        this.#resolve();
      }
    }
  }

  get duplicates(): number {
    let sum = 0;
    for (const count of this.#counts) if (count > 1) sum += count - 1;
    return sum;
  }

  get losses(): number {
    return this.total - this.#distinct;
  }
}

/** How many times handlers ran in a drain: every message once, less the lost, plus the duplicates. W5 expects one span each. */
export function handlerRuns(run: Pick<Measured, 'messages' | 'losses' | 'duplicates'>): number {
  return run.messages - (run.losses ?? 0) + (run.duplicates ?? 0);
}

/** True when `promise` settled within `ms`. */
export function withTimeout(promise: Promise<void>, ms: number): Promise<boolean> {
  return beforeDeadline(
    promise.then(() => true),
    ms,
    () => false,
  );
}

/** Inserts the backlog a drain starts from (not measured), then lets the planner see it. */
export async function preload(ctx: WorkloadContext, total: number): Promise<void> {
  const client = await ctx.producers.connect();
  try {
    await client.query('BEGIN');
    for (let from = 0; from < total; from += 1000) {
      await ctx.instance.publishBatch(client, range(from, Math.min(total, from + 1000)));
    }
    await client.query('COMMIT');
    await client.query('ANALYZE');
  } finally {
    client.release();
  }
}

/** W3 / W5: drain a preloaded backlog of `total` rows with a no-op handler at `concurrency`. */
export async function drainWorkload(ctx: WorkloadContext, concurrency: number, total: number): Promise<Measured> {
  const ledger = new DeliveryLedger(total);
  const spansBefore = await ctx.instance.spansExported?.();
  await ctx.meter.start();
  const started = performance.now();
  const consumer = await ctx.instance.consume({
    concurrency,
    onMessage: (n) => {
      ledger.seen(n);
    },
  });
  const finished = await withTimeout(ledger.done, ctx.sizes.timeoutMs);
  const seconds = ((finished ? ledger.lastAt : performance.now()) - started) / 1000;
  ctx.meter.markEnd();
  await consumer.stop();
  const remaining = await ctx.instance.remaining();
  const spansAfter = await ctx.instance.spansExported?.();
  const spans = spansBefore === undefined || spansAfter === undefined ? undefined : spansAfter - spansBefore;
  // A tracing setup that drops spans (a full BatchSpanProcessor queue) would make W5 look cheaper
  // than it is: every handler run must have exported its span.
  // A sampler that drops every span must export none (and still propagate: tested, not benched).
  const runs = handlerRuns({ messages: total, losses: ledger.losses, duplicates: ledger.duplicates });
  const expected = runs * (ctx.instance.spansPerRun ?? 1);
  const notes = [
    ...(finished ? [] : [`timed out after ${ctx.sizes.timeoutMs} ms`]),
    ...(spans === undefined || spans === expected
      ? []
      : [`${spans} spans exported for ${runs} handler runs (expected ${expected})`]),
  ];
  return {
    messages: total,
    seconds,
    duplicates: ledger.duplicates,
    losses: ledger.losses,
    remaining,
    ...(spans === undefined ? {} : { spans, spansExpected: expected }),
    ...(notes.length === 0 ? {} : { note: notes.join('; ') }),
  };
}

function sleepUntil(at: number): Promise<void> {
  const ms = at - performance.now();
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * W4: idle consumers; one producer commits single-message transactions at a fixed rate. Latency
 * is from COMMIT returning to the producer until the handler starts, in the same process (one
 * clock). A handler can start before the producer's event loop has seen its COMMIT reply: those
 * count as 0 ms and are reported as `negative`.
 */
export async function wakeWorkload(ctx: WorkloadContext): Promise<Measured> {
  const total = ctx.sizes.wakeMessages;
  const committedAt = new Float64Array(total);
  const startedAt = new Float64Array(total);
  const ledger = new DeliveryLedger(total);
  const consumer = await ctx.instance.consume({
    concurrency: ctx.sizes.wakeConcurrency,
    onMessage: (n) => {
      if (startedAt[n] === 0) startedAt[n] = performance.now();
      ledger.seen(n);
    },
  });
  await warm(ctx.producers, 1);
  // Let every consumer reach its idle wait (first empty fetch, LISTEN established).
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await ctx.meter.start();
  const client = await ctx.producers.connect();
  const intervalMs = 1000 / ctx.sizes.wakeRatePerSecond;
  const started = performance.now();
  try {
    for (let n = 0; n < total; n += 1) {
      await sleepUntil(started + n * intervalMs);
      await client.query('BEGIN');
      await ctx.instance.publishOne(client, n);
      await client.query('COMMIT');
      committedAt[n] = performance.now();
    }
  } finally {
    client.release();
  }
  const finished = await withTimeout(ledger.done, ctx.sizes.timeoutMs);
  const seconds = (performance.now() - started) / 1000;
  ctx.meter.markEnd();
  await consumer.stop();
  const latencies: number[] = [];
  let negative = 0;
  for (let n = 0; n < total; n += 1) {
    const start = startedAt[n] ?? 0;
    if (start === 0) continue;
    const latency = start - (committedAt[n] ?? 0);
    if (latency < 0) negative += 1;
    latencies.push(Math.max(0, latency));
  }
  latencies.sort((a, b) => a - b);
  const round = (value: number): number => Number(value.toFixed(3));
  return {
    messages: total,
    seconds,
    duplicates: ledger.duplicates,
    losses: ledger.losses,
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p95: round(percentile(latencies, 95)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies[latencies.length - 1] ?? Number.NaN),
      negative,
    },
    ...(finished ? {} : { note: `timed out after ${ctx.sizes.timeoutMs} ms` }),
  };
}
