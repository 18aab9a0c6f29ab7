import { NotInTransactionError } from '../errors.js';

/**
 * What publish needs from the caller: something that runs a parameterised statement on the
 * connection of their open transaction. node-postgres' Client and PoolClient fit as they are.
 */
export interface Executor {
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

interface PoolLike {
  totalCount: number;
  idleCount: number;
  connect: unknown;
}

export function isPool(value: object): value is PoolLike {
  const candidate = value as Partial<PoolLike>;
  return (
    typeof candidate.totalCount === 'number' && typeof candidate.idleCount === 'number' && typeof candidate.connect === 'function'
  );
}

/** node-postgres >= 8.13 exposes the server's transaction status: 'I' idle, 'T' in a transaction, 'E' failed. */
export function transactionStatus(value: object): string | null | undefined {
  const fn = (value as { getTransactionStatus?: unknown }).getTransactionStatus;
  return typeof fn === 'function' ? (fn.call(value) as string | null) : undefined;
}

/**
 * The transactional contract (DESIGN invariant 1) is only as good as the executor: a pool or a
 * client outside BEGIN commits the row on its own, with or without the caller's data. Both are
 * refused unless the caller says `autocommit: true`, which makes "publish on its own" explicit.
 * Known limit: a BEGIN sent without awaiting it is not yet visible in the client's status.
 */
export function assertTransactional(operation: string, executor: unknown, autocommit: boolean): asserts executor is Executor {
  if (executor === null || typeof executor !== 'object' || typeof (executor as { query?: unknown }).query !== 'function') {
    throw new NotInTransactionError(
      `outbox.${operation}() needs the node-postgres client of your open transaction as its first argument, got ${executor === null ? 'null' : typeof executor}.`,
    );
  }
  if (autocommit) return;
  if (isPool(executor)) {
    throw new NotInTransactionError(
      `outbox.${operation}() was given a pg.Pool: each pool query is its own transaction, so the outbox row would commit without your data. ` +
        `Fix: pass the client of your transaction (const client = await pool.connect(); await client.query('BEGIN'); …), ` +
        `or pass { autocommit: true } to publish outside any transaction on purpose.`,
    );
  }
  const status = transactionStatus(executor);
  if (status === 'I') {
    throw new NotInTransactionError(
      `outbox.${operation}() was given a client that is not inside a transaction, so the outbox row would commit on its own. ` +
        `Fix: await client.query('BEGIN') first, or pass { autocommit: true } to publish outside any transaction on purpose.`,
    );
  }
}
