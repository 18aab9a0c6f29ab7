/**
 * Workloads a (drain rate as the backlog grows) and b (claim cost as the queue count grows): W3 c16
 * (no-op handler, 100 rows per claim) over a backlog loaded in one statement, measured over the
 * first `measured` messages handled, each run in a fresh database. Besides the rate: the claim
 * statement's pg_stat_statements time (mean per call, and per claimed row) and statements per
 * message, which say where a slower drain spends its time.
 */
import type { Outbox } from '../../../src/index.js';
import { txoutbox } from '../library.js';
import { PhaseMeter, waitForQuiet } from '../measure.js';
import type { BenchServer } from '../server.js';
import { rawSystem } from '../systems/raw.js';
import { body, type Consumer, quietLogger } from '../systems/system.js';
import { withTimeout } from '../workloads.js';
import { DRAIN_CONCURRENCY, FETCH_BATCH_SIZE } from './sizes.js';
import {
  type Backlog,
  CLAIM_PATTERNS,
  CLAIM_PRELUDE_PATTERN,
  loadOutboxBacklog,
  loadRawBacklog,
  minus,
  OUTBOX,
  statementTotals,
  tableHealth,
  withClient,
} from './tables.js';

export interface DrainRun {
  readonly workload: 'a' | 'b';
  readonly label: string;
  readonly system: 'txoutbox' | 'raw';
  readonly rep: number;
  readonly queues: number;
  /** Rows in the outbox (or raw_q) and its DLQ when the drain starts. */
  readonly backlogRows: number;
  readonly loadSeconds: number;
  readonly messages: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly claimCalls: number;
  readonly claimRows: number;
  readonly claimMeanMs: number;
  /** Claim statement execution time per handled message, µs (see runDrain): planning not included (claimPlanUsPerMessage). */
  readonly claimUsPerMessage: number;
  /** The claim statements' planning per handled message, µs: 0 unless pg_stat_statements.track_planning is on. */
  readonly claimPlanUsPerMessage: number;
  /** The generic-plan prelude sent before a claim (CLAIM_PRELUDE_PATTERN), execution and planning, per handled message, µs. */
  readonly claimPreludeUsPerMessage: number;
  readonly statementsPerMsg: number | null;
  /** This Node process's CPU per handled message, µs. */
  readonly nodeCpuUsPerMsg: number;
  /** PostgreSQL's CPU per handled message, µs (its backends alive at both ends of the window). */
  readonly postgresCpuUsPerMsg: number | null;
  /** CPU of neither (other tenants of the machine, the kernel), in cores: a noisy window shows here. */
  readonly otherCpu: number | null;
  /** Autovacuum runs on the table that completed during the window, and the dead tuples at its end. */
  readonly autovacuums: number;
  readonly deadTuplesAtEnd: number;
  readonly duplicates: number;
  readonly note?: string;
}

/** Counts first deliveries of body n; resolves once `target` distinct messages were handled. */
export class HandledCounter {
  readonly #seen: Uint8Array;
  readonly #target: number;
  #distinct = 0;
  duplicates = 0;
  lastAt = 0;
  #resolve: () => void = () => undefined;
  readonly done: Promise<void>;

  constructor(size: number, target: number) {
    this.#seen = new Uint8Array(size);
    this.#target = target;
    this.done = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  seen(n: number): void {
    if (this.#seen[n] === 1) {
      this.duplicates += 1;
      return;
    }
    this.#seen[n] = 1;
    this.#distinct += 1;
    if (this.#distinct === this.#target) {
      this.lastAt = performance.now();
      this.#resolve();
    }
  }

  get distinct(): number {
    return this.#distinct;
  }
}

/** The headers `publish` writes, from one message published (and removed) through the library. */
async function sampleHeaders(outbox: Outbox, url: string): Promise<unknown> {
  return withClient(url, async (client) => {
    await client.query('BEGIN');
    await outbox.publish(client, 'sample', body(0));
    await client.query('COMMIT');
    const { rows } = await client.query<{ headers: unknown }>(`DELETE FROM ${OUTBOX} WHERE queue = 'sample' RETURNING headers`);
    return rows[0]?.headers ?? {};
  });
}

export interface DrainSpec {
  readonly workload: 'a' | 'b';
  readonly label: string;
  readonly system: 'txoutbox' | 'raw';
  readonly rep: number;
  readonly backlog: Backlog;
  readonly measured: number;
  readonly timeoutMs: number;
  readonly quietMs: number;
  /** The txoutbox module to drain with (default: this checkout's dist/); an A/B probe passes another build. */
  readonly library?: typeof txoutbox;
  /** subscribe()'s lease mode (default: 'token'); 'row-lock' claims in a transaction per batch. */
  readonly lease?: 'token' | 'row-lock';
}

export async function runDrain(server: BenchServer, database: string, spec: DrainSpec): Promise<DrainRun> {
  const url = await server.createDatabase(database);
  let outbox: Outbox | undefined;
  let consumer: Consumer | undefined;
  try {
    const { backlog } = spec;
    const total = backlog.ready + (backlog.scheduled ?? 0);
    const counter = new HandledCounter(total, spec.measured);
    let loadSeconds: number;
    let consume: () => Promise<Consumer>;
    if (spec.system === 'txoutbox') {
      const o = new (spec.library ?? txoutbox).Outbox({ connectionString: url, logger: quietLogger });
      outbox = o;
      await o.migrate();
      // The table as the library tells users to set it up (autovacuum tuned for queue churn).
      await withClient(url, (client) => client.query(o.autovacuumDdl()));
      loadSeconds = await loadOutboxBacklog(url, backlog, await sampleHeaders(o, url));
      consume = () => {
        o.subscribe(
          backlog.queues,
          (message) => {
            counter.seen((message.body as { n: number }).n);
          },
          { name: 'scale', concurrency: DRAIN_CONCURRENCY, fetchBatchSize: FETCH_BATCH_SIZE, lease: spec.lease ?? 'token' },
        );
        o.start();
        return Promise.resolve({ stop: () => o.stop() });
      };
    } else {
      const raw = rawSystem(false).create(url, {});
      await raw.setup();
      loadSeconds = await loadRawBacklog(url, backlog.ready);
      consume = () =>
        raw.consume({
          concurrency: DRAIN_CONCURRENCY,
          onMessage: (n) => {
            counter.seen(n);
          },
        });
    }
    if (spec.quietMs > 0) await waitForQuiet(spec.quietMs);
    const pattern = CLAIM_PATTERNS[spec.system];
    const table = spec.system === 'txoutbox' ? OUTBOX : 'public.raw_q';
    const healthBefore = await withClient(url, (client) => tableHealth(client, table));
    const meter = new PhaseMeter(server.admin, database, server.statStatements);
    const claimBefore = await statementTotals(server.admin, database, pattern);
    const preludeBefore = await statementTotals(server.admin, database, CLAIM_PRELUDE_PATTERN);
    await meter.start();
    const started = performance.now();
    consumer = await consume();
    const finished = await withTimeout(counter.done, spec.timeoutMs);
    const seconds = ((finished ? counter.lastAt : performance.now()) - started) / 1000;
    meter.markEnd();
    // The handlers still running (up to a claim's worth) finish after the clock stopped: not counted.
    const messages = finished ? spec.measured : counter.distinct;
    const claim = minus(await statementTotals(server.admin, database, pattern), claimBefore);
    const prelude = minus(await statementTotals(server.admin, database, CLAIM_PRELUDE_PATTERN), preludeBefore);
    await consumer.stop();
    consumer = undefined;
    const cost = await meter.stop();
    const healthAfter = await withClient(url, (client) => tableHealth(client, table));
    return {
      workload: spec.workload,
      label: spec.label,
      system: spec.system,
      rep: spec.rep,
      queues: backlog.queues.length,
      backlogRows: total + (backlog.dlq ?? 0),
      loadSeconds: round(loadSeconds, 1),
      messages,
      seconds: round(seconds, 3),
      msgsPerSec: round(messages / seconds, 0),
      claimCalls: claim.calls,
      claimRows: claim.rows,
      claimMeanMs: round(claim.calls === 0 ? Number.NaN : claim.totalMs / claim.calls, 3),
      // Per handled message, not per row the statement returned: a claim over several queues also
      // returns one report row per listed queue (queue-schedule.ts). The two differ by the rows
      // still buffered when the clock stopped (at most two claims' worth of 20,000).
      claimUsPerMessage: round(messages === 0 ? Number.NaN : (claim.totalMs * 1000) / messages, 2),
      claimPlanUsPerMessage: round(messages === 0 ? Number.NaN : (claim.planMs * 1000) / messages, 2),
      claimPreludeUsPerMessage: round(messages === 0 ? Number.NaN : ((prelude.totalMs + prelude.planMs) * 1000) / messages, 2),
      statementsPerMsg: cost.statements === null ? null : round(cost.statements / messages, 4),
      nodeCpuUsPerMsg: round((cost.nodeCpu * seconds * 1e6) / messages, 1),
      postgresCpuUsPerMsg: cost.postgresCpu === null ? null : round((cost.postgresCpu * seconds * 1e6) / messages, 1),
      otherCpu: cost.otherCpu,
      autovacuums: healthAfter.autovacuums - healthBefore.autovacuums,
      deadTuplesAtEnd: healthAfter.deadTuples,
      duplicates: counter.duplicates,
      ...(finished ? {} : { note: `timed out after ${spec.timeoutMs} ms with ${messages} of ${spec.measured} handled` }),
    };
  } finally {
    await consumer?.stop().catch(() => undefined);
    await outbox?.stop().catch(() => undefined);
    await server.dropDatabase(database).catch(() => undefined);
  }
}

export function round(value: number, digits: number): number {
  return Number.isFinite(value) ? Number(value.toFixed(digits)) : value;
}

/** Queue names q0 … q(count-1). */
export function queueNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `q${i}`);
}
