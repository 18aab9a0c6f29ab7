import { NotInTransactionError } from '../errors.js';
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

function executorPort(executor: Executor, prepared: boolean): TransactionPort {
  return {
    // Prepared (named) only on node-postgres: the name saves the parse and plan on every call.
    run: async (stmt, values) =>
      (await executor.query(prepared ? { name: stmt.name, text: stmt.text, values } : { text: stmt.text, values }))
        .rows as Record<string, unknown>[],
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
 */
export async function openPort(target: TransactionTarget, prepared: boolean, wakeAfterCommit: boolean): Promise<TransactionPort> {
  if (!isTransactionAdapter(target)) return executorPort(target, prepared);
  const client = await target.pgClient?.();
  if (client !== undefined) assertStillInTransaction(target, client);
  return {
    run: (stmt, values) => target.query(stmt.text, values),
    wake: wakeAfterCommit ? adapterRoute(target, client) : NO_WAKE,
  };
}
