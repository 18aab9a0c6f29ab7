import pg from 'pg';

import { NotInTransactionError } from '../errors.js';
import { transactionStatus } from './executor.js';

/** `cause`: the server's refusal, when the server found the transaction gone (savepoint-guarded-query.ts). */
export function notInTransaction(operation: string, cause?: unknown): NotInTransactionError {
  return new NotInTransactionError(
    `outbox.${operation}(): the transaction it was called in ended before its statement ran (a COMMIT or ROLLBACK sent while the call was still under way: an un-awaited publish, or Promise.all with a write whose failure rolled back), so the row was not written. ` +
      'Fix: await every publish before the transaction ends.',
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Runs a producer statement on a node-postgres client only inside the transaction it was called
 * in. node-postgres queues a client's queries and sends each when the one before it answered;
 * publish queues its statement only after it encoded the body and ran the middlewares, so a
 * COMMIT or ROLLBACK the caller sent meanwhile (an un-awaited publish; `Promise.all([publish,
 * write])` whose catch rolls back) went first, and the statement then ran on its own: a row
 * committed for rolled-back data. The client's transaction status is read again when node-postgres
 * dispatches the statement (its `submit`, after the previous query's ReadyForQuery): idle means
 * the transaction ended, and the statement fails unsent (an error `submit` returns fails only that
 * query; the client goes on).
 */
export function queryInTransaction(
  client: { query(query: pg.Query): unknown },
  operation: string,
  config: pg.QueryConfig,
): Promise<readonly object[]> {
  return new Promise((resolve, reject) => {
    // node-postgres calls back with null on success; @types/pg says undefined.
    const query = new pg.Query(config, (error: Error | null | undefined, result) => {
      if (error instanceof Error) reject(error);
      else resolve(result.rows as object[]);
    });
    const submit = query.submit;
    // @types/pg declares submit's result void; node-postgres fails the query with an Error it returns.
    query.submit = (connection) => {
      if (transactionStatus(client) === 'I') return notInTransaction(operation) as unknown as undefined;
      submit.call(query, connection);
    };
    client.query(query);
  });
}
