import type pg from 'pg';

import { NotInTransactionError } from '../errors.js';
import { runsDecodedQueries } from '../util/decoded-query.js';
import type { Statement } from '../util/statement.js';
import {
  type Executor,
  isObservableClient,
  isPool,
  isTransactionAdapter,
  type TransactionAdapter,
  transactionStatus,
  type TransactionTarget,
} from './executor.js';
import { type CallTransaction, queryClassOf, queryInTransaction, watchCallTransaction } from './in-transaction-query.js';
import { SavepointGuardedQuery } from './savepoint-guarded-query.js';

/**
 * Where an after-commit wake-up can hook in (src/producer/wake-after-commit.ts):
 * - `pg`: a node-postgres client or pool, whose COMMIT this process can watch;
 * - `hook`: the data layer's own per-transaction after-commit callback;
 * - `none`: neither, so the statement itself calls pg_notify inside the transaction.
 */
export type WakeRoute =
  | { readonly kind: 'pg'; readonly client: object }
  | { readonly kind: 'hook'; readonly transaction: object; onCommit(callback: () => void): void }
  | { readonly kind: 'none' };

/** One producer call's way into the caller's transaction. */
export interface TransactionPort {
  /** Runs a producer statement in the caller's transaction and resolves to its rows. */
  run(stmt: Statement, values: unknown[]): Promise<readonly Record<string, unknown>[]>;
  readonly wake: WakeRoute;
}

const NO_WAKE: WakeRoute = { kind: 'none' };

/** A node-postgres client as queryInTransaction sees it: one that takes a query object. */
type Submitting = Parameters<typeof queryInTransaction>[0];

/**
 * A statement runner that keeps the statement inside the caller's transaction on a node-postgres
 * client, or undefined when there is none:
 * - its status read again when node-postgres dispatches it, and the call's transaction watched
 *   (in-transaction-query.ts), on a query of the client's own copy of node-postgres: this one's, or
 *   `Client.Query` of another copy (an application's own pg beside txoutbox's, which was not
 *   checked at all: a publish queued behind the caller's ROLLBACK ran on its own; review);
 * - in pipeline mode a query is sent before the ones ahead of it are answered, so the status is
 *   stale: the server checks instead (savepoint-guarded-query.ts; the statement goes unnamed), as
 *   for another copy that exposes no Query class.
 */
function guardedRun(
  client: object,
  operation: string,
  prepared: boolean,
  call?: CallTransaction,
): TransactionPort['run'] | undefined {
  const submitting = client as unknown as Submitting;
  const ours = runsDecodedQueries(client as pg.ClientBase);
  const queryClass = queryClassOf(client, ours);
  if (isObservableClient(client) && queryClass !== undefined) {
    return async (stmt, values) =>
      (await queryInTransaction(
        submitting,
        queryClass,
        operation,
        // Prepared (named) only on node-postgres: the name saves the parse and plan on every call.
        prepared ? { name: stmt.name, text: stmt.text, values } : { text: stmt.text, values },
        call,
      )) as Record<string, unknown>[];
  }
  if (transactionStatus(client) === undefined) return undefined;
  return (client as { pipeline?: unknown }).pipeline === true || !ours ? serverGuardedRun(submitting, operation) : undefined;
}

/** The statement behind a SAVEPOINT in the same pipeline: the server refuses it outside a transaction (savepoint-guarded-query.ts). */
function serverGuardedRun(submitting: Submitting, operation: string): TransactionPort['run'] {
  return async (stmt, values) => {
    const query = new SavepointGuardedQuery(stmt.text, values, operation);
    submitting.query(query as unknown as pg.Query);
    return (await query).rows as Record<string, unknown>[];
  };
}

/**
 * The rows of an executor's answer, which must be node-postgres' Result: anything else is not read
 * as "no rows" (a publish would report a timer conflict), and says what it was given.
 */
function rowsOf(result: unknown): Record<string, unknown>[] {
  const rows = (result as { rows?: unknown } | null | undefined)?.rows;
  if (Array.isArray(rows)) return rows as Record<string, unknown>[];
  throw new TypeError(
    `the executor's query() resolved to ${Array.isArray(result) ? 'an array' : typeof result}, not a node-postgres Result with \`rows\`: ` +
      'pass the node-postgres client of your transaction, or wrap your data layer’s transaction with its adapter (the statement may have run).',
  );
}

/**
 * For a node-postgres client passed in (not autocommit), taken when the producer call is made:
 * whether the transaction it was called in has ended since (in-transaction-query.ts
 * watchCallTransaction; release() it when the call settles). An adapter's client is reached only later (its pgClient() is async):
 * checked from then on, by status.
 */
export function transactionAtCall(target: unknown, autocommit: boolean): CallTransaction | undefined {
  if (autocommit || typeof target !== 'object' || target === null || isTransactionAdapter(target)) return undefined;
  return isObservableClient(target) ? watchCallTransaction(target) : undefined;
}

function executorPort(
  executor: Executor,
  prepared: boolean,
  inTransaction: string | undefined,
  call: CallTransaction | undefined,
): TransactionPort {
  const guarded = inTransaction === undefined ? undefined : guardedRun(executor, inTransaction, prepared, call);
  return {
    run:
      guarded ??
      (async (stmt, values) =>
        rowsOf(await executor.query(prepared ? { name: stmt.name, text: stmt.text, values } : { text: stmt.text, values }))),
    wake: { kind: 'pg', client: executor },
  };
}

/**
 * The client the adapter hands over is the transaction's own connection: a pool, or a connection
 * back to idle (the transaction ended; a publish kept past its callback, or not awaited), would run
 * the statement on its own — autocommitted, or inside whoever borrowed the connection next. Checked
 * before every statement of an adapter that reaches its pg client.
 */
function assertStillInTransaction(adapter: TransactionAdapter, client: object): void {
  if (isPool(client) || transactionStatus(client) === 'I') {
    throw new NotInTransactionError(
      `the ${adapter.txoutboxAdapter} transaction this adapter wraps has ended (its connection is ${isPool(client) ? 'a pool' : 'idle'}), so the outbox row would commit on its own. ` +
        'Fix: await every publish inside the transaction callback, and wrap the transaction again for each transaction.',
    );
  }
}

/** The pg client when its COMMIT can be watched, else the data layer's hook (pg-native, say), else none. */
function adapterRoute(adapter: TransactionAdapter, client: object | undefined): WakeRoute {
  if (client !== undefined && isObservableClient(client)) return { kind: 'pg', client };
  const hook = adapter.commitHook;
  return hook === undefined
    ? NO_WAKE
    : {
        kind: 'hook',
        transaction: hook.transaction,
        onCommit: (callback) => {
          hook.onCommit(callback);
        },
      };
}

/**
 * `wakeAfterCommit` is false when the wake-up will travel inside the transaction anyway
 * (`notify: 'in-transaction'`, or a stopped Outbox): the adapter's route is then not looked up.
 * `inTransaction` names the operation when it must run in the caller's transaction (no
 * `autocommit`): a node-postgres client's status is then checked again at dispatch
 * (in-transaction-query.ts).
 */
export async function openPort(
  target: TransactionTarget,
  prepared: boolean,
  wakeAfterCommit: boolean,
  inTransaction?: string,
  call?: CallTransaction,
): Promise<TransactionPort> {
  if (!isTransactionAdapter(target)) return executorPort(target, prepared, inTransaction, call);
  const client = await target.pgClient?.();
  if (client !== undefined) assertStillInTransaction(target, client);
  const direct = target.statementsOnPgClient === true ? onPgClient(client, inTransaction) : undefined;
  return {
    run: direct ?? (async (stmt, values) => adapterRows(target, await target.query(stmt.text, values, inTransaction))),
    wake: wakeAfterCommit ? adapterRoute(target, client) : NO_WAKE,
  };
}

/**
 * An adapter's answer, which must be the rows: a hand-written adapter that returned node-postgres'
 * Result (or a row count) read as no rows — a publish as a timer conflict, a batch as no ids, a
 * cancel as not cancelled, and no wake-up for rows that committed (review).
 */
function adapterRows(adapter: TransactionAdapter, answer: unknown): readonly Record<string, unknown>[] {
  if (Array.isArray(answer)) return answer as Record<string, unknown>[];
  throw new TypeError(
    `the ${adapter.txoutboxAdapter} adapter's query() resolved to ${answer === null ? 'null' : typeof answer}, not an array of rows: ` +
      'return the rows (node-postgres: result.rows) from TransactionAdapter.query (the statement may have run).',
  );
}

/**
 * An adapter's statement straight on its transaction's node-postgres client (this copy's), kept
 * in its transaction as for a client passed in (guardedRun; TransactionAdapter.statementsOnPgClient).
 * Through Drizzle's own call it was checked only when issued: an un-awaited publish whose layer
 * sent ROLLBACK meanwhile ran its INSERT after it, committed on its own (adapter-conformance.ts).
 * Undefined when there is no such client.
 */
function onPgClient(client: object | undefined, operation: string | undefined): TransactionPort['run'] | undefined {
  return client === undefined || operation === undefined ? undefined : guardedRun(client, operation, false);
}
