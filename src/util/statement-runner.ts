import type pg from 'pg';

import { beforeDeadline } from './deadline.js';
import { DecodedQuery, type Prelude, type RowDecoder, type RowFields, runsDecodedQueries } from './decoded-query.js';
import { GENERIC_PLAN_PRELUDE } from './generic-plan.js';
import type { Statement } from './statement.js';

/**
 * Runs the subscriber's statements on the pool: named (prepared once per connection) when
 * preparedStatements is on, and bounded by queryTimeoutMs twice over:
 * - the checkout: a pool given without connectionTimeoutMillis waits forever for a connect to a
 *   silent server; past the deadline the statement fails, and a connection that arrives later goes
 *   back unused (the statement is never sent late);
 * - the statement: one on a half-open connection (a peer gone without FIN or RST; TCP keepalive
 *   needs minutes to notice) fails by node-postgres' query_timeout. On a pool txoutbox owns the
 *   server cancels first (statement_timeout, owned-pool.ts); on a pool you pass in, a statement
 *   given up on here may still run and commit on the server later (a claim then costs its rows one
 *   lease and one counted delivery), unless that pool sets statement_timeout too.
 * A failed statement's connection is discarded, as pg.Pool#query does: the next checkout reconnects.
 * So the claim loop, the acker and stop() never wait on a dead connection silently (issue 13, item 7).
 */
const ignore = (): void => undefined;

const asText = (value: string): string => value;
/** Every column as the text the server sent (a textRows statement's rows). */
const TEXT_TYPES = { getTypeParser: () => asText };

/**
 * The query config of `statement`: named when prepared, arrays of texts for a textRows statement
 * (or when `texts`: a decoded() statement).
 */
function configOf(statement: Statement, prepared: boolean, values: unknown[], texts = false): pg.QueryConfig {
  const { name, text } = statement;
  // rowMode is read per query by node-postgres; @types/pg has it on QueryArrayConfig only.
  const config: pg.QueryConfig & { rowMode?: 'array' } = prepared ? { name, text, values } : { text, values };
  if (texts || statement.textRows === true) {
    config.rowMode = 'array';
    config.types = TEXT_TYPES;
  }
  return config;
}

/** How much longer the client waits than the server's statement_timeout. */
const SERVER_FIRST_MS = 1_000;

export class StatementRunner {
  readonly #pool: pg.Pool;
  readonly #prepared: boolean;
  readonly #queryTimeoutMs: number;

  constructor(pool: pg.Pool, prepared: boolean, queryTimeoutMs: number) {
    this.#pool = pool;
    this.#prepared = prepared;
    this.#queryTimeoutMs = queryTimeoutMs;
  }

  async run<R extends pg.QueryResultRow = pg.QueryResultRow>(
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const config = this.bounded(configOf(statement, this.#prepared, values));
    return await this.withClient((client) => client.query<R>(config));
  }

  /**
   * Runs `statement` (its rows read as texts: a textRows statement) and returns its rows decoded by
   * `decode`, one call per row as it arrives (DecodedQuery). Named and bounded as run(). On a pool of
   * another node-postgres copy (or pg-native) the rows are read as arrays of texts and decoded after:
   * the same rows, node-postgres' own row building paid.
   */
  async decoded<T>(statement: Statement, values: unknown[], decode: RowDecoder<T>): Promise<T[]> {
    return await this.withClient((client) => this.decodedOn(client, statement, values, decode));
  }

  /** decoded() on a client the caller holds (a row-lock batch's transaction). The caller releases it. */
  async decodedOn<T>(client: pg.ClientBase, statement: Statement, values: unknown[], decode: RowDecoder<T>): Promise<T[]> {
    const config = configOf(statement, this.#prepared, values, true);
    const timeoutMs = this.#queryTimeoutMs + SERVER_FIRST_MS;
    if (runsDecodedQueries(client)) {
      // A plannedOnce statement is sent after the generic-plan settings (statement.ts plannedOnce);
      // unprepared, it has no cached plan to reuse, and is planned per execution whatever they say.
      const preludes = statement.plannedOnce === true && this.#prepared ? [{ text: GENERIC_PLAN_PRELUDE }] : undefined;
      return await DecodedQuery.run(client, config, decode, timeoutMs, preludes);
    }
    const result = await client.query<RowFields>({ ...config, query_timeout: timeoutMs } as pg.QueryConfig);
    return result.rows.map(decode);
  }

  /**
   * `preludes`, then `statement` decoded as by decodedOn(), in one round trip (DecodedQuery's
   * preludes) on a client the caller holds: the statement's rows and the command tags of all, in order.
   * Named preludes are prepared once per connection when preparedStatements is on, sent unnamed
   * otherwise. Undefined, with nothing sent, on a client that cannot run DecodedQuery (another
   * node-postgres copy, pg-native): the caller sends its statements one by one instead.
   * A failure may leave the connection anywhere in the sequence (inside a transaction a prelude
   * began, say): the caller discards it, as after any failed statement of its own.
   */
  /** Whether pipelineOn() runs on `client` (a client of this package's node-postgres copy). */
  pipelines(client: pg.ClientBase): boolean {
    return runsDecodedQueries(client);
  }

  async pipelineOn<T>(
    client: pg.ClientBase,
    preludes: readonly Prelude[],
    statement: Statement,
    values: unknown[],
    decode: RowDecoder<T>,
  ): Promise<{ readonly rows: T[]; readonly tags: readonly string[] } | undefined> {
    if (!runsDecodedQueries(client)) return undefined;
    const steps = this.#prepared ? preludes : preludes.map(({ text, values: texts, flush }) => ({ text, values: texts, flush }));
    const query = await DecodedQuery.answer(
      client,
      configOf(statement, this.#prepared, values, true),
      decode,
      this.#queryTimeoutMs + SERVER_FIRST_MS,
      steps,
    );
    return { rows: query.decodedRows, tags: query.commandTags };
  }

  /**
   * Runs `statement` on a client the caller holds (a transactional delivery's, whose transaction
   * it joins): named when preparedStatements is on, bounded like run(). The caller releases it.
   */
  async runOn<R extends pg.QueryResultRow = pg.QueryResultRow>(
    client: pg.PoolClient,
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return await client.query<R>(this.bounded(configOf(statement, this.#prepared, values)));
  }

  /**
   * Runs `work` on a client checked out within queryTimeoutMs, then releases it: back to the pool,
   * or discarded when `work` failed (a failed statement may have left it mid-transaction or dead).
   * Give each statement of `work` its bound with bounded().
   */
  async withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.checkout();
    // A connection that dies mid-statement also emits 'error' on its client: unheard, that event
    // would crash the process. The statement fails too, and that failure is what is reported.
    client.on('error', ignore);
    try {
      const result = await work(client);
      client.removeListener('error', ignore);
      client.release();
      return result;
    } catch (error) {
      // Kept: a connection the server terminated emits its FATAL as a client 'error' too, after
      // the statement's own failure, while it is being destroyed. Removed first, that event was
      // unheard and crashed the process (CI, pg_terminate_backend mid-run; reproduced 4 in 300).
      client.release(true);
      throw error;
    }
  }

  /**
   * A statement's config with its client-side bound: a second past the server's statement_timeout
   * (owned pools), so the server cancels first and the connection stays usable; it fires alone
   * only when the server cannot answer (a dead connection). For callers that run several
   * statements on one checked-out client.
   */
  bounded<C extends pg.QueryConfig>(config: C): C & { query_timeout: number } {
    // query_timeout is read per query by node-postgres but missing from @types/pg's QueryConfig.
    return { ...config, query_timeout: this.#queryTimeoutMs + SERVER_FIRST_MS };
  }

  /** Checkouts waiting for a connection of the pool (a row-lock loop gives its connection back then instead of keeping it). */
  get waiting(): number {
    return this.#pool.waitingCount;
  }

  /**
   * A client from the pool within queryTimeoutMs, or an error; one that arrives later goes back
   * unused. Release it with an error after a failed statement (the connection is then discarded).
   */
  async checkout(): Promise<pg.PoolClient> {
    const pending = this.#pool.connect();
    return await beforeDeadline(pending, this.#queryTimeoutMs, () => {
      pending.then(
        (late) => {
          late.release();
        },
        () => undefined,
      );
      throw new Error(`no database connection within queryTimeoutMs (${this.#queryTimeoutMs} ms)`);
    });
  }
}
