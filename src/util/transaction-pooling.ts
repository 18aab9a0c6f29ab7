import type pg from 'pg';

import { errorMessage, InvalidOptionError } from '../errors.js';
import type { Logger } from './logger.js';

/** transactionPooling, listenConnectionString and the listen they decide, validated together. */
export interface TransactionPooling {
  readonly transactionPooling: boolean;
  readonly listenConnectionString: string | undefined;
  readonly listen: boolean;
}

/**
 * The Outbox options a transaction pooler (PgBouncer, pool_mode = transaction) concerns, judged
 * once. LISTEN needs a session: through a transaction pooler it lands on a server connection that
 * goes back to the pool, and its notifications reach whichever client borrows that connection
 * next, or nobody. So `listen: true` there needs a direct connection of its own
 * (listenConnectionString); without one the subscriptions poll, which is the default.
 */
export function transactionPoolingOptions(
  transactionPooling: unknown,
  listenConnectionString: unknown,
  listen: unknown,
): TransactionPooling {
  if (transactionPooling !== undefined && typeof transactionPooling !== 'boolean') {
    throw new InvalidOptionError({ option: 'transactionPooling', value: transactionPooling, expected: 'a boolean' });
  }
  if (
    listenConnectionString !== undefined &&
    (typeof listenConnectionString !== 'string' || listenConnectionString.trim() === '')
  ) {
    throw new InvalidOptionError({
      option: 'listenConnectionString',
      value: listenConnectionString,
      expected: 'a non-empty connection string (a direct connection to PostgreSQL, for LISTEN)',
      redact: typeof listenConnectionString === 'string',
    });
  }
  const pooled = transactionPooling === true;
  const direct = listenConnectionString;
  if (listen === false && direct !== undefined) {
    throw new InvalidOptionError({
      option: 'listenConnectionString',
      value: '[redacted]',
      expected: 'no listenConnectionString with listen: false (nothing would LISTEN on it)',
      fix: 'Drop listenConnectionString, or drop listen: false.',
      redact: true,
    });
  }
  if (pooled && listen === true && direct === undefined) {
    throw new InvalidOptionError({
      option: 'listen',
      value: listen,
      expected: 'false, or a listenConnectionString, under transactionPooling',
      fix: 'LISTEN needs a session of its own, which a transaction pooler does not keep: give listenConnectionString a direct connection to PostgreSQL (not through PgBouncer), or drop listen: the subscriptions then poll (minPollIntervalMs).',
    });
  }
  return {
    transactionPooling: pooled,
    listenConnectionString: direct,
    listen: typeof listen === 'boolean' ? listen : !pooled || direct !== undefined,
  };
}

/**
 * Under transactionPooling the pool sets no session state (owned-pool.ts), so the server's own
 * settings for the role are what txoutbox's statements run with: says once when they lack
 * statement_timeout (a statement the client gave up on may still commit later: a claim then costs
 * its rows a lease and a counted delivery) or, with prepared statements, custom plans
 * (owned-pool.ts CUSTOM_PLANS). Off the claim path; a failed check is logged at debug level.
 */
export async function warnAboutRoleSettings(
  pool: pg.Pool,
  queryTimeoutMs: number,
  preparedStatements: boolean,
  logger: Logger,
): Promise<void> {
  try {
    const { rows } = await pool.query<{ statement_timeout: string; plan_cache_mode: string }>(
      "SELECT current_setting('statement_timeout') AS statement_timeout, current_setting('plan_cache_mode') AS plan_cache_mode",
    );
    const settings = rows[0];
    if (settings === undefined) return;
    const missing = [
      ...(settings.statement_timeout === '0' ? [`statement_timeout = '${queryTimeoutMs}ms'`] : []),
      ...(preparedStatements && settings.plan_cache_mode === 'auto' ? ['plan_cache_mode = force_custom_plan'] : []),
    ];
    if (missing.length === 0) return;
    logger.warn(
      { transactionPooling: true, missing },
      `transactionPooling: txoutbox sets no session state, and the server gives this role no ${missing.join(' and no ')}. Set them on the role: ${missing.map((setting) => `ALTER ROLE <role> SET ${setting}`).join('; ')} (architecture/pgbouncer.md)`,
    );
  } catch (error) {
    logger.debug({ err: errorMessage(error) }, 'could not read the role settings under transactionPooling');
  }
}
