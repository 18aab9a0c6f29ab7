import { Counter, Gauge } from 'prom-client';

import { errorMessage, InvalidOptionError } from '../errors.js';
import type { Outbox } from '../outbox.js';
import { BROKER } from './labels.js';
import { type AnyRegistry, type PrometheusBaseOptions, resolveBaseOptions } from './options.js';
import { QueueStateLeader } from './queue-state-leader.js';
import { QueueStateReader, type QueueStateSnapshot } from './queue-state-reader.js';

export interface QueueStateCollectorOptions extends PrometheusBaseOptions {
  /** How long one database read serves scrapes. Concurrent scrapes always share one query. @default 1000 (the minimum) */
  readonly cacheMs?: number;
  /**
   * Counts stop at this many rows per queue and state; above it the value is the planner's
   * estimate and `<prefix>_queue_messages_estimated` is 1. @default 10000
   */
  readonly exactCountLimit?: number;
  /**
   * The most queues reported (label cardinality and the counting cost are linear in it). Above it
   * the paused queues are kept first, then the most active: the oldest ready row first, then
   * queues with any rows. @default 500
   */
  readonly maxQueues?: number;
  /**
   * How long a drained queue keeps reporting 0 before its series go (0: at the next read). The
   * queues the Outbox subscribes to are never forgotten (empty, they rank last within maxQueues).
   * @default 600000 (10 minutes)
   */
  readonly forgetEmptyAfterMs?: number;
  /** Server-side limit of each scrape-time statement (statement_timeout). @default 5000 */
  readonly statementTimeoutMs?: number;
  /**
   * Read only while this process holds the table's queue-state lock (a session advisory lock on a
   * connection of its own, one more connection): of N processes scraped for the same outbox, one
   * reads and exports the queue state, the others export `<prefix>_queue_state_leader` 0 and no
   * queue-state series. Needs a session connection: behind a transaction pooler every process
   * reads (detected, logged). architecture/metrics.md, "One reader per cluster". @default false
   */
  readonly leaderElection?: boolean;
  /** With leaderElection: how often a standby tries the lock and the leader checks its session. @default 5000 */
  readonly leaderCheckIntervalMs?: number;
}

/** What queueStateCollector returns. */
export interface QueueStateCollector {
  /** The series' names, in registration order. */
  readonly metricNames: readonly string[];
  /**
   * Stops reporting this Outbox (its series disappear; the metrics go when no collector is left).
   * Idempotent: a second call, or close() after it, changes nothing, whatever registered since.
   */
  remove(): void;
  /** remove(), and with leaderElection closes the lock's session (releasing the lock) within about 1 s. Idempotent too. */
  close(): Promise<void>;
}

const KNOWN = [
  'registry',
  'prefix',
  'appName',
  'cacheMs',
  'exactCountLimit',
  'maxQueues',
  'forgetEmptyAfterMs',
  'statementTimeoutMs',
  'leaderElection',
  'leaderCheckIntervalMs',
];
export const MIN_CACHE_MS = 1000;

interface Source {
  readonly appName: string;
  /** Whether the Outbox has a DLQ table. */
  readonly dlq: boolean;
  /** With leaderElection: whether this process reads (after the first try of the lock). */
  readonly leader: QueueStateLeader | undefined;
  /** The cached snapshot (never rejects); undefined on a standby, which exports no queue state. */
  read(): Promise<QueueStateSnapshot | undefined>;
}

interface Family {
  readonly metrics: readonly (Gauge | Counter)[];
  readonly sources: Set<Source>;
  readonly errors: Counter;
}

/** The families created per registry and prefix: two Outboxes (two appNames) share one set. */
const families = new WeakMap<AnyRegistry, Map<string, Family>>();

function integer(raw: Record<string, unknown>, option: string, fallback: number, min: number, max: number): number {
  const value = raw[option] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError({
      option,
      value,
      expected: `an integer from ${min} to ${max}`,
      ...(option === 'cacheMs'
        ? { fix: 'Scrapes closer together than 1 s share one read; a shorter cache only adds database load.' }
        : {}),
    });
  }
  return value;
}

/**
 * Queue state read from the database at scrape time, per queue: ready, scheduled (due later) and
 * leased depth, the age of the oldest ready row, DLQ depth. Cost is bounded on any table size —
 * see queue-state-sql.ts and architecture/metrics.md for the query plan and the measured latency.
 *
 * A failed read never fails the scrape: this Outbox's depth series are left out, its
 * `<prefix>_queue_state_up` is 0, `<prefix>_queue_state_errors_total` counts the failure and the
 * Outbox's logger gets a warning (once per outage, not once per scrape).
 */
export function queueStateCollector(outbox: Outbox, options: QueueStateCollectorOptions): QueueStateCollector {
  const { raw, base } = resolveBaseOptions(options, 'queueStateCollector', KNOWN);
  if (typeof (outbox as Partial<Outbox> | null)?.internals !== 'object') {
    throw new InvalidOptionError({ option: 'outbox', value: typeof outbox, expected: 'an Outbox (new Outbox({ … }))' });
  }
  const reader = new QueueStateReader(() => outbox.internals, {
    cacheMs: integer(raw, 'cacheMs', MIN_CACHE_MS, MIN_CACHE_MS, 3_600_000),
    exactCountLimit: integer(raw, 'exactCountLimit', 10_000, 1, 10_000_000),
    maxQueues: integer(raw, 'maxQueues', 500, 1, 100_000),
    // Long enough for a dashboard to show the drain to 0 and an alert's `for:` to resolve on it.
    forgetEmptyAfterMs: integer(raw, 'forgetEmptyAfterMs', 600_000, 0, 7 * 86_400_000),
    statementTimeoutMs: integer(raw, 'statementTimeoutMs', 5_000, 1, 600_000),
  });
  const leaderElection = raw.leaderElection ?? false;
  if (typeof leaderElection !== 'boolean') {
    throw new InvalidOptionError({ option: 'leaderElection', value: leaderElection, expected: 'true or false' });
  }
  const leaderCheckIntervalMs = integer(raw, 'leaderCheckIntervalMs', 5_000, 100, 600_000);
  const { registry, prefix, appName } = base;
  const family = obtainFamily(registry, prefix);
  if ([...family.sources].some((s) => s.appName === appName)) {
    throw new InvalidOptionError({
      option: 'appName',
      value: appName,
      expected: `an app_name no other queueStateCollector of this registry and prefix uses`,
      fix: 'Give each Outbox sharing a registry its own appName.',
    });
  }
  const logger = outbox.internals.logger;
  const leader = leaderElection
    ? new QueueStateLeader({
        clientConfig: outbox.internals.sessionClientConfig,
        table: outbox.internals.names.outbox,
        checkIntervalMs: leaderCheckIntervalMs,
        logger,
        ownerStopped: () => outbox.internals.stopped,
      })
    : undefined;
  const labels = { app_name: appName, broker: BROKER };
  /** Failed reads already counted: one failure is cached and read by every metric of a scrape. */
  const counted = new WeakSet<QueueStateSnapshot>();
  let down = false;
  const source: Source = {
    appName,
    dlq: outbox.internals.names.dlq !== undefined,
    leader,
    async read() {
      if (leader !== undefined) {
        await leader.settled();
        if (!leader.leading) return undefined;
      }
      const snapshot = await reader.read();
      if (!snapshot.ok && !counted.has(snapshot)) {
        counted.add(snapshot);
        family.errors.inc(labels);
      }
      // Logged once per outage: a scrape every 15 s of a database that is down is not news each time.
      if (!snapshot.ok && !down) {
        down = true;
        logger.warn(
          { err: errorMessage(snapshot.error), table: outbox.table },
          'queue-state metrics: the database read failed; depth series are left out until it succeeds',
        );
      } else if (snapshot.ok && down) {
        down = false;
        logger.info({ table: outbox.table }, 'queue-state metrics: the database read succeeds again');
      }
      return snapshot;
    },
  };
  family.errors.inc(labels, 0);
  family.sources.add(source);
  leader?.start();
  let removed = false;
  const remove = (): void => {
    // Idempotent: once this family is emptied, a later collector may register a new family under
    // the same names, and a second remove() (or close() after remove()) must not take it away.
    if (removed) return;
    removed = true;
    family.sources.delete(source);
    family.errors.remove(labels);
    if (family.sources.size === 0) removeFamily(registry, prefix, family);
  };
  return {
    metricNames: family.metrics.map((m) => (m as unknown as { name: string }).name),
    remove() {
      remove();
      void leader?.stop();
    },
    async close() {
      remove();
      await leader?.stop();
    },
  };
}

/** The snapshots of the sources that read (a standby of leaderElection is left out: it exports no queue state). */
async function readAll(family: Family): Promise<{ source: Source; snapshot: QueueStateSnapshot }[]> {
  const read = await Promise.all([...family.sources].map(async (source) => ({ source, snapshot: await source.read() })));
  return read.flatMap(({ source, snapshot }) => (snapshot === undefined ? [] : [{ source, snapshot }]));
}

/**
 * Unregisters the metrics of `family` that are still its own. After registry.clear() a new family
 * of the same names may be registered (obtainFamily) while the old one still has a collector:
 * removing by name alone would take the new family's metrics when that collector leaves.
 */
function removeFamily(registry: AnyRegistry, prefix: string, family: Family): void {
  for (const metric of family.metrics) {
    const name = (metric as unknown as { name: string }).name;
    if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name);
  }
  const byPrefix = families.get(registry);
  if (byPrefix?.get(prefix) === family) byPrefix.delete(prefix);
}

function obtainFamily(registry: AnyRegistry, prefix: string): Family {
  let byPrefix = families.get(registry);
  if (byPrefix === undefined) {
    byPrefix = new Map();
    families.set(registry, byPrefix);
  }
  const existing = byPrefix.get(prefix);
  // After registry.clear() the family is created anew.
  const first = existing?.metrics[0] as unknown as { name: string } | undefined;
  if (existing !== undefined && first !== undefined && registry.getSingleMetric(first.name) === existing.metrics[0]) {
    return existing;
  }
  const family = createFamily(registry, prefix);
  byPrefix.set(prefix, family);
  return family;
}

const QUEUE = ['app_name', 'broker', 'queue'];
const SOURCE = ['app_name', 'broker'];

function createFamily(registry: AnyRegistry, p: string): Family {
  const sources = new Set<Source>();
  const registered: string[] = [];
  const metrics: (Gauge | Counter)[] = [];

  /** A gauge refilled from the snapshots at every collection (reset first: no stale queue). */
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    aggregator: 'max' | 'min',
    fill: (set: (labels: Record<string, string>, value: number) => void, source: Source, snapshot: QueueStateSnapshot) => void,
  ): void => {
    const metric: Gauge = new Gauge({
      name: `${p}_${name}`,
      help,
      labelNames,
      registers: [],
      // A child process per consumer may each run a collector of the same database: the runner's
      // merged registry must not add their readings up.
      aggregator,
      async collect() {
        const results = await readAll(family);
        metric.reset();
        for (const { source, snapshot } of results)
          fill(
            (labels, value) => {
              metric.set(labels, value);
            },
            source,
            snapshot,
          );
      },
    });
    add(metric);
  };

  const add = (metric: Gauge | Counter): void => {
    const name = (metric as unknown as { name: string }).name;
    try {
      registry.registerMetric(metric);
    } catch (error) {
      for (const done of registered) registry.removeSingleMetric(done);
      throw new InvalidOptionError({
        option: 'prefix',
        value: name,
        expected: 'a prefix whose metric names are free in this registry (the name shown is taken)',
        fix: 'Use another prefix or another registry.',
        cause: error,
      });
    }
    registered.push(name);
    metrics.push(metric);
  };

  const ids = (source: Source) => ({ app_name: source.appName, broker: BROKER });
  gauge(
    'queue_messages',
    'Outbox rows per queue by state: ready (due, not leased), scheduled (due later), leased (a handler holds it)',
    [...QUEUE, 'state'],
    'max',
    (set, source, snapshot) => {
      if (!snapshot.ok) return;
      for (const q of snapshot.queues) {
        for (const state of ['ready', 'scheduled', 'leased'] as const) set({ ...ids(source), queue: q.queue, state }, q[state]);
      }
    },
  );
  gauge(
    'queue_oldest_ready_age_seconds',
    'Seconds since the oldest ready row of the queue became due (0 when none is ready): consumer lag',
    QUEUE,
    'max',
    (set, source, snapshot) => {
      if (!snapshot.ok) return;
      for (const q of snapshot.queues) set({ ...ids(source), queue: q.queue }, q.oldestReadyAgeSeconds);
    },
  );
  gauge('queue_dlq_messages', 'Rows in the dead-letter table per queue', QUEUE, 'max', (set, source, snapshot) => {
    if (!snapshot.ok || !source.dlq) return;
    for (const q of snapshot.queues) set({ ...ids(source), queue: q.queue }, q.dlq ?? 0);
  });
  gauge(
    'queue_paused',
    '1 while the queue is paused (outbox.pause(), txoutbox queue pause): no subscriber claims its rows',
    QUEUE,
    'max',
    (set, source, snapshot) => {
      if (!snapshot.ok) return;
      for (const q of snapshot.queues) set({ ...ids(source), queue: q.queue }, q.pausedAt === null ? 0 : 1);
    },
  );
  gauge(
    'queue_messages_estimated',
    '1 when the count of this queue and state passed exactCountLimit and is the planner estimate, 0 when exact',
    [...QUEUE, 'state'],
    'max',
    (set, source, snapshot) => {
      if (!snapshot.ok) return;
      for (const q of snapshot.queues) {
        for (const state of ['ready', 'scheduled', 'leased', 'dlq'] as const) {
          if (state === 'dlq' && !source.dlq) continue;
          set({ ...ids(source), queue: q.queue, state }, q.estimated[state] ? 1 : 0);
        }
      }
    },
  );
  gauge(
    'queue_state_up',
    '1 when the last queue-state read succeeded, 0 when it failed',
    SOURCE,
    'min',
    (set, source, snapshot) => {
      set(ids(source), snapshot.ok ? 1 : 0);
    },
  );
  gauge(
    'queue_state_read_duration_seconds',
    'How long the last queue-state database read took',
    SOURCE,
    'max',
    (set, source, snapshot) => {
      set(ids(source), snapshot.durationSeconds);
    },
  );
  const leaderGauge: Gauge = new Gauge({
    name: `${p}_queue_state_leader`,
    help: 'With leaderElection: 1 while this process is the one that reads the queue state (it holds the lock), 0 on a standby',
    labelNames: SOURCE,
    registers: [],
    aggregator: 'max',
    async collect() {
      const electing = [...family.sources].flatMap((s) => (s.leader === undefined ? [] : [{ source: s, leader: s.leader }]));
      await Promise.all(electing.map(({ leader }) => leader.settled()));
      leaderGauge.reset();
      for (const { source, leader } of electing) leaderGauge.set(ids(source), leader.leading ? 1 : 0);
    },
  });
  add(leaderGauge);
  const errors = new Counter({
    name: `${p}_queue_state_errors_total`,
    help: 'Queue-state database reads that failed (the scrape itself still succeeds)',
    labelNames: SOURCE,
    registers: [],
    aggregator: 'sum',
    async collect() {
      // Waits for the read in progress, so a failure of this scrape's read is counted in it.
      await readAll(family);
    },
  });
  add(errors);
  const family: Family = { metrics, sources, errors };
  return family;
}
