/**
 * `txoutbox/sequelize`: publish through a Sequelize 6 transaction (architecture/data-layers.md#sequelize).
 *
 * ```ts
 * await sequelize.transaction(async (t) => {
 *   const order = await Order.create({ total: 42 }, { transaction: t });
 *   await outbox.publish(fromSequelize(t), 'order.created', { orderId: order.id });
 * });
 * ```
 *
 * No runtime dependency on sequelize (an optional peer): the slice of its `Transaction` used here
 * is declared structurally below; `sequelize`, `connection`, `parent` and `finished` exist on
 * every v6 transaction but not in its typings, so they are read at run time.
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';

/** What `fromSequelize` needs to see in its type: Sequelize's `Transaction` fits it. */
export interface SequelizeTransactionLike {
  commit(): Promise<void>;
  rollback(): Promise<void>;
  afterCommit(fn: () => void): void;
}

/** The untyped part of a v6 Transaction (lib/transaction.js). */
interface TransactionInternals extends SequelizeTransactionLike {
  readonly sequelize?: { query(sql: string, options: object): Promise<unknown> };
  /** The driver connection (a node-postgres Client on the pg dialect), the parent's for a savepoint. */
  readonly connection?: unknown;
  /** Set on a savepoint transaction: `sequelize.transaction({ transaction: t })`. */
  readonly parent?: TransactionInternals | null;
  /** 'commit' or 'rollback' once finished. */
  readonly finished?: string;
}

const FIX =
  'Fix: pass the `t` of sequelize.transaction(async (t) => …) or of `const t = await sequelize.transaction()` (a savepoint `sequelize.transaction({ transaction: t })` works too).';

function refusal(handle: unknown): string | undefined {
  if (handle === null || (typeof handle !== 'object' && typeof handle !== 'function')) {
    return `fromSequelize() needs a Sequelize transaction, got ${handle === null ? 'null' : typeof handle}. ${FIX}`;
  }
  const candidate = handle as Partial<TransactionInternals> & { transaction?: unknown; query?: unknown; then?: unknown };
  if (
    typeof candidate.afterCommit === 'function' &&
    typeof candidate.commit === 'function' &&
    typeof candidate.sequelize?.query === 'function'
  ) {
    if (candidate.finished !== undefined) {
      return `fromSequelize() was given a transaction that has already finished (${candidate.finished}): a statement through it would fail. ${FIX}`;
    }
    if (candidate.connection === undefined || candidate.connection === null) {
      return `fromSequelize() was given a transaction that has not started (it has no connection; \`new Transaction()\` does not begin one). ${FIX}`;
    }
    return undefined;
  }
  if (typeof candidate.query === 'function' && typeof candidate.transaction === 'function') {
    return `fromSequelize() was given the Sequelize instance, not a transaction: each query on it commits on its own, so the outbox row would commit without your data. ${FIX}`;
  }
  if (typeof candidate.then === 'function') {
    return `fromSequelize() was given a promise: await sequelize.transaction() first. ${FIX}`;
  }
  return `fromSequelize() needs a Sequelize transaction (with afterCommit, commit and its sequelize), got ${typeof handle === 'function' ? 'a function' : 'an object'} without them. ${FIX}`;
}

/**
 * Sequelize scans the text for bind parameters itself (`/\B\$(\$|\w+)/`): `$n` stays `$n` (the
 * values go to node-postgres as they are), `$$` becomes `$`, and `$name` must be a key of the
 * bind object or the query throws. A `$` that is not a `$n` placeholder is doubled so it reaches
 * PostgreSQL unchanged (a dollar-quoted body, say); one right after a word character is not
 * scanned by Sequelize and is left alone. None of txoutbox's statements has one today.
 */
function escapeStrayDollars(text: string): string {
  return text.replace(/(?<!\w)\$(?!\d)/g, () => '$$');
}

/**
 * The connection under the transaction, for the core to watch when it is node-postgres' JS client
 * (src/producer/transaction-port.ts); `pg-native` (`native: true`) cannot be watched, and the
 * adapter's after-commit hook is used instead.
 */
function connectionOf(connection: unknown): object | undefined {
  return connection !== null && typeof connection === 'object' ? connection : undefined;
}

/** A savepoint's afterCommit runs when the savepoint "commits" (it sends nothing): only the outermost one's follows COMMIT. */
function outermost(t: TransactionInternals): TransactionInternals {
  let current = t;
  while (current.parent !== undefined && current.parent !== null) current = current.parent;
  return current;
}

/**
 * Wraps a Sequelize 6 transaction for `outbox.publish`, `publishBatch`, `cancelTimer` and
 * `fetchUnprocessed`. Throws `NotInTransactionError` for the Sequelize instance, a finished or
 * unstarted transaction, or anything else.
 *
 * Statements go through `t.sequelize.query` with `$n` bind parameters. Wake-up after commit: the
 * COMMIT of the node-postgres client under `t` is watched; where that client cannot be watched,
 * through `afterCommit` on the outermost transaction (Sequelize runs those hooks even when COMMIT
 * failed: a spurious wake-up then, which is why the client comes first).
 */
export function fromSequelize(t: SequelizeTransactionLike): TransactionAdapter {
  const refused = refusal(t);
  if (refused !== undefined) throw new NotInTransactionError(refused);
  const transaction = t as TransactionInternals;
  // Checked by refusal().
  const sequelize = transaction.sequelize as NonNullable<TransactionInternals['sequelize']>;
  const root = outermost(transaction);
  return {
    txoutboxAdapter: 'sequelize',
    query: async (text, values) =>
      // type SELECT with raw: the result rows as plain objects, for INSERT/DELETE … RETURNING too
      // (RAW would resolve to [rows, result]). supportsSearchPath: false keeps a
      // `prependSearchPath` dialect option from prefixing a SET statement, which bind parameters
      // do not allow.
      (await sequelize.query(escapeStrayDollars(text), {
        bind: [...values],
        transaction,
        type: 'SELECT',
        raw: true,
        plain: false,
        nest: false,
        supportsSearchPath: false,
      })) as Record<string, unknown>[],
    pgClient: () => Promise.resolve(connectionOf(transaction.connection)),
    commitHook: {
      transaction: root,
      onCommit: (callback) => {
        root.afterCommit(() => {
          callback();
        });
      },
    },
  };
}
