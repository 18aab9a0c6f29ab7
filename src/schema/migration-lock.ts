import type pg from 'pg';

import { InvalidOptionError, type LockHolder } from '../errors.js';
import { integerOption } from '../util/integer-option.js';
import { rejectUnknownOptions } from '../util/known-options.js';

/**
 * How long an upgrade may wait for a table's lock.
 *
 * An `ALTER TABLE` on the live outbox needs ACCESS EXCLUSIVE. While it waits for a session that
 * holds the table (a transactional-consume handler, a row-lock batch, a report), every later
 * statement on the table queues behind its request: publishes inside the application's
 * transactions and the subscribers' claims stall for as long as the holder's transaction lasts.
 * So each attempt waits at most `lockTimeoutMs` (PostgreSQL's `lock_timeout`, for the migration's
 * transaction only), then rolls back, lets the queue drain, and tries again.
 */
export interface MigrateOptions {
  /**
   * How long one attempt waits for a table's lock, in ms; 0 waits without a bound (every publish
   * and claim then waits behind it). @default 2000
   */
  readonly lockTimeoutMs?: number;
  /**
   * Attempts before `MigrationLockTimeoutError`; between two, a backoff from 0.5 s doubling up to
   * 10 s (±25 %). @default 8 (about a minute in all)
   */
  readonly lockAttempts?: number;
}

export interface ResolvedMigrateOptions {
  readonly lockTimeoutMs: number;
  readonly lockAttempts: number;
}

const KNOWN = ['lockTimeoutMs', 'lockAttempts'];
export const DEFAULT_LOCK_TIMEOUT_MS = 2000;
export const DEFAULT_LOCK_ATTEMPTS = 8;
export const LOCK_RETRY_BASE_MS = 500;
export const LOCK_RETRY_CAP_MS = 10_000;

export function resolveMigrateOptions(raw: MigrateOptions = {}): ResolvedMigrateOptions {
  // From JavaScript anything may come.
  if (typeof (raw as unknown) !== 'object' || (raw as unknown) === null) {
    throw new InvalidOptionError({
      option: 'migrate options',
      value: raw,
      expected: 'an object such as { lockTimeoutMs: 2000 }',
    });
  }
  rejectUnknownOptions(raw, 'migrate', KNOWN);
  return {
    lockTimeoutMs: integerOption('lockTimeoutMs', raw.lockTimeoutMs, 0, 86_400_000, DEFAULT_LOCK_TIMEOUT_MS),
    lockAttempts: integerOption('lockAttempts', raw.lockAttempts, 1, 1000, DEFAULT_LOCK_ATTEMPTS),
  };
}

/**
 * No statement_timeout for the migration's transaction (SET LOCAL): the pool's (an Outbox made from
 * a connection string sets queryTimeoutMs, 10 s) cancelled the wait for another migrator, which is
 * meant to last as long as that migrator's work, and would cut a migration's index build on a large
 * table. What a migration waits for on the tables is bounded by lock_timeout (below) instead.
 */
export const NO_STATEMENT_TIMEOUT_SQL = `SELECT set_config('statement_timeout', '0', true)`;

/** $1 = the lock timeout (`2000ms`, `0`): for the migration's transaction only (SET LOCAL). */
export const SET_LOCK_TIMEOUT_SQL = `SELECT set_config('lock_timeout', $1::text, true)`;

/**
 * $1 = a table's quoted name: the other sessions holding a lock on it, for the error. pg_locks
 * shows only granted locks this way; the state and times of another role's session read as NULL
 * without pg_read_all_stats, which the error says as "not readable".
 */
export const LOCK_HOLDERS_SQL = `SELECT DISTINCT ON (a.pid) a.pid, a.application_name, a.state,
  (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::float8 AS transaction_ms
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.locktype = 'relation' AND l.relation = to_regclass($1::text) AND l.pid <> pg_backend_pid()
ORDER BY a.pid
LIMIT 10`;

/** `lock_timeout` ran out (SQLSTATE 55P03, lock_not_available). */
export function isLockTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '55P03';
}

/** Who holds `table` now; empty when that cannot be read (the error still stands without it). */
export async function lockHolders(client: pg.ClientBase, table: string): Promise<LockHolder[]> {
  try {
    const { rows } = await client.query<{
      pid: number;
      application_name: string | null;
      state: string | null;
      transaction_ms: number | null;
    }>(LOCK_HOLDERS_SQL, [table]);
    return rows.map((row) => ({
      pid: row.pid,
      applicationName: row.application_name,
      state: row.state,
      transactionMs: row.transaction_ms === null ? null : Math.round(row.transaction_ms),
    }));
  } catch {
    return [];
  }
}
