import pg from 'pg';

/** One row's fields as the server sent them (text format), NULL as null, in select-list order. */
export type RowFields = readonly (string | null)[];

/** Turns one row's fields into what the caller wants; a throw fails the statement. */
export type RowDecoder<T> = (fields: RowFields) => T;

/** The callback node-postgres hands a finished query (its result builder is not used here). */
type Done = (error: Error | undefined) => void;

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
 * pg-cursor and pg-query-stream also build on). Only a Client of that same copy may run it
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

  constructor(config: pg.QueryConfig, decode: RowDecoder<T>, done: Done) {
    // node-postgres keeps the callback and calls it with (error) or (null, result).
    super({ ...config, callback: done } as pg.QueryConfig);
    this.#decode = decode;
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
    if (this._canceledDueToError) return;
    try {
      this.decodedRows.push(this.#decode(message.fields));
    } catch (error) {
      this._canceledDueToError = error;
    }
  }

  /**
   * Runs `config` on `client` (a Client of this package's node-postgres copy) and resolves with its
   * decoded rows. `timeoutMs`: node-postgres' query_timeout for this query.
   */
  static run<T>(client: pg.ClientBase, config: pg.QueryConfig, decode: RowDecoder<T>, timeoutMs: number): Promise<T[]> {
    return new Promise<T[]>((resolve, reject) => {
      const query: DecodedQuery<T> = new DecodedQuery(config, decode, (error) => {
        if (error) reject(error);
        else resolve(query.decodedRows);
      });
      query.query_timeout = timeoutMs;
      client.query(query);
    });
  }
}

/** A client whose Query internals are the ones DecodedQuery extends: a pg.Client of this very copy. */
export function runsDecodedQueries(client: pg.ClientBase): boolean {
  return client instanceof pg.Client;
}
