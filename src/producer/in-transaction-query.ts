import pg from 'pg';

import { NotInTransactionError } from '../errors.js';
import { type ProtocolEvents, protocolEvents, transactionStatus } from './executor.js';

/** `cause`: the server's refusal, when the server found the transaction gone (savepoint-guarded-query.ts). */
export function notInTransaction(operation: string, cause?: unknown): NotInTransactionError {
  return new NotInTransactionError(
    `outbox.${operation}(): the transaction it was called in ended before its statement ran (a COMMIT or ROLLBACK sent while the call was still under way: an un-awaited publish, or Promise.all with a write whose failure rolled back), so the row was not written. ` +
      'Fix: await every publish before the transaction ends.',
    cause === undefined ? undefined : { cause },
  );
}

/**
 * One connection's ReadyForQuery messages, counted while producer calls on it are under way: one
 * listener per connection however many calls are (Promise.all over 1,000 publishes on one client
 * shares it, as the commit watch is shared), attached with the first call, detached with the last.
 */
class ReadyCount {
  readonly #events: ProtocolEvents;
  /** ReadyForQuery messages seen while attached (a count, not a time: only differences are read). */
  seen = 0;
  /** The ordinal (in `seen`) of the last one that said idle; 0 when none. */
  lastIdle = 0;
  #users = 0;
  readonly #onReadyForQuery = (message: { status?: string }): void => {
    this.seen += 1;
    if (message.status === 'I') this.lastIdle = this.seen;
  };

  constructor(events: ProtocolEvents) {
    this.#events = events;
  }

  acquire(): void {
    if (this.#users === 0) this.#events.on('readyForQuery', this.#onReadyForQuery);
    this.#users += 1;
  }

  release(): void {
    this.#users -= 1;
    if (this.#users === 0) this.#events.removeListener('readyForQuery', this.#onReadyForQuery);
  }
}

const readyCounts = new WeakMap<ProtocolEvents, ReadyCount>();

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
 * The transaction a producer call was made in, watched from the call until the call settles: the
 * status at dispatch says only whether *a* transaction is open, and a ROLLBACK followed by a BEGIN
 * issued after the call (the caller's retry, or the connection released to the pool and checked
 * out by another request) shows `T` again, so the statement joined a transaction it was never
 * called in and committed with it (review). The call's transaction is the one the client is in
 * once the queries issued before the call have answered (`COMMIT; BEGIN` queued ahead puts it in
 * the next one, as node-postgres runs them in order): it ended when the last of those answers said
 * idle (a COMMIT queued ahead and nothing after it: no transaction at all), or any answer after
 * them did. Limits: a query issued before the call that never answers (a queued one its
 * query_timeout removed) makes the watch skip one answer too many; `ROLLBACK AND CHAIN`, or
 * `ROLLBACK; BEGIN` sent as one simple query, end a transaction without an idle answer.
 */
export class CallTransaction {
  readonly #count: ReadyCount;
  /** The ordinal of the answer after which the call's transaction is the current one. */
  readonly #target: number;
  /** Whether answers were owed at the call: then the last of them decides too. */
  readonly #waited: boolean;

  constructor(count: ReadyCount, owed: number) {
    this.#count = count;
    this.#target = count.seen + owed;
    this.#waited = owed > 0;
    count.acquire();
  }

  /** Whether it ended (the connection went back to idle) since the call. */
  ended(): boolean {
    const { lastIdle } = this.#count;
    return this.#waited ? lastIdle >= this.#target : lastIdle > this.#target;
  }

  /** Stops watching: called once the call settled, whichever way. */
  release(): void {
    this.#count.release();
  }
}

/** The watch of a call on `client`; undefined for a client whose protocol events are not exposed (the status check still runs). */
export function watchCallTransaction(client: object): CallTransaction | undefined {
  const events = protocolEvents(client);
  if (events === undefined) return undefined;
  let count = readyCounts.get(events);
  if (count === undefined) {
    count = new ReadyCount(events);
    readyCounts.set(events, count);
  }
  return new CallTransaction(count, answersOwed(client));
}

/** node-postgres' Query class: this copy's, or the client's own (`Client.Query`) for another copy. */
export type QueryClass = new (
  config: pg.QueryConfig,
  callback: (error: Error | null | undefined, result: pg.QueryResult) => void,
) => pg.Query;

/**
 * The Query class to build a client's statements from, so that their dispatch can be hooked: this
 * copy's for its clients, the client's own (node-postgres sets `Client.Query`) for another copy's;
 * undefined when it has none.
 */
export function queryClassOf(client: object, ours: boolean): QueryClass | undefined {
  if (ours) return pg.Query;
  const own = (client.constructor as { Query?: unknown } | undefined)?.Query;
  return typeof own === 'function' ? (own as QueryClass) : undefined;
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
  queryClass: QueryClass,
  operation: string,
  config: pg.QueryConfig,
  call?: CallTransaction,
): Promise<readonly object[]> {
  return new Promise((resolve, reject) => {
    // node-postgres calls back with null on success; @types/pg says undefined.
    const query = new queryClass(config, (error: Error | null | undefined, result) => {
      if (error instanceof Error) reject(error);
      else resolve(result.rows as object[]);
    });
    const submit = query.submit;
    // @types/pg declares submit's result void; node-postgres fails the query with an Error it returns.
    query.submit = (connection) => {
      if (transactionStatus(client) === 'I' || call?.ended() === true) return notInTransaction(operation) as unknown as undefined;
      submit.call(query, connection);
    };
    client.query(query);
  });
}
