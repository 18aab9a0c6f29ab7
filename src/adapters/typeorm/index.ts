/**
 * `txoutbox/typeorm`: publish through a TypeORM transaction on PostgreSQL: the `manager` of
 * `dataSource.transaction(async (manager) => …)`, or a `QueryRunner` after `startTransaction()`
 * (or its `.manager`).
 *
 * No runtime or type import of TypeORM (an optional peer): the handles are described
 * structurally. Wake-up: after commit. The transaction's QueryRunner hands out the node-postgres
 * client it runs on (`queryRunner.connect()`, public), and TypeORM's COMMIT travels on that
 * client, where txoutbox watches for it (architecture/data-layers.md#typeorm).
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';

/** What `queryRunner.query(text, values, true)` resolves to (TypeORM's `QueryResult`). */
interface StructuredResult {
  records?: unknown;
}

/** The slice of TypeORM's `QueryRunner` used here. */
export interface TypeORMQueryRunner {
  readonly isTransactionActive: boolean;
  readonly isReleased: boolean;
  /** Resolves to the driver's connection: the node-postgres `PoolClient` for `type: 'postgres'`. */
  connect(): Promise<unknown>;
  query(query: string, parameters: unknown[] | undefined, useStructuredResult: true): Promise<StructuredResult>;
}

/** The slice of TypeORM's `EntityManager` used here: a transaction's manager carries its QueryRunner. */
export interface TypeORMEntityManager {
  readonly queryRunner?: TypeORMQueryRunner | undefined;
}

const FIX =
  'pass the `manager` of dataSource.transaction(async (manager) => …), or a QueryRunner (or its .manager) after await queryRunner.startTransaction()';

function isQueryRunner(value: unknown): value is TypeORMQueryRunner {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { isTransactionActive?: unknown }).isTransactionActive === 'boolean' &&
    typeof (value as { query?: unknown }).query === 'function' &&
    typeof (value as { connect?: unknown }).connect === 'function'
  );
}

function refuse(got: string): never {
  throw new NotInTransactionError(`fromTypeORM() needs a TypeORM transaction, got ${got}. Fix: ${FIX}.`);
}

function queryRunnerOf(handle: unknown): TypeORMQueryRunner {
  if (handle === null || typeof handle !== 'object') return refuse(handle === null ? 'null' : typeof handle);
  if (isQueryRunner(handle)) return handle;
  if (!('queryRunner' in handle) && typeof (handle as { transaction?: unknown }).transaction !== 'function') {
    return refuse('neither an EntityManager nor a QueryRunner');
  }
  const runner = (handle as { queryRunner?: unknown }).queryRunner;
  if (runner === undefined || runner === null) {
    return refuse(
      'an EntityManager without a QueryRunner (dataSource.manager: each of its queries takes a pooled connection and autocommits)',
    );
  }
  if (!isQueryRunner(runner)) return refuse('an EntityManager whose queryRunner is not a TypeORM QueryRunner');
  return runner;
}

function assertActive(runner: TypeORMQueryRunner, what: string): void {
  if (runner.isReleased) refuse(`${what} whose QueryRunner is released (its transaction is over)`);
  if (!runner.isTransactionActive) {
    refuse(`${what} whose QueryRunner has no active transaction (its queries would autocommit)`);
  }
}

/**
 * Wraps a TypeORM transaction. Refused: `dataSource.manager` (no QueryRunner: every query
 * autocommits on a pooled connection), a QueryRunner (or its manager) before `startTransaction()`
 * or after its commit, rollback or release. The check is repeated before each statement, so a
 * wrapper kept past its transaction fails instead of autocommitting.
 *
 * Statements run through `queryRunner.query(text, values, true)`, TypeORM's structured result,
 * whose `records` are the rows whatever the command (the plain `manager.query()` answers
 * `[rows, count]` for UPDATE and DELETE). A nested `manager.transaction(…)` runs on the same
 * QueryRunner (a savepoint): its RELEASE SAVEPOINT is not a COMMIT, so nobody is woken before the
 * outermost transaction commits.
 */
export function fromTypeORM(handle: TypeORMEntityManager | TypeORMQueryRunner): TransactionAdapter {
  const runner = queryRunnerOf(handle);
  const what = runner === handle ? 'a QueryRunner' : 'an EntityManager';
  assertActive(runner, what);
  return {
    txoutboxAdapter: 'typeorm',
    query: async (text, values) => {
      assertActive(runner, what);
      const result = await runner.query(text, [...values], true);
      // Never read an unknown shape as "no rows": a publish would report a timer conflict (null).
      if (!Array.isArray(result.records)) {
        throw new TypeError(
          'queryRunner.query(…, true) resolved without `records`: txoutbox/typeorm supports TypeORM 1.x on the postgres driver.',
        );
      }
      return result.records as Record<string, unknown>[];
    },
    // The QueryRunner's own connection: a node-postgres PoolClient with the default `pg` driver
    // (txoutbox checks it is one whose COMMIT it can watch, else the NOTIFY rides in the statement).
    pgClient: async () => {
      const connection = await runner.connect();
      return connection !== null && typeof connection === 'object' ? connection : undefined;
    },
    // TypeORM clears isTransactionActive only once its ROLLBACK (or COMMIT) has answered: a publish
    // issued meanwhile passed assertActive and its INSERT, queued behind the ROLLBACK, ran on its
    // own. On the pg client txoutbox checks the transaction when node-postgres dispatches it.
    statementsOnPgClient: true,
  };
}
