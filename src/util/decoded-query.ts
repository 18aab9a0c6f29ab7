import pg from 'pg';

/** One row's fields as the server sent them (text format), NULL as null, in select-list order. */
export type RowFields = readonly (string | null)[];

/** Turns one row's fields into what the caller wants; a throw fails the statement. */
export type RowDecoder<T> = (fields: RowFields) => T;

/** The callback node-postgres hands a finished query (its result builder is not used here). */
type Done = (error: Error | undefined) => void;

/** What Query#prepare writes to: node-postgres' Connection (internal; not in @types/pg). */
interface PreparingConnection {
  parse(message: { text: string; name: string; types: unknown[] }): void;
  bind(message: { portal: string; statement: string; values: unknown[] }): void;
  execute(message: { portal: string; rows: number }): void;
}

/** The Query's own hooks this class extends that @types/pg does not declare (node-postgres' internal API). */
const QUERY = pg.Query.prototype as unknown as {
  prepare(this: pg.Query, connection: PreparingConnection): void;
  handleCommandComplete(this: pg.Query, message: unknown, connection: unknown): void;
};

/**
 * A node-postgres query whose rows go straight from the wire into the caller's shape: each
 * DataRow's fields (the strings pg-protocol already cut out of the buffer) are given to `decode`,
 * with no row array or object of node-postgres' own, no per-column type parser, no 'row' event.
 * Why (issue 18, BENCHMARKS.md "Node CPU per drained message"): the claim is the one statement
 * that returns a row per message, and node-postgres' generic row building was a measurable share
 * of a drain's CPU.
 *
 * It extends the Query class of the node-postgres copy this package imports, and overrides the two
 * hooks its Client calls for result rows (handleRowDescription, handleDataRow: the internal API that
 * pg-cursor and pg-query-stream also build on), and, for a prelude (a statement sent first, in the
 * same round trip: prepare()), the one that writes the extended-protocol messages and the one that
 * ends a command. Only a Client of that same copy may run it
 * (StatementRunner checks `instanceof pg.Client`): another copy, another version, or pg-native
 * runs the plain query instead, decoded from its arrays of texts.
 * Everything else — parse, bind, prepared names, errors, query_timeout, pipelining — is the
 * Query's own.
 */
export class DecodedQuery<T> extends pg.Query {
  /** The decoded rows, in the order the server sent them. */
  readonly decodedRows: T[] = [];
  readonly #decode: RowDecoder<T>;
  // Query's own field: a row that failed to decode fails the query once the server is done with it
  // (the connection stays in step), as a failed type parser does in node-postgres.
  declare _canceledDueToError: unknown;
  /** Read by Client#query from the query it is given (a submittable is its own config). */
  declare query_timeout: number | undefined;

  /**
   * A statement without parameters sent before this one in the same message sequence, its answer
   * (rows, command tag) ignored; undefined once that answer is complete (or when there is none).
   */
  #prelude: string | undefined;

  constructor(config: pg.QueryConfig, decode: RowDecoder<T>, done: Done, prelude?: string) {
    // node-postgres keeps the callback and calls it with (error) or (null, result).
    super({ ...config, callback: done } as pg.QueryConfig);
    this.#decode = decode;
    this.#prelude = prelude;
  }

  /**
   * With a prelude: its Parse, Bind and Execute (unnamed statement and portal) go first, then the
   * Query's own (Parse once per connection, Bind, Describe, Execute, Sync). One round trip, and one
   * implicit transaction up to the Sync: what the prelude sets with set_config(…, true) holds when
   * the statement's Bind chooses its plan, and ends with the statement. A failing prelude fails
   * the query (the server skips to the Sync), as a failing statement does. Only for an extended-
   * protocol query (one with values, as every DecodedQuery's): the Query's simple protocol would
   * send its text alone.
   */
  prepare(connection: PreparingConnection): void {
    if (this.#prelude !== undefined) {
      connection.parse({ text: this.#prelude, name: '', types: [] });
      connection.bind({ portal: '', statement: '', values: [] });
      connection.execute({ portal: '', rows: 0 });
    }
    QUERY.prepare.call(this, connection);
  }

  /** The prelude's command tag ends its answer; the statement's own is the Query's. */
  handleCommandComplete(message: unknown, connection: unknown): void {
    if (this.#prelude !== undefined) {
      this.#prelude = undefined;
      return;
    }
    QUERY.handleCommandComplete.call(this, message, connection);
  }

  /**
   * The Query's own builds a row template and a parser per column (an object in dictionary mode,
   * then a spread of it): ~10 µs per statement, for rows this query never builds. One statement
   * per query (no multi-statement text), so there is no second result to start either.
   */
  handleRowDescription(): void {
    // Nothing to prepare: the fields arrive in select-list order and `decode` knows it.
  }

  handleDataRow(message: { readonly fields: RowFields }): void {
    // The prelude's row (no RowDescription: it is not described) is not one of the statement's.
    if (this._canceledDueToError || this.#prelude !== undefined) return;
    try {
      this.decodedRows.push(this.#decode(message.fields));
    } catch (error) {
      this._canceledDueToError = error;
    }
  }

  /**
   * Runs `config` on `client` (a Client of this package's node-postgres copy) and resolves with its
   * decoded rows. `timeoutMs`: node-postgres' query_timeout for this query. `prelude`: see prepare().
   */
  static run<T>(
    client: pg.ClientBase,
    config: pg.QueryConfig,
    decode: RowDecoder<T>,
    timeoutMs: number,
    prelude?: string,
  ): Promise<T[]> {
    return new Promise<T[]>((resolve, reject) => {
      const query: DecodedQuery<T> = new DecodedQuery(
        config,
        decode,
        (error) => {
          if (error) reject(error);
          else resolve(query.decodedRows);
        },
        prelude,
      );
      query.query_timeout = timeoutMs;
      client.query(query);
    });
  }
}

/** A client whose Query internals are the ones DecodedQuery extends: a pg.Client of this very copy. */
export function runsDecodedQueries(client: pg.ClientBase): boolean {
  return client instanceof pg.Client;
}
