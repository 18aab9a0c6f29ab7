/**
 * `txoutbox/knex`: publish through a Knex transaction (architecture/data-layers.md#knex).
 *
 * ```ts
 * await knex.transaction(async (trx) => {
 *   await trx('orders').insert(order);
 *   await outbox.publish(fromKnex(trx), 'order.created', order);
 * });
 * ```
 *
 * No runtime dependency on knex (an optional peer): the slice of its transaction used here is
 * declared structurally below.
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';
import { toQuestionMarks } from '../shared/positional-placeholders.js';
import { resultRows } from '../shared/result-rows.js';
import { snakeCaseColumns } from '../shared/snake-case-columns.js';

/** What `fromKnex` reads of a Knex transaction (`Knex.Transaction` fits it, so does the `knex` instance, refused at run time). */
export interface KnexTransactionLike {
  /** True on every transaction object Knex hands out, nested ones too; absent on the `knex` instance. */
  readonly isTransaction?: boolean;
  /** True once it (or an outer transaction) committed or rolled back. */
  isCompleted?(): boolean;
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<unknown>;
  /** The transaction's own client: `acquireConnection()` resolves to its one connection. */
  readonly client?: unknown;
}

const FIX =
  'Fix: pass the `trx` of knex.transaction(async (trx) => …), of `const trx = await knex.transaction()`, or of a nested trx.transaction(…).';

function refusal(handle: unknown): string | undefined {
  if (handle === null || (typeof handle !== 'object' && typeof handle !== 'function')) {
    return `fromKnex() needs a Knex transaction, got ${handle === null ? 'null' : typeof handle}. ${FIX}`;
  }
  const candidate = handle as Partial<KnexTransactionLike> & { then?: unknown; transaction?: unknown };
  if (candidate.isTransaction === true && typeof candidate.raw === 'function') {
    return candidate.isCompleted?.() === true
      ? `fromKnex() was given a Knex transaction that has already committed or rolled back: a statement through it would fail. ${FIX}`
      : undefined;
  }
  if (typeof candidate.raw === 'function' && typeof candidate.transaction === 'function') {
    return `fromKnex() was given the knex instance, not a transaction: each statement through it commits on its own, so the outbox row would commit without your data. ${FIX}`;
  }
  if (typeof candidate.then === 'function') {
    return `fromKnex() was given a promise: await knex.transaction() first, or publish inside knex.transaction(async (trx) => …). ${FIX}`;
  }
  return `fromKnex() needs a Knex transaction (an object with isTransaction: true), got ${typeof handle === 'function' ? 'a function' : 'an object'} without one. ${FIX}`;
}

/**
 * The node-postgres client under the transaction, for the after-commit wake-up. Knex builds a
 * client per transaction whose `acquireConnection()` resolves to the transaction's own connection
 * and whose `releaseConnection()` does nothing (knex 3.3, lib/execution/transaction.js,
 * makeTxClient; nested transactions get one over the same connection): nothing is taken from the
 * pool. Guarded by `transacting`, which only that client has: on the root client
 * `acquireConnection()` would check out a connection nobody releases. Undocumented but stable
 * since Knex 0.x; when it is missing the wake-up rides in the statement instead.
 */
async function transactionConnection(client: unknown): Promise<object | undefined> {
  const trxClient = client as { transacting?: unknown; acquireConnection?: unknown } | null | undefined;
  if (trxClient?.transacting !== true || typeof trxClient.acquireConnection !== 'function') return undefined;
  const connection: unknown = await (trxClient.acquireConnection as () => Promise<unknown>).call(trxClient);
  return connection !== null && typeof connection === 'object' ? connection : undefined;
}

/**
 * Wraps a Knex transaction for `outbox.publish`, `publishBatch`, `cancelTimer` and
 * `fetchUnprocessed`. Throws `NotInTransactionError` for the `knex` instance, a finished
 * transaction or anything else that is not a Knex transaction.
 *
 * Statements go through `trx.raw` (Knex's query events and logging see them) with `$n` rewritten
 * to `?`. The wake-up is after commit: the transaction's pg client is watched for its COMMIT; a
 * nested transaction's commit is a RELEASE SAVEPOINT, which is not mistaken for it.
 */
export function fromKnex(trx: KnexTransactionLike): TransactionAdapter {
  const refused = refusal(trx);
  if (refused !== undefined) throw new NotInTransactionError(refused);
  return {
    txoutboxAdapter: 'knex',
    query: async (text, values) => {
      const positional = toQuestionMarks(text, values);
      return snakeCaseColumns(resultRows(await trx.raw(positional.text, positional.values), 'knex', 'trx.raw()'));
    },
    pgClient: () => transactionConnection(trx.client),
  };
}
