/**
 * The relay measurement every broker probe shares (bench/src/probes/relay-<broker>.ts; issue 16,
 * BENCHMARKS.md "Relay"): against one real broker server and one embedded PostgreSQL,
 *
 *   (a) the limit: the broker's own publish rate with confirms, its client alone, `concurrency` in
 *       flight, messages shaped like the relay's (same payload size, same headers);
 *   (b) the relay: `rows` pre-inserted rows drained through outbox.relay() with RELAY_DEFAULTS
 *       (64 in flight), timed from start() to the last confirm; target ≥ 0.8 × (a);
 *   (c) commit-to-broker latency at `ratePerSecond` (one row per transaction, paced), measured from
 *       the publisher's COMMIT returning to a consumer on the broker receiving it.
 *
 * (a′) is the sink alone (no PostgreSQL) and (b₀) the relay with a sink that confirms at once (no
 * broker): between them they say where a gap between (a) and (b) comes from.
 *
 * Rounds interleave (a) and (b) so a noisy neighbour hits both; the table reports medians.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../src/embedded/index.js';
import { Outbox } from '../../src/index.js';
import type { RelayMessage, RelaySink } from '../../src/relay/index.js';
import { percentile } from './stats.js';

export interface RelayProbeBroker {
  /** Names the broker in the table (`NATS JetStream 2.9.10`). */
  readonly name: string;
  /** A fresh sink for queue `queue` (a round of its own: its own subject / stream). */
  sink(queue: string): RelaySink;
  /** Publishes every message with the broker's client alone, `concurrency` in flight, each confirmed. */
  publishDirect(queue: string, messages: readonly RelayMessage[], concurrency: number): Promise<void>;
  /** Starts a consumer of what the relay sends for `queue`; `onMessage` gets each message's correlation id. */
  consume(queue: string, onMessage: (correlationId: string) => void): Promise<{ stop(): Promise<void> }>;
  close(): Promise<void>;
}

export interface RelayProbeOptions {
  readonly rows: number;
  readonly rounds: number;
  readonly payloadBytes: number;
  readonly concurrency: number;
  readonly ratePerSecond: number;
  readonly latencySeconds: number;
}

const TABLE = 'relay_probe.outbox';

/** The headers a traced publish stores: what both (a) and (b) send. */
function headersFor(n: number): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'correlation-id': `c-${n}`,
    traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    tracestate: 'txoutbox=probe',
  };
}

function directMessages(queue: string, count: number, payloadBytes: number): RelayMessage[] {
  return Array.from({ length: count }, (_, i) => ({
    messageId: `direct:${queue}:${i}`,
    id: String(i),
    queue,
    orderingKey: null,
    payload: randomBytes(payloadBytes),
    headers: headersFor(i),
    correlationId: `c-${i}`,
    createdAt: new Date(),
    deliveriesCount: 1,
  }));
}

const median = (values: readonly number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

export async function runRelayProbe(broker: RelayProbeBroker, options: RelayProbeOptions): Promise<string> {
  const postgres = await startEmbeddedPostgres({
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  });
  const pool = new pg.Pool({ connectionString: postgres.connectionString, max: 4 });
  try {
    const migrator = new Outbox({ connectionString: postgres.connectionString, table: TABLE });
    await migrator.migrate();
    await migrator.stop();

    const direct: number[] = [];
    const sinkAlone: number[] = [];
    const relayed: number[] = [];
    const core: number[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      const queue = `direct${round}`;
      const messages = directMessages(queue, options.rows, options.payloadBytes);
      const started = performance.now();
      await broker.publishDirect(queue, messages, options.concurrency);
      direct.push(options.rows / ((performance.now() - started) / 1000));

      sinkAlone.push(await sendAlone(broker, `sink${round}`, options));

      core.push(await drain(pool, postgres.connectionString, broker, `core${round}`, options, false));
      relayed.push(await drain(pool, postgres.connectionString, broker, `relay${round}`, options, true));
      console.error(
        `round ${round}: direct ${Math.round(direct.at(-1) ?? 0)} msg/s, sink alone ${Math.round(sinkAlone.at(-1) ?? 0)} msg/s, relay core ${Math.round(core.at(-1) ?? 0)} msg/s, relay ${Math.round(relayed.at(-1) ?? 0)} msg/s`,
      );
    }
    const latency = await commitToBroker(pool, postgres.connectionString, broker, options);

    const limit = median(direct);
    const relay = median(relayed);
    const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
    return [
      `### Relay: ${broker.name}`,
      '',
      `${options.rows.toLocaleString('en-US')} messages of ${options.payloadBytes} B with 4 headers, ${options.concurrency} in flight, median of ${options.rounds} interleaved rounds.`,
      '',
      '| measure | result |',
      '| --- | --- |',
      `| (a) broker's own publish rate with confirms (its client alone) | ${fmt(limit)} msg/s (rounds: ${direct.map(fmt).join(', ')}) |`,
      `| (a′) the sink alone: sink.send() of the same messages, same concurrency, no PostgreSQL | ${fmt(median(sinkAlone))} msg/s (rounds: ${sinkAlone.map(fmt).join(', ')}) |`,
      `| (b₀) outbox.relay() drain with a sink that confirms at once (the relay's own ceiling on this machine) | ${fmt(median(core))} msg/s (rounds: ${core.map(fmt).join(', ')}) |`,
      `| (b) outbox.relay() drain of pre-inserted rows | ${fmt(relay)} msg/s (rounds: ${relayed.map(fmt).join(', ')}) |`,
      `| (b) / (a) | ${(relay / limit).toFixed(2)} (target ≥ 0.8) |`,
      `| (c) commit-to-broker at ${options.ratePerSecond} msg/s, ${latency.count} messages | p50 ${latency.p50.toFixed(1)} ms, p99 ${latency.p99.toFixed(1)} ms, max ${latency.max.toFixed(1)} ms |`,
      '',
    ].join('\n');
  } finally {
    await pool.end();
    await postgres.stop();
    await broker.close();
  }
}

/** (a′): the sink's own cost: the same messages through sink.send(), `concurrency` in flight, no relay around it. */
async function sendAlone(broker: RelayProbeBroker, queue: string, options: RelayProbeOptions): Promise<number> {
  const messages = directMessages(queue, options.rows, options.payloadBytes).map((m) => ({
    ...m,
    messageId: `sink:${m.messageId}`,
  }));
  const sink = broker.sink(queue);
  const signal = new AbortController().signal;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      for (let m = messages[next++]; m !== undefined; m = messages[next++]) await sink.send(m, { signal });
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await sink.close();
  return options.rows / seconds;
}

/**
 * (b): inserts `rows` rows in one statement, then times one relay draining them to the last confirm.
 * With `toBroker` false, (b₀): the same relay whose sink confirms at once, what PostgreSQL and the
 * relay cost per row on this machine without a broker.
 */
async function drain(
  pool: pg.Pool,
  connectionString: string,
  broker: RelayProbeBroker,
  queue: string,
  options: RelayProbeOptions,
  toBroker: boolean,
): Promise<number> {
  await pool.query(
    `INSERT INTO ${TABLE} (queue, payload, headers)
     SELECT $1, substring(decode(repeat(md5(n::text), ($3::int + 15) / 16), 'hex') from 1 for $3::int),
            jsonb_build_object('content-type', 'application/octet-stream', 'correlation-id', 'c-' || n,
              'traceparent', '00-' || md5(n::text) || '-' || left(md5('s' || n), 16) || '-01', 'tracestate', 'txoutbox=probe')
     FROM generate_series(1, $2::int) AS n`,
    [queue, options.rows, options.payloadBytes],
  );
  await pool.query(`ANALYZE ${TABLE}`);
  const sink = broker.sink(queue);
  let confirmed = 0;
  let finished: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const counting: RelaySink = {
    name: sink.name,
    send: async (message, context) => {
      if (toBroker) await sink.send(message, context);
      if (++confirmed === options.rows) finished();
    },
    close: () => sink.close(),
    ...(sink.check === undefined ? {} : { check: () => (sink.check as () => Promise<boolean>)() }),
  };
  const outbox = new Outbox({ connectionString, table: TABLE });
  outbox.relay(queue, counting);
  const started = performance.now();
  outbox.start();
  await done;
  const seconds = (performance.now() - started) / 1000;
  await outbox.stop();
  return options.rows / seconds;
}

/** (c): one row per transaction at ratePerSecond; latency from COMMIT returning to the broker's consumer receiving it. */
async function commitToBroker(
  pool: pg.Pool,
  connectionString: string,
  broker: RelayProbeBroker,
  options: RelayProbeOptions,
): Promise<{ count: number; p50: number; p99: number; max: number }> {
  const queue = 'latency';
  const committedAt = new Map<string, number>();
  const latencies: number[] = [];
  const consumer = await broker.consume(queue, (correlationId) => {
    const at = committedAt.get(correlationId);
    if (at !== undefined) latencies.push(performance.now() - at);
  });
  const outbox = new Outbox({ connectionString, table: TABLE });
  outbox.relay(queue, broker.sink(queue));
  outbox.start();
  const total = options.ratePerSecond * options.latencySeconds;
  const intervalMs = 1000 / options.ratePerSecond;
  const payload = randomBytes(options.payloadBytes);
  const started = performance.now();
  for (let n = 0; n < total; n++) {
    // Paced against the schedule, not the previous send: a slow commit does not lower the rate.
    const due = started + n * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, queue, payload, { correlationId: `lat-${n}` });
      await client.query('COMMIT');
      committedAt.set(`lat-${n}`, performance.now());
    } finally {
      client.release();
    }
  }
  const deadline = performance.now() + 30_000;
  while (latencies.length < total && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  await outbox.stop();
  await consumer.stop();
  const sorted = [...latencies].sort((a, b) => a - b);
  return { count: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN };
}
