/**
 * Workload d: publish and drain together for a long time and watch what should stay flat. Producers
 * publish one message per transaction at a fixed rate (a schedule, not a loop as fast as it goes: a
 * producer that falls behind catches up), one subscription (c16, 100 per claim) handles them, and
 * every `sampleSeconds` a sample records the rates achieved in the window, the p99 from the
 * producer's COMMIT returning to the handler starting, the table's and each index's size, dead and
 * live tuples, autovacuum runs, and the claim statement's mean time in the window.
 *
 * `rate: 'max'` is the calibration: producers unpaced, the sustainable rate is the lower of the
 * publish and drain rates. `autovacuum: false` disables autovacuum on the table to show what happens
 * when vacuum falls behind.
 */
import pg from 'pg';

import type { Outbox } from '../../../src/index.js';
import { txoutbox } from '../library.js';
import type { BenchServer } from '../server.js';
import { percentile } from '../stats.js';
import { body, quietLogger } from '../systems/system.js';
import { withTimeout } from '../workloads.js';
import { round } from './drain.js';
import { DRAIN_CONCURRENCY, FETCH_BATCH_SIZE, SOAK_PRODUCERS } from './sizes.js';
import { CLAIM_PATTERNS, minus, OUTBOX, type StatementTotals, statementTotals, tableHealth } from './tables.js';

export interface SoakSample {
  /** Seconds since the producers started, at the end of the window. */
  readonly t: number;
  readonly publishedPerSec: number;
  readonly drainedPerSec: number;
  /** Published and not yet handled at the sample. */
  readonly backlog: number;
  readonly p99Ms: number;
  readonly tableBytes: number;
  readonly indexBytes: Readonly<Record<string, number>>;
  readonly deadTuples: number;
  readonly liveTuples: number;
  readonly autovacuums: number;
  readonly claimMeanMs: number;
}

export interface Slope {
  /** Least-squares change per minute, in the series' unit. */
  readonly perMinute: number;
  /** perMinute as a share of the series' mean, % per minute (0 when the mean is 0). */
  readonly percentPerMinute: number;
  readonly mean: number;
}

export interface SoakResult {
  readonly variant: 'calibrate' | 'soak' | 'autovacuum off';
  readonly targetRate: number | null;
  readonly seconds: number;
  readonly published: number;
  readonly handled: number;
  readonly publishedPerSec: number;
  readonly drainedPerSec: number;
  readonly p99Ms: number;
  readonly autovacuumSettings: string;
  readonly samples: readonly SoakSample[];
  /** Over every sample but the first (the table fills from empty during the first window). */
  readonly slopes: Readonly<Record<string, Slope>>;
  readonly note?: string;
}

export interface SoakSpec {
  readonly variant: SoakResult['variant'];
  readonly rate: number | 'max';
  readonly seconds: number;
  readonly sampleSeconds: number;
  readonly timeoutMs: number;
}

function sleepUntil(at: number): Promise<void> {
  const ms = at - performance.now();
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/** Least-squares slope of y over t (seconds), per minute. */
export function slope(points: readonly (readonly [number, number])[]): Slope {
  const n = points.length;
  const mean = n === 0 ? 0 : points.reduce((sum, [, y]) => sum + y, 0) / n;
  if (n < 2) return { perMinute: 0, percentPerMinute: 0, mean };
  const meanT = points.reduce((sum, [t]) => sum + t, 0) / n;
  let num = 0;
  let den = 0;
  for (const [t, y] of points) {
    num += (t - meanT) * (y - mean);
    den += (t - meanT) ** 2;
  }
  const perMinute = den === 0 ? 0 : (num / den) * 60;
  return {
    perMinute: round(perMinute, 3),
    percentPerMinute: mean === 0 ? 0 : round((perMinute / Math.abs(mean)) * 100, 2),
    mean: round(mean, 3),
  };
}

/** The series whose slope the report shows, from samples. */
export function soakSeries(samples: readonly SoakSample[]): Record<string, [number, number][]> {
  const series: Record<string, [number, number][]> = {
    'published/s': [],
    'drained/s': [],
    'p99 ms': [],
    'table bytes': [],
    'dead tuples': [],
    'dead/live': [],
    'claim mean ms': [],
  };
  const push = (name: string, t: number, y: number): void => {
    if (Number.isFinite(y)) (series[name] ??= []).push([t, y]);
  };
  for (const s of samples) {
    push('published/s', s.t, s.publishedPerSec);
    push('drained/s', s.t, s.drainedPerSec);
    push('p99 ms', s.t, s.p99Ms);
    push('table bytes', s.t, s.tableBytes);
    for (const [index, bytes] of Object.entries(s.indexBytes)) push(`${index} bytes`, s.t, bytes);
    push('dead tuples', s.t, s.deadTuples);
    push('dead/live', s.t, s.deadTuples / Math.max(1, s.liveTuples));
    push('claim mean ms', s.t, s.claimMeanMs);
  }
  return series;
}

export async function runSoak(server: BenchServer, database: string, spec: SoakSpec): Promise<SoakResult> {
  const url = await server.createDatabase(database);
  const outbox: Outbox = new txoutbox.Outbox({ connectionString: url, logger: quietLogger });
  const producers = new pg.Pool({ connectionString: url, max: SOAK_PRODUCERS });
  producers.on('error', () => undefined);
  const stats = new pg.Pool({ connectionString: url, max: 1 });
  stats.on('error', () => undefined);
  let sampler: NodeJS.Timeout | undefined;
  try {
    await outbox.migrate();
    await stats.query(outbox.autovacuumDdl());
    if (spec.variant === 'autovacuum off') await stats.query(`ALTER TABLE ${OUTBOX} SET (autovacuum_enabled = off)`);
    const { rows: relopts } = await stats.query<{ o: string[] | null }>(
      `SELECT reloptions AS o FROM pg_class WHERE oid = $1::regclass`,
      [OUTBOX],
    );
    // When each message's COMMIT returned, by body n (0: not yet seen by the producer).
    let committedAt = new Float64Array(1 << 16);
    let windowLatencies: number[] = [];
    const allLatencies: number[] = [];
    let published = 0;
    let handled = 0;
    outbox.subscribe(
      'soak',
      (message) => {
        const n = (message.body as { n: number }).n;
        // The handler can start before the producer's event loop sees its COMMIT reply: 0 ms.
        const at = committedAt[n] ?? 0;
        const latency = at === 0 ? 0 : Math.max(0, performance.now() - at);
        windowLatencies.push(latency);
        allLatencies.push(latency);
        handled += 1;
      },
      { name: 'soak', concurrency: DRAIN_CONCURRENCY, fetchBatchSize: FETCH_BATCH_SIZE },
    );
    outbox.start();
    const clients = await Promise.all(Array.from({ length: SOAK_PRODUCERS }, () => producers.connect()));
    for (const client of clients) client.release();

    const samples: SoakSample[] = [];
    const started = performance.now();
    const end = started + spec.seconds * 1000;
    let last = {
      at: started,
      published: 0,
      handled: 0,
      claim: await statementTotals(server.admin, database, CLAIM_PATTERNS.txoutbox),
    };
    let sampling = Promise.resolve();
    const sample = async (): Promise<void> => {
      const now = performance.now();
      const window = { published: published - last.published, handled: handled - last.handled };
      const latencies = windowLatencies.sort((a, b) => a - b);
      windowLatencies = [];
      const claim: StatementTotals = await statementTotals(server.admin, database, CLAIM_PATTERNS.txoutbox);
      const claimDelta = minus(claim, last.claim);
      const health = await tableHealth(stats, OUTBOX);
      const seconds = (now - last.at) / 1000;
      samples.push({
        t: round((now - started) / 1000, 1),
        publishedPerSec: round(window.published / seconds, 0),
        drainedPerSec: round(window.handled / seconds, 0),
        backlog: published - handled,
        p99Ms: round(latencies.length === 0 ? Number.NaN : percentile(latencies, 99), 2),
        tableBytes: health.tableBytes,
        indexBytes: health.indexBytes,
        deadTuples: health.deadTuples,
        liveTuples: health.liveTuples,
        autovacuums: health.autovacuums,
        claimMeanMs: round(claimDelta.calls === 0 ? Number.NaN : claimDelta.totalMs / claimDelta.calls, 3),
      });
      last = { at: now, published: published, handled, claim };
    };
    sampler = setInterval(() => {
      sampling = sampling.then(sample).catch((error: unknown) => {
        quietLogger.error({ err: String(error) }, 'soak sample failed');
      });
    }, spec.sampleSeconds * 1000);

    let next = 0;
    const intervalMs = spec.rate === 'max' ? 0 : 1000 / spec.rate;
    const producer = async (): Promise<void> => {
      const client = await producers.connect();
      try {
        while (performance.now() < end) {
          const n = next;
          next += 1;
          if (intervalMs > 0) {
            const due = started + n * intervalMs;
            if (due >= end) break;
            await sleepUntil(due);
          }
          await client.query('BEGIN');
          await outbox.publish(client, 'soak', body(n));
          await client.query('COMMIT');
          if (n >= committedAt.length) {
            const grown = new Float64Array(Math.max(n + 1, committedAt.length * 2));
            grown.set(committedAt);
            committedAt = grown;
          }
          committedAt[n] = performance.now();
          published += 1;
        }
      } finally {
        client.release();
      }
    };
    await Promise.all(Array.from({ length: SOAK_PRODUCERS }, () => producer()));
    const producedSeconds = (performance.now() - started) / 1000;
    const handledByEnd = handled;
    clearInterval(sampler);
    sampler = undefined;
    await sampling;
    // The tail: everything published must be handled (nothing lost), but the rates are the window's.
    const drained = withTimeout(
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (handled >= published) {
            clearInterval(check);
            resolve();
          }
        }, 50);
      }),
      spec.timeoutMs,
    );
    const complete = await drained;
    await outbox.stop();
    const publishedPerSec = published / producedSeconds;
    const drainedPerSec = handledByEnd / producedSeconds;
    const series = soakSeries(samples.slice(1));
    const slopes = Object.fromEntries(Object.entries(series).map(([name, points]) => [name, slope(points)]));
    allLatencies.sort((a, b) => a - b);
    return {
      variant: spec.variant,
      targetRate: spec.rate === 'max' ? null : round(spec.rate, 0),
      seconds: round(producedSeconds, 1),
      published,
      handled,
      publishedPerSec: round(publishedPerSec, 0),
      drainedPerSec: round(drainedPerSec, 0),
      p99Ms: round(percentile(allLatencies, 99), 2),
      autovacuumSettings: (relopts[0]?.o ?? []).join(', '),
      samples,
      slopes,
      ...(complete
        ? {}
        : { note: `${published - handled} of ${published} published messages not handled after ${spec.timeoutMs} ms` }),
    };
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    await outbox.stop().catch(() => undefined);
    await producers.end().catch(() => undefined);
    await stats.end().catch(() => undefined);
    await server.dropDatabase(database).catch(() => undefined);
  }
}
