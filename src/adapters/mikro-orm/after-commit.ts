/**
 * MikroORM's after-commit hook, per transaction.
 *
 * MikroORM reports a COMMIT as an `afterTransactionCommit` event to the subscribers of the
 * EventManager of the EntityManager that committed: `em.transactional()`'s fork (which clones its
 * parent's EventManager, subscribers included) or the fork that called `em.commit()`. Subscribers
 * are registered per EventManager, not per transaction, so ONE subscriber (a module constant, which
 * `registerSubscriber` accepts once per EventManager and a clone carries along) dispatches each
 * event to the callbacks waiting on its `transaction`, kept in a WeakMap keyed by the transaction
 * context object.
 *
 * Why this holds:
 * - the event is dispatched after the driver's COMMIT resolved (`AbstractSqlConnection.commit`),
 *   never after a rollback (`afterTransactionRollback` instead), nor when the COMMIT or the final
 *   flush fails; it does follow a COMMIT that PostgreSQL answered with ROLLBACK (a caught failed
 *   statement left the transaction aborted): a spurious wake-up, one empty claim, never an early one;
 * - a nested transaction (savepoint) is a distinct context object carrying `savepointName`, whose
 *   event (at RELEASE SAVEPOINT) matches no key here; the adapter only hooks contexts without
 *   `savepointName`, the outermost ones;
 * - an entry whose transaction rolled back is never dispatched and goes with its context (WeakMap).
 * A wake-up is missed, never early, if the commit is reported on an EventManager the subscriber
 * is not on; polling then delivers the row.
 */

/** What the subscriber receives (MikroORM's `TransactionEventArgs`, the part read here). */
interface CommitEventArgs {
  readonly transaction?: object;
}

/** The slice of MikroORM's `EventManager` used here. */
export interface MikroOrmEventManagerLike {
  registerSubscriber(subscriber: { afterTransactionCommit(args: CommitEventArgs): void }): void;
}

const waiting = new WeakMap<object, (() => void)[]>();

const COMMIT_SUBSCRIBER = {
  afterTransactionCommit(args: CommitEventArgs): void {
    const transaction = args.transaction;
    if (transaction === undefined) return;
    const callbacks = waiting.get(transaction);
    if (callbacks === undefined) return;
    waiting.delete(transaction);
    for (const callback of callbacks) {
      // A wake-up must never turn the caller's committed transaction into a rejected promise:
      // MikroORM awaits its subscribers inside em.transactional() / em.commit().
      try {
        callback();
      } catch {
        // Nothing to undo; polling delivers the rows this wake-up was for.
      }
    }
  },
};

/** The adapter's `commitHook` for the outermost transaction `transaction`, reported through `events`. */
export function afterCommitOf(
  events: MikroOrmEventManagerLike,
  transaction: object,
): { readonly transaction: object; onCommit(callback: () => void): void } {
  return {
    transaction,
    onCommit: (callback) => {
      events.registerSubscriber(COMMIT_SUBSCRIBER);
      let callbacks = waiting.get(transaction);
      if (callbacks === undefined) {
        callbacks = [];
        waiting.set(transaction, callbacks);
      }
      callbacks.push(callback);
    },
  };
}
