import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import type pg from 'pg';

import { payloadFor } from '../queues/channel-signal.js';
import { resolveBodyPreviewBytes } from '../queues/peek-page-bytes.js';
import type { TableName } from '../schema/identifiers.js';
import { DLQ_ADDED_COLUMNS, unmigratedSchemaError } from '../schema/unmigrated-schema.js';
import { backoffMs, delay } from '../util/backoff.js';
import { compareIds } from '../util/bigint-id.js';
import type { Statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import {
  type DeadLetter,
  type DeadLetterPreview,
  type DeadLetterPreviewRecord,
  type DeadLetterRecord,
  toDeadLetter,
  toDeadLetterPreview,
} from './dead-letter-row.js';
import {
  type BatchHooks,
  checkDlqOptions,
  type DlqBatchOptions,
  type DlqFilter,
  type DlqListOptions,
  type DlqListPreviewOptions,
  type DlqRedriveOptions,
  encodeCursor,
  type FilterParams,
  resolveBatchHooks,
  resolveBatchSize,
  resolveDelayMs,
  resolveFilter,
  resolveId,
  resolveIds,
  resolveKeyWaitMs,
  resolveList,
} from './dlq-options.js';
import type { DlqSql } from './dlq-sql.js';
import { resolveRetentionMs } from './retention-options.js';

/** One batch of a redrive or purge: the rows it moved or deleted, and whether its pass goes on. */
interface BatchStep {
  readonly done: number;
  readonly more: boolean;
  /** The pass ends here, short of its selection's end, for another from the start (HELD_KEYS_CAP). */
  readonly restart?: boolean;
}

/** The redrive statement's answer: one row per queue moved to, or one row with a NULL queue. */
interface RedriveRow {
  readonly last_picked: string | null;
  readonly held_queues: string[] | null;
  readonly held_keys: string[] | null;
  readonly queue: string | null;
  readonly redriven: number;
  readonly due: boolean;
  /** The earliest row's ms until due, when none is due (a delayMs redrive). */
  readonly due_in_ms: number | null;
}

/** The (queue, ordering key) pairs a redrive pass holds back, as the statement's $11 and $12. */
class HeldKeys {
  readonly queues: string[] = [];
  readonly keys: string[] = [];
  readonly #seen = new Set<string>();

  add(queues: readonly string[] | null | undefined, keys: readonly string[] | null | undefined): void {
    queues?.forEach((queue, i) => {
      const key = keys?.[i];
      if (key === undefined) return;
      const pair = JSON.stringify([queue, key]);
      if (this.#seen.has(pair)) return;
      this.#seen.add(pair);
      this.queues.push(queue);
      this.keys.push(key);
    });
  }

  get size(): number {
    return this.queues.length;
  }

  clear(): void {
    this.queues.length = 0;
    this.keys.length = 0;
    this.#seen.clear();
  }
}

/**
 * The most (queue, ordering key) pairs a redrive pass holds; past it, the pass ends and another
 * starts from the first row. Every batch sends the whole set ($11, $12) and anti-joins its rows
 * against it. Unbounded, two redrives leapfrogging through a large DLQ of distinct keys (each
 * skipping the batch the other holds locked) added up to a batch of keys per batch and sent them all
 * with every statement, quadratic, until statements passed queryTimeoutMs. A new pass keeps each
 * key's order as the first one does: it starts below every row the pass before left, so it meets
 * a key's earliest row left before its later ones, and holds the key again if that row cannot move.
 */
export const HELD_KEYS_CAP = 10_000;

/** Between two passes over what a pass left (a busy key's rows, rows held elsewhere): 50 ms doubling to 1 s. */
const RETRY_BASE_MS = 50;
const RETRY_CAP_MS = 1_000;

/**
 * How long a purge comes back for rows another redrive or purge held (SKIP LOCKED passed them by),
 * counted from the end of its first pass: that batch is one statement, so it soon deletes them or
 * leaves them (a redrive whose key was busy), and the purge then deletes what it left.
 */
const PURGE_WAIT_MS = 2_000;

/**
 * Waits before another pass over what the last one left: a backoff, for up to `waitMs` from the
 * first wait (the end of the first pass that left rows), so the time the first pass takes to walk a
 * large selection does not use it up.
 */
class PassRetry {
  readonly #waitMs: number;
  readonly #signal: AbortSignal | undefined;
  #until: number | undefined;
  #passes = 0;

  constructor(waitMs: number, signal: AbortSignal | undefined) {
    this.#waitMs = waitMs;
    this.#signal = signal;
  }

  /** False, at once, when the wait is used up; true after the pause (the signal checked). */
  async wait(): Promise<boolean> {
    this.#until ??= performance.now() + this.#waitMs;
    this.#passes += 1;
    const pause = Math.min(backoffMs(this.#passes, RETRY_BASE_MS, RETRY_CAP_MS), this.#until - performance.now());
    if (pause <= 0) return false;
    // The signal cuts the pause short: a stop() (the runner's retention) does not wait it out.
    await (this.#signal === undefined ? delay(pause) : sleep(pause, undefined, { signal: this.#signal }).catch(() => undefined));
    this.#signal?.throwIfAborted();
    return true;
  }
}

export type { DeadLetter, DeadLetterFields, DeadLetterPreview } from './dead-letter-row.js';

export interface DlqPage {
  /** Newest first: failed_at, then id, descending. */
  readonly rows: DeadLetter[];
  /** Pass as `cursor` for the next page; null on the last one. */
  readonly nextCursor: string | null;
  /**
   * True when the page stopped before `limit` rows because the next row would have passed
   * `maxPageBytes`: nextCursor is set, and the next page starts at that row.
   */
  readonly limitedByBytes: boolean;
}

/** listPreviews()'s page: the same rows and cursor as list()'s, each without its body. */
export interface DlqPreviewPage {
  /** Newest first: failed_at, then id, descending. */
  readonly rows: DeadLetterPreview[];
  /** Pass as `cursor` for the next page (of list() or listPreviews()); null on the last one. */
  readonly nextCursor: string | null;
  /** As list()'s: the page stopped at `maxPageBytes` (each row counted with its head, not its payload). */
  readonly limitedByBytes: boolean;
}

export interface DeadLettersContext {
  readonly db: StatementRunner;
  /** The DLQ table, named by SchemaNotMigratedError. */
  readonly table: TableName;
  readonly sql: DlqSql;
  readonly channel: string;
  /**
   * Hands a channel payload to this process's subscriptions: a queue whose redriven rows are due,
   * or when they will be (queues/channel-signal.ts). The NOTIFY reaches the others.
   */
  readonly signalLocal: (payload: string) => void;
  /** @internal Tests only: the held keys' cap of a redrive pass (HELD_KEYS_CAP when absent). */
  readonly heldKeysCap?: number;
}

/**
 * `outbox.dlq`: list, inspect, redrive and purge dead letters (architecture/operations.md).
 * Redrive and purge work in batches, one short statement each, so a million rows never hold a
 * long lock; a batch commits on its own, so an interrupted call leaves each row in exactly one
 * table, and running it again finishes the rest.
 */
export class DeadLetters {
  readonly #context: DeadLettersContext;

  /** @internal Built by the Outbox. */
  constructor(context: DeadLettersContext) {
    this.#context = context;
  }

  /**
   * Runs one statement on the DLQ. A DLQ older than this code (its migrations not run) fails with
   * SchemaNotMigratedError naming the migration, not with PostgreSQL's bare undefined_column:
   * `txoutbox dlq` is what an operator reaches for in an incident.
   */
  async #run<R extends pg.QueryResultRow>(
    operation: string,
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.#context.db.run<R>(statement, values);
    } catch (error) {
      throw unmigratedSchemaError(error, this.#context.table, operation, DLQ_ADDED_COLUMNS) ?? error;
    }
  }

  /**
   * One page of dead letters, newest first, narrowed by queue, reason and failure time: whole rows,
   * each body decoded, at most `maxPageBytes` (8 MiB) of them (stored bytes, counted by the
   * database, which sends no row past the budget; the first row always comes). To show a page,
   * listPreviews() reads a bounded head of each body instead.
   */
  async list(options: DlqListOptions = {}): Promise<DlqPage> {
    checkDlqOptions(options, 'list');
    const { filter, limit, cursor, maxPageBytes } = resolveList(options);
    const { rows } = await this.#run<DeadLetterRecord>('dlq.list', this.#context.sql.list, [
      ...filter,
      cursor?.failedAt ?? null,
      cursor?.id ?? null,
      limit,
      maxPageBytes,
    ]);
    return { rows: rows.map(toDeadLetter), ...pageEnd(rows, limit) };
  }

  /**
   * list()'s page with a preview of each body instead of the body: its first `bodyPreviewBytes`
   * (1 KiB by default, up to 64 KiB), those bytes as stored (`payloadHead`) and its size. The
   * database sends only those bytes and nothing is decoded, so a page of fifty 1 MB dead letters
   * costs kilobytes (the dashboard's list, `txoutbox dlq list`). get(id) returns one whole row.
   */
  async listPreviews(options: DlqListPreviewOptions = {}): Promise<DlqPreviewPage> {
    checkDlqOptions(options, 'listPreviews');
    const { filter, limit, cursor, maxPageBytes } = resolveList(options);
    const bodyPreviewBytes = resolveBodyPreviewBytes(options.bodyPreviewBytes);
    const { rows } = await this.#run<DeadLetterPreviewRecord>('dlq.listPreviews', this.#context.sql.listPreviews, [
      ...filter,
      cursor?.failedAt ?? null,
      cursor?.id ?? null,
      limit,
      maxPageBytes,
      bodyPreviewBytes,
    ]);
    return { rows: rows.map((row) => toDeadLetterPreview(row, bodyPreviewBytes)), ...pageEnd(rows, limit) };
  }

  /**
   * The DLQ's highest id now ('0' when it is empty). Pass it as a filter's `throughId` when the
   * operator confirms what they saw: a redrive or purge then leaves rows that died afterwards.
   */
  async lastId(): Promise<string> {
    const { rows } = await this.#run<{ max_id: string | null }>('dlq.list', this.#context.sql.maxId, []);
    return rows[0]?.max_id ?? '0';
  }

  /**
   * One dead letter by its DLQ id, or null: the whole row, with no byte budget (the one read that
   * returns a whole body, what `dlq show` prints). It holds the payload's size in memory, several
   * times over while it arrives (bytea travels as hex text); a row of hundreds of MB is better read
   * in slices with SQL (`substring(payload from … for …)`), its size first with listPreviews().
   */
  async get(id: string): Promise<DeadLetter | null> {
    const { rows } = await this.#run<DeadLetterRecord>('dlq.get', this.#context.sql.get, [resolveId(id)]);
    return rows[0] === undefined ? null : toDeadLetter(rows[0]);
  }

  /**
   * One dead letter by its DLQ id as listPreviews() reads it, or null: its fields, the first
   * `bodyPreviewBytes` of its body (1 KiB by default, up to 64 KiB) and its size. A page about one
   * row (the dashboard's `/dlq/:id`) reads this, not get(): a 1 GB dead letter stays in the database.
   */
  async getPreview(id: string, options: { readonly bodyPreviewBytes?: number } = {}): Promise<DeadLetterPreview | null> {
    checkDlqOptions(options, 'getPreview');
    const bodyPreviewBytes = resolveBodyPreviewBytes(options.bodyPreviewBytes);
    const { rows } = await this.#run<DeadLetterPreviewRecord>('dlq.getPreview', this.#context.sql.getPreview, [
      resolveId(id),
      bodyPreviewBytes,
    ]);
    return rows[0] === undefined ? null : toDeadLetterPreview(rows[0], bodyPreviewBytes);
  }

  /**
   * Moves dead letters back into the outbox: the given DLQ ids, or every row the filter selects.
   * Each row comes back with fresh counters, due `delayMs` from now, and headers naming its DLQ
   * row and failure reason (`x-txoutbox-redriven-from-dlq`, `x-txoutbox-redriven-reason`).
   *
   * A keyed row also needs its key's publish lock, which is tried, never waited for (dlq-sql.ts):
   * rows whose key a transaction holds are left for another pass, retried for up to `keyWaitMs`
   * after the first pass over the selection; `keyBusy` counts the selected rows still there then — those, and any a concurrent redrive or
   * purge was still moving (run the redrive again once that transaction ended).
   */
  async redrive(
    idsOrFilter: readonly string[] | DlqFilter,
    options: DlqRedriveOptions = {},
  ): Promise<{ redriven: number; keyBusy: number }> {
    checkDlqOptions(options, 'redrive');
    const batchSize = resolveBatchSize(options);
    const delayMs = resolveDelayMs(options);
    const keyWaitMs = resolveKeyWaitMs(options);
    const hooks = resolveBatchHooks(options);
    let redriven = 0;
    let keyBusy = 0;
    // keyWaitMs counts from the end of the first pass that leaves rows behind, not from the call's
    // start: walking a large selection takes longer than the wait (a million rows, a minute), and
    // a wait used up by the walk never retried a busy key at all.
    const retry = new PassRetry(keyWaitMs, hooks.signal);
    // A filter's pass goes on after the last id a batch picked, moved or not: a batch whose rows
    // all stayed must not end the pass before the rows after it. Ids are chunked by #batches (in id
    // order), each chunk picked whole. The keys a batch held (a row of theirs stayed, or another
    // redrive or purge holds one) stay held for the rest of the pass, so a key's later rows never
    // overtake its earlier ones (dlq-sql.ts, redrivable); a new pass starts afresh. Past
    // HELD_KEYS_CAP held keys, the pass ends there and a new one starts.
    const byCursor = !Array.isArray(idsOrFilter);
    let after: string | null = null;
    const held = new HeldKeys();
    const heldKeysCap = this.#context.heldKeysCap ?? HELD_KEYS_CAP;
    let movedInPass = 0;
    let cut = false;
    const newPass = (): true => {
      after = null;
      held.clear();
      movedInPass = 0;
      return true;
    };
    // After a pass: rows the selection still holds were left by a busy key (or are being moved by
    // a concurrent redrive or purge, which SKIP LOCKED passed by): another pass after a backoff.
    const again = async (filter: FilterParams): Promise<boolean> => {
      // A pass the cap cut short left rows it never tried: the next starts at once when the pass
      // moved rows (each such restart follows a row moved, so they end: the selection is bounded).
      // One that moved none held only keys that cannot move yet: it waits as below, and what
      // keyWaitMs leaves, tried or not, is keyBusy.
      if (cut) {
        cut = false;
        if (movedInPass > 0) return newPass();
      }
      const { rows } = await this.#run<{ n: number }>('dlq.redrive', this.#context.sql.count, filter);
      keyBusy = rows[0]?.n ?? 0;
      return keyBusy > 0 && (await retry.wait()) && newPass();
    };
    await this.#batches(
      idsOrFilter,
      'redrive',
      hooks,
      async (filter) => {
        const { rows } = await this.#run<RedriveRow>('dlq.redrive', this.#context.sql.redrive, [
          ...filter,
          batchSize,
          delayMs,
          this.#context.channel,
          after,
          held.queues,
          held.keys,
        ]);
        let moved = 0;
        for (const row of rows) {
          if (row.queue === null) continue;
          moved += row.redriven;
          const payload = payloadFor(row.queue, row);
          if (payload !== undefined) this.#context.signalLocal(payload);
        }
        redriven += moved;
        movedInPass += moved;
        const first = rows[0];
        held.add(first?.held_queues, first?.held_keys);
        const lastPicked = first?.last_picked ?? null;
        if (byCursor) after = lastPicked;
        cut = held.size > heldKeysCap;
        return { done: moved, more: lastPicked !== null, restart: cut };
      },
      batchSize,
      again,
    );
    return { redriven, keyBusy };
  }

  /**
   * Deletes dead letters the filter selects (an empty filter needs `all: true`). Rows another
   * redrive or purge holds while it runs are passed by, then looked for again for up to 2 s:
   * `remaining` counts the selected rows still there then (left by a redrive whose key was busy, or
   * still held: run the purge again).
   */
  async purge(filter: DlqFilter, options: DlqBatchOptions = {}): Promise<{ purged: number; remaining: number }> {
    checkDlqOptions(options, 'purge');
    const { purged, remaining } = await this.#purge(filter, options);
    return { purged, remaining };
  }

  /**
   * Deletes every dead letter that failed more than `maxAgeMs` ago by the database's clock (at least
   * a minute; a duration string such as `'14d'` is accepted too): the retention `txoutbox run`
   * enforces with `dlqRetention` (architecture/operations.md). Batched like purge(), idempotent,
   * safe to run from several processes at once (SKIP LOCKED: each row is deleted by one of them).
   * Returns the count, the line it applied (rows that failed before `failedBefore`) and, as
   * purge(), the rows past it still there (`remaining`: another call was moving them).
   */
  async enforceRetention(
    maxAgeMs: number,
    options: DlqBatchOptions = {},
  ): Promise<{ purged: number; failedBefore: Date; remaining: number }> {
    checkDlqOptions(options, 'enforceRetention');
    const olderThanMs = resolveRetentionMs('maxAgeMs', maxAgeMs);
    const { purged, failedBefore, remaining } = await this.#purge({ olderThanMs }, options);
    // An olderThanMs filter always resolves to a line (see #batches): never null here.
    return { purged, failedBefore: new Date(failedBefore ?? ''), remaining };
  }

  async #purge(
    filter: DlqFilter,
    options: DlqBatchOptions,
  ): Promise<{ purged: number; remaining: number; failedBefore: string | null }> {
    const batchSize = resolveBatchSize(options);
    const hooks = resolveBatchHooks(options);
    let purged = 0;
    let remaining = 0;
    const retry = new PassRetry(PURGE_WAIT_MS, hooks.signal);
    // A pass ends at a batch that deletes nothing: every row the selection still holds was locked
    // by another redrive or purge. Before, the purge ended there and said nothing of them, and a
    // redrive that then left them (their key busy) left them in the DLQ, the purge reporting
    // success. So: count them, and look again after a backoff, for up to PURGE_WAIT_MS. The count
    // finds only rows locked when the last batch ran (the selection has an upper id), at most the
    // batches of the calls running alongside.
    const again = async (params: FilterParams): Promise<boolean> => {
      const { rows } = await this.#run<{ n: number }>('dlq.purge', this.#context.sql.count, params);
      remaining = rows[0]?.n ?? 0;
      return remaining > 0 && (await retry.wait());
    };
    const failedBefore = await this.#batches(
      filter,
      'purge',
      hooks,
      async (params) => {
        const result = await this.#run('dlq.purge', this.#context.sql.purge, [...params, batchSize]);
        const deleted = result.rowCount ?? 0;
        purged += deleted;
        return { done: deleted, more: deleted > 0 };
      },
      batchSize,
      again,
    );
    return { purged, remaining, failedBefore };
  }

  /**
   * Runs `batch` until the selection is done: ids in chunks of batchSize (each chunk once), a
   * filter until a batch picks nothing among the rows the DLQ held when the call started (ids up to
   * its max(id) then, read once); a batch that says `restart` ends the pass there. Then, while
   * `again` says so, another such pass with the same bounds (redrive: rows a busy key left behind,
   * or a pass its held keys cut short; both: rows another call held). An olderThanMs filter becomes a failedBefore line read once from
   * the database, returned (ISO text) so callers can say what they applied.
   */
  async #batches(
    idsOrFilter: readonly string[] | DlqFilter,
    operation: 'redrive' | 'purge',
    hooks: BatchHooks,
    batch: (filter: FilterParams) => Promise<BatchStep>,
    batchSize: number,
    again?: (filter: FilterParams) => Promise<boolean>,
  ): Promise<string | null> {
    const step = async (filter: FilterParams): Promise<BatchStep> => {
      hooks.signal?.throwIfAborted();
      const result = await batch(filter);
      await hooks.onBatch?.(result.done);
      return result;
    };
    if (Array.isArray(idsOrFilter)) {
      // In id order, each once: a key's rows in two chunks go back in order (the earlier chunk first).
      const ids = [...new Set(resolveIds(idsOrFilter as readonly unknown[]))].sort(compareIds);
      do {
        for (let i = 0; i < ids.length; i += batchSize) {
          if ((await step([null, null, null, null, ids.slice(i, i + batchSize), null])).restart === true) break;
        }
      } while (ids.length > 0 && again !== undefined && (await again([null, null, null, null, ids, null])));
      return null;
    }
    const { params, olderThanMs, throughId } = resolveFilter(idsOrFilter, operation);
    const filter: FilterParams = [...params];
    hooks.signal?.throwIfAborted();
    if (olderThanMs !== undefined) {
      const { rows } = await this.#run<{ failed_before: string }>('dlq.purge', this.#context.sql.cutoff, [
        olderThanMs,
        params[2],
      ]);
      // Never a NULL line: it would drop the age from the filter and delete younger rows too.
      const line = rows[0]?.failed_before;
      if (typeof line !== 'string') throw new Error('dlq_cutoff returned no time: refusing to act without the age line');
      filter[2] = line;
    }
    // The rows there now, and no later ones: a redriven row whose handler still fails comes back
    // with a higher id the same filter selects, so an unbounded loop would move it again (and may
    // never end); a purge would delete rows that died after the operator confirmed. An empty DLQ
    // bounds at 0 (ids start at 1): the one batch finds nothing, as on a DLQ the filter misses.
    // With throughId, no later than what the operator saw either.
    const last = await this.lastId();
    filter[5] = throughId !== undefined && throughId < BigInt(last) ? throughId.toString() : last;
    do {
      for (;;) {
        const { more, restart } = await step(filter);
        if (!more || restart === true) break;
      }
    } while (again !== undefined && (await again(filter)));
    return filter[2];
  }
}

/**
 * Where a page ends. A full page may be the last one: the next call then returns no row and a null
 * cursor. A page the byte budget cut (fewer rows than the limit let through) goes on after its last row.
 */
function pageEnd(
  rows: readonly { id: string; cursor_failed_at?: string; candidate_count?: number }[],
  limit: number,
): { nextCursor: string | null; limitedByBytes: boolean } {
  const last = rows.at(-1);
  const limitedByBytes = rows.length < (last?.candidate_count ?? 0);
  const more = rows.length === limit || limitedByBytes;
  return {
    nextCursor: more && last?.cursor_failed_at !== undefined ? encodeCursor(last.cursor_failed_at, last.id) : null,
    limitedByBytes,
  };
}
