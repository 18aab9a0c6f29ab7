import pg from 'pg';

import { notInTransaction } from './in-transaction-query.js';

/**
 * The guard's two statements. SAVEPOINT fails with 25P01 (no_active_sql_transaction) outside a
 * transaction block, implicit ones included; nothing is written inside it, so no subtransaction id
 * is assigned, and RELEASE drops it at once. A user's savepoint of the same name is only shadowed
 * for that instant: RELEASE takes the newest.
 */
const GUARD_SAVEPOINT = 'SAVEPOINT txoutbox_in_transaction';
const GUARD_RELEASE = 'RELEASE SAVEPOINT txoutbox_in_transaction';
const GUARD = [GUARD_SAVEPOINT, GUARD_RELEASE];
const NO_ACTIVE_SQL_TRANSACTION = '25P01';

/**
 * The node-postgres Connection calls the guard sends itself (unchanged across node-postgres 8, so
 * a Kysely pool of another copy of `pg` takes them too; its own pg.Query.submit would not).
 */
interface WireConnection {
  parse(config: { text: string }): void;
  bind(config: { values?: unknown[] }): void;
  describe(config: { type: 'P'; name: string }): void;
  execute(config: object): void;
  sync(): void;
  stream: { cork?(): void; uncork?(): void };
}

function isWireConnection(connection: object): connection is WireConnection {
  const candidate = connection as Partial<Record<keyof WireConnection, unknown>>;
  return typeof candidate.parse === 'function' && typeof candidate.sync === 'function' && typeof candidate.stream === 'object';
}

/** pg.Query as a Submittable subclass sees it (@types/pg declares none of these). */
interface QueryInternals {
  readonly text: string;
  readonly values: unknown[];
  handleCommandComplete(message: object, connection: WireConnection): void;
  handleError(error: Error, connection: WireConnection | undefined): void;
  emit(event: string): boolean;
}

type QueryCallback = (error: Error | null | undefined, result: pg.QueryResult) => void;

const Query = pg.Query as unknown as new (config: { text: string; values: unknown[] }, callback: QueryCallback) => QueryInternals;
const base = pg.Query.prototype as unknown as QueryInternals;

/**
 * A producer statement that runs only inside an explicit transaction, checked by the server in the
 * same round trip: SAVEPOINT and RELEASE go first in one pipeline, before a single Sync, so a
 * SAVEPOINT refused outside a transaction block skips the statement (the server discards the
 * rest of the pipeline up to the Sync). For data layers that run a statement issued inside the
 * transaction but dispatched after its COMMIT or ROLLBACK (an un-awaited publish) and hand over no
 * node-postgres client whose status could be read at dispatch (Kysely). Costs two utility
 * statements on the server, no round trip.
 *
 * It is handed to node-postgres' `client.query` as a Submittable and is a thenable, so a layer
 * that awaits `client.query(text, values)` gets the Result back (`command`, `rowCount`, `rows`);
 * `toString()` is the statement's text, for the layer's logger. Not DecodedQuery's preludes
 * (util/decoded-query.ts), which pipeline the same way: those decode rows as texts and run only on
 * this copy of node-postgres, where a layer needs node-postgres' own Result, from any copy.
 */
export class SavepointGuardedQuery extends Query implements PromiseLike<pg.QueryResult> {
  #guardAnswers = 0;
  readonly #result: Promise<pg.QueryResult>;

  constructor(text: string, values: readonly unknown[], operation: string) {
    let settle: QueryCallback = () => undefined;
    // Values are mapped here, not at bind: a copy of node-postgres other than this one may not.
    super({ text, values: values.map(wireValue) }, (error, result) => {
      settle(error, result);
    });
    this.#result = new Promise((resolve, reject) => {
      settle = (error, result) => {
        if (!(error instanceof Error)) resolve(result);
        // 25P01 before the guard's first answer is its SAVEPOINT's: the statement never ran.
        else if (this.#guardAnswers === 0 && (error as { code?: unknown }).code === NO_ACTIVE_SQL_TRANSACTION)
          reject(notInTransaction(operation, error));
        else reject(error);
      };
    });
  }

  /**
   * The guard, then the statement (unnamed: node-postgres would mark a named one parsed at the
   * guard's ParseComplete even when the server then skipped it), then one Sync, whatever fails in
   * between: without it the server would wait and the connection hang.
   */
  submit(connection: object): Error | null {
    if (!isWireConnection(connection)) {
      // pg-native hands over its client, which takes no protocol messages: fail loudly, and end
      // the query the way its queue waits for (state and '_done'), never hang it.
      process.nextTick(() => {
        (this as { state?: string }).state = 'error';
        this.handleError(new Error(PG_NATIVE), undefined);
        this.emit('_done');
      });
      return null;
    }
    let failure: unknown;
    connection.stream.cork?.();
    try {
      for (const text of GUARD) {
        connection.parse({ text });
        connection.bind({});
        connection.execute({});
      }
      connection.parse({ text: this.text });
      connection.bind({ values: this.values });
      connection.describe({ type: 'P', name: '' });
      connection.execute({});
    } catch (error) {
      // A value the serializer refused: the server skips nothing it has not seen; the Sync ends it.
      failure = error;
    } finally {
      connection.sync();
      connection.stream.uncork?.();
    }
    if (failure !== undefined)
      this.handleError(
        failure instanceof Error ? failure : new Error('the statement could not be sent', { cause: failure }),
        connection,
      );
    return null;
  }

  override handleCommandComplete(message: object, connection: WireConnection): void {
    // The guard's own SAVEPOINT and RELEASE answer first; the statement's result starts after them.
    if (this.#guardAnswers < GUARD.length) this.#guardAnswers++;
    else base.handleCommandComplete.call(this, message, connection);
  }

  then<A = pg.QueryResult, B = never>(
    onFulfilled?: ((result: pg.QueryResult) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#result.then(onFulfilled, onRejected);
  }

  override toString(): string {
    return this.text;
  }
}

/** As node-postgres' own value mapping would send the producer's parameters (texts, numbers, one Buffer, null). */
function wireValue(value: unknown): unknown {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return value instanceof Date ? value.toISOString() : value;
}

const PG_NATIVE =
  'txoutbox cannot guard a statement on a pg-native client (a Kysely PostgresDialect over pg.native): use the JavaScript node-postgres client (`new pg.Pool(…)`), or publish through node-postgres directly';
