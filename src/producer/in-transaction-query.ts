import pg from 'pg';

import { NotInTransactionError } from '../errors.js';
import { protocolEvents, transactionStatus } from './executor.js';

/** `cause`: the server's refusal, when the server found the transaction gone (savepoint-guarded-query.ts). */
export function notInTransaction(operation: string, cause?: unknown): NotInTransactionError {
  return new NotInTransactionError(
    `outbox.${operation}(): the transaction it was called in ended before its statement ran (a COMMIT or ROLLBACK sent while the call was still under way: an un-awaited publish, or Promise.all with a write whose failure rolled back), so the row was not written. ` +
      'Fix: await every publish before the transaction ends.',
    cause === undefined ? undefined : { cause },
  );
}

/** The transaction a producer call was made in, watched from the call until the call settles. */
export interface CallTransaction {
  /** Whether it ended (the connection went back to idle) since the call. */
  readonly ended: () => boolean;
  /** Stops watching: called once the call settled, whichever way. */
  readonly release: () => void;
}

/**
 * Queries issued on a node-postgres client before now and not yet answered: each ends with one
 * ReadyForQuery. Read from node-postgres 8's own fields (the public `queryQueue` and `activeQuery`
 * print a deprecation warning); 0 when they are not there.
 */
function answersOwed(client: object): number {
  const { _queryQueue: queue, _activeQuery: active } = client as { _queryQueue?: unknown; _activeQuery?: unknown };
  return (Array.isArray(queue) ? queue.length : 0) + (active === null || active === undefined ? 0 : 1);
}

/**
 * Watches the transaction a producer call is made in: the status at dispatch says only whether
 * *a* transaction is open, and a ROLLBACK followed by a BEGIN issued after the call (the caller's
 * retry, or the connection released to the pool and checked out by another request) shows `T`
 * again, so the statement joined a transaction it was never called in and committed with it
 * (review). The transaction of the call is the one its client is in once the queries issued before
 * the call have answered (a `COMMIT; BEGIN` queued ahead of the call puts it in the next one, as
 * node-postgres runs them in order): their ReadyForQuery messages are skipped, and any later one
 * that says idle ends it. One listener from the call until it settles. Undefined for a client
 * whose protocol events are not exposed (the status check still runs).
 */
export function watchCallTransaction(client: object): CallTransaction | undefined {
  const events = protocolEvents(client);
  if (events === undefined) return undefined;
  let ended = false;
  let ahead = answersOwed(client);
  const onReadyForQuery = (message: { status?: string }): void => {
    if (ahead > 0) ahead -= 1;
    else if (message.status === 'I') ended = true;
  };
  events.on('readyForQuery', onReadyForQuery);
  return {
    ended: () => ended,
    release: () => {
      events.removeListener('readyForQuery', onReadyForQuery);
    },
  };
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
  endedSinceCall?: () => boolean,
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
      if (transactionStatus(client) === 'I' || endedSinceCall?.() === true)
        return notInTransaction(operation) as unknown as undefined;
      submit.call(query, connection);
    };
    client.query(query);
  });
}
