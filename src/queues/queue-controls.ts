import { InvalidOptionError } from '../errors.js';
import { refuseUnstorable, validateQueue } from '../producer/publish-options.js';
import type { SchemaNames } from '../schema/schema-names.js';
import { integerOption } from '../util/integer-option.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { pausedPayload } from './channel-signal.js';
import { buildPauseSql, type PauseSql } from './pause-sql.js';
import { type QueueState, readQueueStates } from './queue-state.js';
import { buildQueueStateSql, type QueueStateSql } from './queue-state-sql.js';
import type {
  PauseOptions,
  QueuePauseState,
  QueueStatus,
  QueueStatusReport,
  StatusOptions,
  ThroughputMinute,
} from './queue-status.js';
import { buildThroughputSql, STATS_RETENTION_MINUTES, type ThroughputSql } from './throughput-sql.js';

export const MAX_PAUSE_REASON_LENGTH = 500;
export const DEFAULT_STATUS_MINUTES = 15;
export const DEFAULT_STATUS_MAX_QUEUES = 500;
/** Counts stop here, as the queue-state metrics' default: above it the planner's estimate. */
const EXACT_COUNT_LIMIT = 10_000;
/** handledPerMinute averages this many minutes, the current one pro rata. */
const RATE_MINUTES = 5;

export interface QueueControlsDeps {
  readonly db: StatementRunner;
  readonly names: SchemaNames;
  /** Server-side limit of status()'s snapshot transaction (statement_timeout). */
  readonly statementTimeoutMs: number;
  /**
   * Hands a channel payload (queues/channel-signal.ts) to this process's subscriptions: a resumed
   * queue to wake, or a delayed redrive's announcement (the NOTIFY reaches the others).
   */
  readonly signalLocal: (payload: string) => void;
  /** Tells this process's subscriptions of a paused queue at once (the NOTIFY tells the others). */
  readonly pausedLocal: (queue: string) => void;
}

interface PauseRow {
  changed: boolean;
  paused_at: Date;
  reason: string | null;
}

interface WindowRow {
  queue: string | null;
  minute: Date | null;
  handled: number | null;
  retried: number | null;
  dead_lettered: number | null;
  now: Date;
  current_minute: Date;
}

/** pause(), resume() and status() of one Outbox. See architecture/operations.md. */
export class QueueControls {
  readonly #deps: QueueControlsDeps;
  readonly #pauseSql: PauseSql;
  readonly #stateSql: QueueStateSql;
  readonly #throughputSql: ThroughputSql;

  constructor(deps: QueueControlsDeps) {
    this.#deps = deps;
    this.#pauseSql = buildPauseSql(deps.names);
    this.#stateSql = buildQueueStateSql(deps.names);
    this.#throughputSql = buildThroughputSql(deps.names);
  }

  async pause(queue: string, options: PauseOptions = {}): Promise<QueuePauseState> {
    validateQueue(queue);
    const reason = pauseReason(options);
    // Twice at most: a pause committed by another caller after this statement's snapshot makes
    // the insert stand down while the select cannot see it yet; the second run sees it.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const { rows } = await this.#deps.db.run<PauseRow>(this.#pauseSql.pause, [
        queue,
        reason,
        this.#deps.names.channel,
        pausedPayload(queue),
      ]);
      const row = rows[0];
      this.#deps.pausedLocal(queue);
      if (row !== undefined) return { queue, paused: true, pausedAt: row.paused_at, reason: row.reason, changed: row.changed };
    }
    // Paused by someone else and resumed again in between: it is not paused now, and not by us.
    return { queue, paused: false, pausedAt: null, reason: null, changed: false };
  }

  async resume(queue: string): Promise<QueuePauseState> {
    validateQueue(queue);
    const { rows } = await this.#deps.db.run<{ changed: boolean }>(this.#pauseSql.resume, [queue, this.#deps.names.channel]);
    const changed = rows[0]?.changed === true;
    if (changed) this.#deps.signalLocal(queue);
    return { queue, paused: false, pausedAt: null, reason: null, changed };
  }

  async status(options: StatusOptions = {}): Promise<QueueStatusReport> {
    const { queues, minutes, maxQueues } = resolveStatusOptions(options);
    const { db, statementTimeoutMs } = this.#deps;
    // One repeatable-read snapshot: depths, pauses and throughput agree with each other.
    return await db.withClient(async (client) => {
      await client.query(db.bounded({ text: this.#stateSql.begin(statementTimeoutMs) }));
      // The rate's minutes too when fewer are shown: with minutes below 4 handledPerMinute averaged
      // the minutes shown (minutes + 1 entries), not the documented five.
      const { rows: window } = await client.query<WindowRow>(
        db.bounded({ text: this.#throughputSql.window, values: [Math.max(minutes, RATE_MINUTES - 1), queues ?? null] }),
      );
      const clock = window[0];
      if (clock === undefined) throw new Error('status: the clock row is missing');
      // Which queues: throughput in the minutes shown (the rate's earlier minutes add none).
      const shownFrom = clock.current_minute.getTime() - minutes * 60_000;
      const withThroughput = window.flatMap((row) =>
        row.queue === null || row.minute === null || row.minute.getTime() < shownFrom ? [] : [row.queue],
      );
      const states = await readQueueStates(client, db, this.#stateSql, {
        exactCountLimit: EXACT_COUNT_LIMIT,
        maxQueues,
        alwaysReport: withThroughput,
        ...(queues === undefined ? {} : { only: queues }),
      });
      await client.query(db.bounded({ text: 'COMMIT' }));
      return {
        at: clock.now,
        queues: states
          .map((state) => queueStatus(state, window, clock, minutes))
          .sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0)),
      };
    });
  }
}

const PAUSE_OPTIONS = ['reason'];
const STATUS_OPTIONS = ['queues', 'minutes', 'maxQueues'];

function pauseReason(options: PauseOptions): string | null {
  // Typed, but called from JavaScript and the CLI too.
  if (typeof (options as unknown) !== 'object' || (options as unknown) === null || Array.isArray(options)) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object such as { reason }' });
  }
  // As peek() does: a typo (`reasons`) paused the queue without its reason.
  rejectUnknownOptions(options, 'pause', PAUSE_OPTIONS);
  const { reason } = options;
  if (reason === undefined) return null;
  if (typeof reason !== 'string' || reason.length > MAX_PAUSE_REASON_LENGTH) {
    throw new InvalidOptionError({
      option: 'reason',
      value: reason,
      expected: `a string of at most ${MAX_PAUSE_REASON_LENGTH} characters`,
      fix: 'Say briefly why, for the next operator (an incident link fits).',
    });
  }
  // Here, not in PostgreSQL: a NUL came back as a raw 22021 error, an unpaired surrogate was
  // stored as U+FFFD.
  refuseUnstorable('reason', reason);
  return reason;
}

function resolveStatusOptions(options: StatusOptions): {
  queues: string[] | undefined;
  minutes: number;
  maxQueues: number;
} {
  if (typeof (options as unknown) !== 'object' || (options as unknown) === null || Array.isArray(options)) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of status options' });
  }
  // As peek() does: a typo (`queue`) reported every queue instead of the ones named.
  rejectUnknownOptions(options, 'status', STATUS_OPTIONS);
  const raw = options as Record<string, unknown>;
  let queues: string[] | undefined;
  if (raw.queues !== undefined) {
    if (!Array.isArray(raw.queues)) {
      throw new InvalidOptionError({ option: 'queues', value: raw.queues, expected: 'an array of queue names' });
    }
    queues = raw.queues.map((queue) => validateQueue(queue));
  }
  return {
    queues,
    minutes: integerOption('minutes', raw.minutes, 1, STATS_RETENTION_MINUTES, DEFAULT_STATUS_MINUTES),
    maxQueues: integerOption('maxQueues', raw.maxQueues, 1, 10_000, DEFAULT_STATUS_MAX_QUEUES),
  };
}

/** One queue's report: its state plus its throughput minutes, zero-filled, oldest first. */
function queueStatus(state: QueueState, window: readonly WindowRow[], clock: WindowRow, minutes: number): QueueStatus {
  const byMinute = new Map<number, WindowRow>();
  for (const row of window) if (row.queue === state.queue && row.minute !== null) byMinute.set(row.minute.getTime(), row);
  const current = clock.current_minute.getTime();
  const series: ThroughputMinute[] = [];
  for (let back = Math.max(minutes, RATE_MINUTES - 1); back >= 0; back -= 1) {
    const minute = current - back * 60_000;
    const row = byMinute.get(minute);
    series.push({
      minute: new Date(minute),
      handled: row?.handled ?? 0,
      retried: row?.retried ?? 0,
      deadLettered: row?.dead_lettered ?? 0,
    });
  }
  const throughput = series.slice(-(minutes + 1));
  // The last RATE_MINUTES entries, read whatever `minutes` shows: RATE_MINUTES - 1 whole minutes
  // and the current one so far.
  const recent = series.slice(-RATE_MINUTES);
  const elapsedMinutes = RATE_MINUTES - 1 + (clock.now.getTime() - current) / 60_000;
  const handled = recent.reduce((sum, m) => sum + m.handled, 0);
  return {
    queue: state.queue,
    ready: state.ready,
    scheduled: state.scheduled,
    leased: state.leased,
    dlq: state.dlq,
    estimated: state.estimated,
    oldestReadyAgeMs: Math.round(state.oldestReadyAgeSeconds * 1000),
    paused: state.pausedAt !== null,
    pausedAt: state.pausedAt,
    pauseReason: state.pauseReason,
    throughput,
    handledPerMinute: elapsedMinutes > 0 ? handled / elapsedMinutes : 0,
  };
}
