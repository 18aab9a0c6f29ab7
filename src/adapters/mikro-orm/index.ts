/**
 * `txoutbox/mikro-orm`: publish through a MikroORM transaction (architecture/data-layers.md,
 * "MikroORM").
 *
 * No import of @mikro-orm/*, not even a type: it is an optional peer, and this file's declarations
 * must compile without it. The interfaces below are the slice of MikroORM 7's SQL EntityManager
 * the adapter uses; `SqlEntityManager` fits them as it is.
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';
import { toQuestionMarks } from '../shared/positional-placeholders.js';
import { afterCommitOf, type MikroOrmEventManagerLike } from './after-commit.js';

export type { MikroOrmEventManagerLike } from './after-commit.js';

/** The slice of MikroORM's SQL connection used here (`AbstractSqlConnection.execute`). */
export interface MikroOrmConnectionLike {
  execute(query: string, params: readonly unknown[], method: 'all', ctx: never): Promise<unknown>;
}

/** The slice of MikroORM's `EntityManager` used here. */
export interface MikroOrmEntityManagerLike {
  isInTransaction(): boolean;
  /** The driver's transaction object (a Kysely controlled transaction in 7, a Knex one in 6). */
  getTransactionContext(): object | undefined;
  getConnection(type: 'write'): MikroOrmConnectionLike;
  getEventManager(): MikroOrmEventManagerLike;
}

/** What MikroORM's transaction context may say about itself (Kysely's ControlledTransaction; MikroORM's savepoint mark). */
interface TransactionContextLike {
  readonly isCommitted?: boolean;
  readonly isRolledBack?: boolean;
  readonly savepointName?: string;
}

const FIX =
  'Fix: pass the `em` of em.transactional(async (em) => …), or of a fork after `await em.begin()` (const em = orm.em.fork(); await em.begin(); …; await em.commit()).';

function refuse(got: string): never {
  throw new NotInTransactionError(
    `fromMikroORM() needs an EntityManager inside a transaction, got ${got}: the outbox row would commit without your data. ${FIX}`,
  );
}

/**
 * The EntityManager that holds the transaction. MikroORM's global `orm.em` resolves, on every
 * call, to the fork of the transaction (or request) running in the current async context;
 * `getContext(false)` is that resolution (each public method starts with it). The wake-up must
 * subscribe to that fork's EventManager: the commit event is dispatched there, not on the global one.
 */
function owner(em: MikroOrmEntityManagerLike): MikroOrmEntityManagerLike {
  const getContext = (em as { getContext?: unknown }).getContext;
  return typeof getContext === 'function' ? (getContext.call(em, false) as MikroOrmEntityManagerLike) : em;
}

/**
 * Wraps the `em` MikroORM hands you inside a transaction so `outbox.publish(…)` (and publishBatch,
 * cancelTimer, fetchUnprocessed) runs in it:
 *
 * ```ts
 * await orm.em.transactional(async (em) => {
 *   em.persist(order);
 *   await outbox.publish(fromMikroORM(em), 'order.created', { total: order.total });
 * });
 * ```
 *
 * The transaction is the one open when the adapter is built. Refuses an EntityManager outside a
 * transaction (`em.isInTransaction()` false: each flush and query commits on its own) with
 * `NotInTransactionError`.
 *
 * Wake-up: after commit, through MikroORM's `afterTransactionCommit` event for the outermost
 * transaction. Inside a nested transaction (a savepoint) the NOTIFY rides in the statement instead:
 * MikroORM does not say which outermost transaction a savepoint belongs to.
 */
export function fromMikroORM(em: MikroOrmEntityManagerLike): TransactionAdapter {
  // Checked at run time too: a JavaScript caller, or a cast, can hand over anything.
  const handle: unknown = em;
  if (
    handle === null ||
    typeof handle !== 'object' ||
    typeof (handle as { isInTransaction?: unknown }).isInTransaction !== 'function'
  ) {
    refuse(handle === null ? 'null' : typeof handle === 'object' ? 'an object without isInTransaction()' : typeof handle);
  }
  const holder = owner(em);
  const ctx = holder.getTransactionContext() as (object & TransactionContextLike) | undefined;
  if (!holder.isInTransaction() || ctx === undefined) {
    refuse('an EntityManager outside any transaction (em.isInTransaction() is false)');
  }
  if (ctx.isCommitted === true) refuse('an EntityManager whose transaction is already committed');
  if (ctx.isRolledBack === true) refuse('an EntityManager whose transaction is already rolled back');
  const connection = holder.getConnection('write');
  // MikroORM 7's contexts are Kysely ControlledTransactions (isCommitted is a boolean); a nested
  // transaction's also carries savepointName. Anything else (MikroORM 6's Knex transaction, whose
  // nesting is not marked the same way) is not known to be outermost: no hook, the NOTIFY rides in
  // the statement.
  const outermost = typeof ctx.isCommitted === 'boolean' && ctx.savepointName === undefined;
  return {
    txoutboxAdapter: 'mikro-orm',
    query: async (text, values) => {
      // MikroORM binds `?` (it inlines each value as a quoted literal); txoutbox writes `$n`.
      const positional = values.length === 0 ? { text, values: [] } : toQuestionMarks(text, values);
      const rows = await connection.execute(positional.text, positional.values, 'all', ctx as never);
      return rows as Record<string, unknown>[];
    },
    ...(outermost ? { commitHook: afterCommitOf(holder.getEventManager(), ctx) } : {}),
  };
}
