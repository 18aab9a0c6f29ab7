import pg from 'pg';

import type { Statement } from './statement.js';

/** One row's fields as the server sent them (text format), NULL as null, in select-list order. */
export type RowFields = readonly (string | null)[];

/** Turns one row's fields into what the caller wants; a throw fails the statement. */
export type RowDecoder<T> = (fields: RowFields) => T;

/** The callback node-postgres hands a finished query (its result builder is not used here): null on success. */
type Done = (error: Error | null | undefined) => void;

/**
 * A statement sent before the decoded one, in the same message sequence (DecodedQuery's preludes):
 * its rows are ignored, its command tag is kept (`commandTags`). `values` are sent as they are: the
 * texts the server reads (NULL as null), no node-postgres conversion. Named: parsed once per
 * connection (PREPARED_PRELUDES); unnamed: parsed with every use.
 */
export interface Prelude {
  readonly name?: string;
  readonly text: string;
  readonly values?: readonly (string | null)[];
  /**
   * Ask the server to send what it has answered so far once this statement ran (a Flush message).
   * The server otherwise holds its answers until the Sync: after a failure later in the sequence
   * (a timeout, a lost connection), only a flushed answer tells the client this statement ran (a
   * COMMIT that landed: tagsBeforeFailure). Costs the server a send and the client a read.
   */
  readonly flush?: boolean;
}

/** A named statement as a prelude (prepared once per connection when preparedStatements is on). */
export function prelude(of: Statement, values?: readonly string[]): Prelude {
  return { name: of.name, text: of.text, values };
}

/** The rows' fields as they came, for a caller that only counts them or decodes them later. */
export const asFields: RowDecoder<RowFields> = (row) => row;

/**
 * The named preludes each connection has parsed, by its node-postgres Connection. node-postgres
 * marks its named statements parsed (parsedStatements) from the ParseComplete messages of the
 * active query, which cannot tell a prelude's from the statement's: so a prelude's name is recorded
 * here, and in parsedStatements too, once the query that parsed it answered without an error — a
 * name is parsed once per connection whether it runs as a prelude or as a statement (parsing a name
 * twice is an error). After an error the connection's preludes are sent unnamed for good
 * (`tainted`): which of that query's Parse messages the server ran is not known.
 */
const PREPARED_PRELUDES = new WeakMap<object, { readonly names: Set<string>; tainted: boolean }>();

/** Whether node-postgres has `name` parsed on `connection`, or its Parse sent. */
function isParsed(connection: PreparingConnection, name: string): boolean {
  return connection.parsedStatements?.[name] !== undefined || connection.submittedNamedStatements?.[name] !== undefined;
}

function preparedPreludes(connection: object): { readonly names: Set<string>; tainted: boolean } {
  let prepared = PREPARED_PRELUDES.get(connection);
  if (prepared === undefined) {
    prepared = { names: new Set(), tainted: false };
    PREPARED_PRELUDES.set(connection, prepared);
  }
  return prepared;
}

/** What Query#prepare writes to: node-postgres' Connection (internal; not in @types/pg). */
interface PreparingConnection {
  parse(message: { text: string; name: string; types: unknown[] }): void;
  bind(message: { portal: string; statement: string; values: readonly unknown[] }): void;
  execute(message: { portal: string; rows: number }): void;
  flush(): void;
  /** node-postgres' record of the named statements parsed on this connection (by name: text). */
  parsedStatements?: Record<string, string | undefined>;
  /** … and of those whose Parse is on its way (node-postgres' Query#prepare skips their Parse). */
  submittedNamedStatements?: Record<string, string | undefined>;
}

/** The Query's own hooks this class extends that @types/pg does not declare (node-postgres' internal API). */
const QUERY = pg.Query.prototype as unknown as {
  prepare(this: pg.Query, connection: PreparingConnection): void;
  handleCommandComplete(this: pg.Query, message: unknown, connection: unknown): void;
  handleReadyForQuery(this: pg.Query, connection: unknown): void;
  handleError(this: pg.Query, error: unknown, connection: unknown): void;
};

/**
 * A node-postgres query whose rows go straight from the wire into the caller's shape: each
 * DataRow's fields (the strings pg-protocol already cut out of the buffer) are given to `decode`,
 * with no row array or object of node-postgres' own, no per-column type parser, no 'row' event.
 * Why (issue 18, BENCHMARKS.md "Node CPU per drained message"): the claim is the one statement
 * that returns a row per message, and node-postgres' generic row building was a measurable share
 * of a drain's CPU.
 *
 * Preludes (statements sent first, in the same round trip: prepare()) make one round trip of what
 * would be several: the generic-plan settings before a claim, or a row-lock batch's acks, COMMIT,
 * the next BEGIN and settings before the next batch's claim (BENCHMARKS.md, issue 18 round seven).
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

  /** The statements sent before this one in the same message sequence (prepare()). */
  readonly preludes: readonly Prelude[];
  /** The command tags answered so far, the preludes' then the statement's, in order ('DELETE 100', 'COMMIT', …). */
  readonly commandTags: string[] = [];
  /** The named preludes this query parses ([name, text]), recorded for the connection once it answered (PREPARED_PRELUDES). */
  #parsing: [string, string][] = [];
  #connection: PreparingConnection | undefined;
  #prepared: { readonly names: Set<string>; tainted: boolean } | undefined;

  constructor(config: pg.QueryConfig, decode: RowDecoder<T>, done: Done, preludes: readonly Prelude[] = []) {
    // node-postgres keeps the callback and calls it with (error) or (null, result). With preludes
    // the query must take the extended protocol (prepare()) even when it has no name and no values:
    // node-postgres would send an unnamed `COMMIT` without values as a simple query, preludes unsent.
    super({ ...config, callback: done, ...(preludes.length > 0 ? { queryMode: 'extended' } : {}) } as pg.QueryConfig);
    this.#decode = decode;
    this.preludes = preludes;
  }

  /** A prelude's answer is still coming: rows and command tags are the preludes' until then. */
  get #inPrelude(): boolean {
    return this.commandTags.length < this.preludes.length;
  }

  /**
   * The preludes' Parse (a named one once per connection), Bind and Execute (unnamed portal) go
   * first, then the Query's own (Parse once per connection, Bind, Describe, Execute, Sync). One
   * round trip. Up to the Sync it is one implicit transaction unless a prelude begins or ends one
   * (BEGIN, COMMIT): what a prelude sets with set_config(…, true) or SET LOCAL holds when the
   * statement's Bind chooses its plan. A failing prelude fails the query (the server skips to the
   * Sync, running nothing after it), as a failing statement does. Only for an extended-protocol
   * query (one with values, as every DecodedQuery's): the Query's simple protocol would send its
   * text alone.
   */
  prepare(connection: PreparingConnection): void {
    if (this.preludes.length > 0) {
      const prepared = preparedPreludes(connection);
      this.#prepared = prepared;
      this.#connection = connection;
      // A named statement not parsed on this connection yet is parsed first, before any prelude
      // runs: node-postgres marks it parsed at the first ParseComplete of this query, which is then
      // its own, so a prelude that fails cannot leave it marked but never parsed. (An unnamed one
      // keeps its place: a prelude's unnamed Parse would replace it.)
      const { name, text } = this as { name?: string; text?: string };
      if (name !== undefined && name !== '' && text !== undefined && !isParsed(connection, name)) {
        connection.parse({ text, name, types: (this as { types?: unknown[] }).types ?? [] });
        if (connection.submittedNamedStatements !== undefined) connection.submittedNamedStatements[name] = text;
      }
      for (const prelude of this.preludes) {
        const name = prepared.tainted ? '' : (prelude.name ?? '');
        if (name === '' || !(prepared.names.has(name) || isParsed(connection, name))) {
          connection.parse({ text: prelude.text, name, types: [] });
          if (name !== '') this.#parsing.push([name, prelude.text]);
        }
        connection.bind({ portal: '', statement: name, values: prelude.values ?? [] });
        connection.execute({ portal: '', rows: 0 });
        if (prelude.flush === true) connection.flush();
      }
    }
    QUERY.prepare.call(this, connection);
  }

  /** A prelude's command tag ends its answer; the statement's own is the Query's too. */
  handleCommandComplete(message: unknown, connection: unknown): void {
    const prelude = this.#inPrelude;
    this.commandTags.push((message as { text?: string }).text ?? '');
    if (!prelude) QUERY.handleCommandComplete.call(this, message, connection);
  }

  handleReadyForQuery(connection: unknown): void {
    // The server answered without an error (after one, node-postgres ends the query at the
    // ErrorResponse: handleError): every Parse of it ran, even when a row failed to decode here.
    for (const [name, text] of this.#parsing) {
      this.#prepared?.names.add(name);
      const parsed = this.#connection?.parsedStatements;
      if (parsed !== undefined) parsed[name] = text;
    }
    this.#parsing = [];
    QUERY.handleReadyForQuery.call(this, connection);
  }

  handleError(error: unknown, connection: unknown): void {
    if (this.#parsing.length > 0 && this.#prepared !== undefined) this.#prepared.tainted = true;
    this.#parsing = [];
    QUERY.handleError.call(this, error, connection);
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
    // A prelude's rows (no RowDescription: it is not described) are not the statement's.
    if (this._canceledDueToError || this.#inPrelude) return;
    try {
      this.decodedRows.push(this.#decode(message.fields));
    } catch (error) {
      this._canceledDueToError = error;
    }
  }

  /**
   * Runs `config` on `client` (a Client of this package's node-postgres copy) and resolves with its
   * decoded rows. `timeoutMs`: node-postgres' query_timeout for this query. `preludes`: see prepare().
   */
  static async run<T>(
    client: pg.ClientBase,
    config: pg.QueryConfig,
    decode: RowDecoder<T>,
    timeoutMs: number,
    preludes?: readonly Prelude[],
  ): Promise<T[]> {
    return (await DecodedQuery.answer(client, config, decode, timeoutMs, preludes)).decodedRows;
  }

  /**
   * As run(), resolving with the query itself: its decoded rows and every command tag. With
   * preludes, what completed before a failure is told by tagsBeforeFailure(error).
   */
  static answer<T>(
    client: pg.ClientBase,
    config: pg.QueryConfig,
    decode: RowDecoder<T>,
    timeoutMs: number,
    preludes?: readonly Prelude[],
  ): Promise<DecodedQuery<T>> {
    return new Promise<DecodedQuery<T>>((resolve, reject) => {
      const query: DecodedQuery<T> = new DecodedQuery(
        config,
        decode,
        (error) => {
          if (error === undefined || error === null) {
            resolve(query);
            return;
          }
          if (query.preludes.length > 0) TAGS_BEFORE_FAILURE.set(error, [...query.commandTags]);
          reject(error);
        },
        preludes,
      );
      query.query_timeout = timeoutMs;
      client.query(query);
    });
  }
}

/**
 * The command tags a query with preludes had received when it failed, in order, by its error (the
 * error itself is node-postgres', unchanged: its `code` and fields still tell callers what failed).
 */
const TAGS_BEFORE_FAILURE = new WeakMap<object, readonly string[]>();

/**
 * What completed before `error` failed a query with preludes: the statements' command tags in
 * order (a caller whose message ran a COMMIT before a later statement failed learns from them
 * that the COMMIT landed); undefined for any other error.
 */
export function tagsBeforeFailure(error: unknown): readonly string[] | undefined {
  return typeof error === 'object' && error !== null ? TAGS_BEFORE_FAILURE.get(error) : undefined;
}

/** A client whose Query internals are the ones DecodedQuery extends: a pg.Client of this very copy. */
export function runsDecodedQueries(client: pg.ClientBase): boolean {
  return client instanceof pg.Client;
}
