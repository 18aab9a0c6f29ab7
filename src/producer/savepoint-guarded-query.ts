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

/** The node-postgres Connection calls a Submittable uses (stable across node-postgres 8). */
interface WireConnection {
  parse(config: { text: string }): void;
  bind(config: object): void;
  execute(config: object): void;
  stream: { cork?(): void; uncork?(): void };
}

/** pg.Query as a Submittable subclass sees it (@types/pg declares neither these methods nor queryMode). */
interface QueryInternals {
  readonly text: string;
  submit(connection: WireConnection): Error | null;
  handleCommandComplete(message: object, connection: WireConnection): void;
}

type QueryCallback = (error: Error | null | undefined, result: pg.QueryResult) => void;

const Query = pg.Query as unknown as new (
  config: { text: string; values: unknown[]; queryMode: 'extended' },
  callback: QueryCallback,
) => QueryInternals;
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
 * `toString()` is the statement's text, for the layer's logger.
 */
export class SavepointGuardedQuery extends Query implements PromiseLike<pg.QueryResult> {
  #guardAnswers = 0;
  readonly #result: Promise<pg.QueryResult>;

  constructor(text: string, values: readonly unknown[], operation: string) {
    let settle: QueryCallback = () => undefined;
    // Extended protocol always (a statement without values would otherwise go as a simple Query,
    // which cannot follow the guard's unsynced messages). Numbers become text here: a copy of
    // node-postgres other than this one may not map values at bind.
    super({ text, values: values.map(wireValue), queryMode: 'extended' }, (error, result) => {
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

  override submit(connection: WireConnection): Error | null {
    connection.stream.cork?.();
    try {
      for (const text of GUARD) {
        connection.parse({ text });
        connection.bind({});
        connection.execute({});
      }
      return base.submit.call(this, connection);
    } finally {
      connection.stream.uncork?.();
    }
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

function wireValue(value: unknown): unknown {
  return typeof value === 'number' || typeof value === 'bigint' ? String(value) : value;
}
