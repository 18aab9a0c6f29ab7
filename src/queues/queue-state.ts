import type pg from 'pg';

import type { StatementRunner } from '../util/statement-runner.js';
import type { DepthState, QueueStateSql } from './queue-state-sql.js';

/** One queue's state. Counts above the cap are planner estimates, flagged in `estimated`. */
export interface QueueState {
  readonly queue: string;
  readonly ready: number;
  readonly scheduled: number;
  readonly leased: number;
  /** Seconds since the oldest ready row became due (next_attempt_at); 0 when none is ready. */
  readonly oldestReadyAgeSeconds: number;
  /** undefined when the Outbox has no DLQ. */
  readonly dlq: number | undefined;
  readonly estimated: Readonly<Record<DepthState | 'dlq', boolean>>;
  /** When pause() paused it; null when it is not paused. */
  readonly pausedAt: Date | null;
  readonly pauseReason: string | null;
}

export interface QueueStateQuery {
  /** Counts stop here; a count that reaches it is replaced by the planner's estimate. */
  readonly exactCountLimit: number;
  readonly maxQueues: number;
  /** Reported even when empty (subscribed queues, queues asked for by name). */
  readonly alwaysReport: readonly string[];
  /** Only these queues, each reported even when empty (status({ queues })): no discovery, no ranking. */
  readonly only?: readonly string[];
}

interface SnapshotRow {
  queue: string;
  ready: number;
  scheduled: number;
  leased: number;
  oldest_ready_age_seconds: number | null;
  dlq: number | null;
  paused_at: Date | null;
  pause_reason: string | null;
}

const STATES = ['ready', 'scheduled', 'leased', 'dlq'] as const;

/**
 * The snapshot statement and the estimates for capped counts, on `client` inside a transaction
 * the caller opened (sql.begin: repeatable read, read only, a server-side time limit) and commits.
 * Shared by the Prometheus collector and outbox.status(), so both report the same numbers.
 */
export async function readQueueStates(
  client: pg.PoolClient,
  statements: StatementRunner,
  sql: QueueStateSql,
  query: QueueStateQuery,
): Promise<QueueState[]> {
  const cap = query.exactCountLimit + 1;
  const { rows } = await client.query<SnapshotRow>(
    statements.bounded(
      query.only === undefined
        ? { text: sql.snapshot, values: [cap, query.maxQueues, [...new Set(query.alwaysReport)]] }
        : { text: sql.named, values: [cap, [...new Set(query.only)]] },
    ),
  );
  const queues: QueueState[] = [];
  for (const row of rows) queues.push(await resolveEstimates(client, statements, sql, row, cap));
  return queues;
}

/** Replaces counts that reached the cap by the planner's estimate (never below the cap). */
async function resolveEstimates(
  client: pg.PoolClient,
  statements: StatementRunner,
  sql: QueueStateSql,
  row: SnapshotRow,
  cap: number,
): Promise<QueueState> {
  const estimated = { ready: false, scheduled: false, leased: false, dlq: false };
  const values: Record<(typeof STATES)[number], number | null> = {
    ready: row.ready,
    scheduled: row.scheduled,
    leased: row.leased,
    dlq: row.dlq,
  };
  for (const state of STATES) {
    const text = sql.estimate[state];
    const exact = values[state];
    if (exact === null || exact < cap || text === undefined) continue;
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(
      statements.bounded({ text, values: [row.queue] }),
    );
    const planned = rows[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? 0;
    values[state] = Math.max(Math.round(planned), cap);
    estimated[state] = true;
  }
  return {
    queue: row.queue,
    ready: values.ready ?? 0,
    scheduled: values.scheduled ?? 0,
    leased: values.leased ?? 0,
    oldestReadyAgeSeconds: Math.max(0, row.oldest_ready_age_seconds ?? 0),
    dlq: values.dlq ?? undefined,
    estimated,
    pausedAt: row.paused_at,
    pauseReason: row.pause_reason,
  };
}
