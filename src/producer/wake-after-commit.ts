import { isObservableClient, isPool, type ProtocolEvents, protocolEvents, transactionStatus } from './executor.js';
import type { WakeRoute } from './transaction-port.js';
import type { WakeNotifier } from './wake-notifier.js';

/**
 * Wake-up after commit (architecture/decisions/0004-wake-up-after-commit.md).
 *
 * A transaction that calls pg_notify takes PostgreSQL's cluster-wide notify lock at COMMIT and
 * holds it through its WAL flush, so notifying publishers commit one at a time (W1: ~80 % of
 * backend time in Lock:object). In 'after-commit' mode the caller's transaction sends no NOTIFY:
 * publish watches the caller's node-postgres connection for the COMMIT, and the Outbox's
 * WakeNotifier then sends it from a connection of its own, coalesced.
 *
 * The promise kept: a wake-up is sent only after a COMMIT that followed the publish on the same
 * connection — never before the row is visible. It may be spurious (a publish discarded by
 * ROLLBACK TO SAVEPOINT or ROLLBACK AND CHAIN still wakes the queue at the next COMMIT: one empty
 * fetch), and it may be missing (the process dies between COMMIT and NOTIFY, the notifier's
 * connection is down, PREPARE TRANSACTION): polling delivers those rows, as it always did when a
 * NOTIFY was lost.
 */

/** How `publish` wakes listeners. */
export type NotifyMode = 'after-commit' | 'in-transaction';

/** Wake-ups owed by one transaction, per notifier (one per Outbox), each payload once. */
class OwedWakeUps {
  readonly #owed = new Map<WakeNotifier, Set<string>>();

  add(notifier: WakeNotifier, payload: string): void {
    let payloads = this.#owed.get(notifier);
    if (payloads === undefined) {
      payloads = new Set();
      this.#owed.set(notifier, payloads);
    }
    payloads.add(payload);
  }

  clear(): void {
    this.#owed.clear();
  }

  release(): void {
    const owed = [...this.#owed];
    this.#owed.clear();
    for (const [notifier, payloads] of owed) for (const payload of payloads) notifier.request(payload);
  }
}

/**
 * The wake-ups owed by the open transaction of one connection, released when it commits. One per
 * connection, kept for the connection's life (a WeakMap entry) and armed only while a transaction
 * owes a wake-up: its three listeners are attached on the first publish of a transaction and
 * detached when the transaction ends, so a connection never carries more than one extra listener
 * per event, and none between transactions. 1,000 publishes in one transaction, from any number
 * of Outboxes, share it.
 *
 * Reads the messages node-postgres already parses. A CommandComplete tagged `COMMIT` (`COMMIT`,
 * `END`, `COMMIT AND CHAIN`) and then ReadyForQuery: the transaction committed → wake. PostgreSQL
 * tags a COMMIT of a failed transaction `ROLLBACK`, and a COMMIT that fails (deferred constraint,
 * serialization failure) answers with an error: both, like ROLLBACK and PREPARE TRANSACTION, end
 * at ReadyForQuery `I` without a `COMMIT` tag → drop. The connection closing → drop. A `ROLLBACK`
 * tag followed by ReadyForQuery `T` is either ROLLBACK TO SAVEPOINT or ROLLBACK AND CHAIN, which
 * the protocol does not tell apart → keep (a possible spurious wake-up, never a missing one).
 */
class CommitWatch {
  readonly #events: ProtocolEvents;
  readonly #owed = new OwedWakeUps();
  #armed = false;
  #committed = false;
  readonly #onCommandComplete: (message: { text?: string }) => void;
  readonly #onReadyForQuery: (message: { status?: string }) => void;
  readonly #onEnd: () => void;

  constructor(events: ProtocolEvents) {
    this.#events = events;
    // Bound once per connection, not per transaction.
    this.#onCommandComplete = (message) => {
      if (message.text === 'COMMIT') this.#committed = true;
    };
    this.#onReadyForQuery = (message) => {
      if (this.#committed) this.#release();
      else if (message.status === 'I') this.#disarm();
    };
    this.#onEnd = () => {
      this.#disarm();
    };
  }

  add(notifier: WakeNotifier, payload: string): void {
    if (!this.#armed) {
      this.#armed = true;
      this.#committed = false;
      this.#events.on('commandComplete', this.#onCommandComplete);
      this.#events.on('readyForQuery', this.#onReadyForQuery);
      this.#events.on('end', this.#onEnd);
    }
    this.#owed.add(notifier, payload);
  }

  #release(): void {
    this.#detach();
    this.#owed.release();
  }

  #disarm(): void {
    this.#detach();
    this.#owed.clear();
  }

  #detach(): void {
    this.#armed = false;
    this.#events.removeListener('commandComplete', this.#onCommandComplete);
    this.#events.removeListener('readyForQuery', this.#onReadyForQuery);
    this.#events.removeListener('end', this.#onEnd);
  }
}

const watches = new WeakMap<ProtocolEvents, CommitWatch>();

/**
 * How one publish wakes listeners: `'in-transaction'` → the statement calls pg_notify itself;
 * `'after-statement'` → call wakeAfterStatement() right after the statement returned a due row
 * (in the same run of microtasks).
 */
export type WakePlan = 'in-transaction' | 'after-statement';

/**
 * Chosen before the statement is sent, because it picks the statement:
 * - `in-transaction` mode, or the Outbox stopped (its notifier is closed) → pg_notify in the statement;
 * - a pool (`autocommit: true`), a node-postgres client, or a data layer's after-commit hook →
 *   after the statement (wakeAfterStatement);
 * - anything else (a data layer on another driver without a hook, a wrapper without `connection`,
 *   pg < 8.13 without getTransactionStatus, a `pipeline: true` client) → pg_notify in the
 *   statement, always correct.
 */
export function planWake(mode: NotifyMode, route: WakeRoute, notifier: WakeNotifier): WakePlan {
  if (mode === 'in-transaction' || notifier.stopped) return 'in-transaction';
  switch (route.kind) {
    case 'pg':
      return isPool(route.client) || isObservableClient(route.client) ? 'after-statement' : 'in-transaction';
    case 'hook':
      return 'after-statement';
    case 'none':
      return 'in-transaction';
  }
}

/**
 * After a statement planned 'after-statement' returned a row (`payload`: its queue when it is due,
 * or the announcement of when it will be, queues/channel-signal.ts):
 * - a pool: the statement was its own transaction, committed when it returned → wake now;
 * - a client whose ReadyForQuery for this statement reported idle (`autocommit: true`, or a COMMIT
 *   that overtook an un-awaited publish) → wake now;
 * - a client inside a transaction → when its COMMIT is seen (CommitWatch);
 * - a data layer's hook → when it reports the commit (HookWatch).
 *
 * Why the watch starts after the statement, not before: without pipelining node-postgres sends a
 * client's next query only once this one's ReadyForQuery arrived, so nothing that follows can
 * have been answered before this runs (in the microtasks right after the result, or, through a
 * data layer, before the caller's code that awaits the publish can send its COMMIT); and queries
 * queued ahead of the publish — an un-awaited COMMIT — are behind us, so they cannot be mistaken
 * for our transaction's COMMIT. With `pipeline: true`, answers to later queries can arrive in the
 * same read as ours, which is why planWake keeps pg_notify in the statement for pipelined clients.
 */
export function wakeAfterStatement(route: WakeRoute, notifier: WakeNotifier, payload: string): void {
  if (route.kind === 'hook') {
    owedByHook(route).add(notifier, payload);
    return;
  }
  const client = route.kind === 'pg' ? route.client : undefined;
  const events = client === undefined || isPool(client) || transactionStatus(client) === 'I' ? undefined : protocolEvents(client);
  if (events === undefined) {
    notifier.request(payload);
    return;
  }
  let watch = watches.get(events);
  if (watch === undefined) {
    watch = new CommitWatch(events);
    watches.set(events, watch);
  }
  watch.add(notifier, payload);
}

const hooked = new WeakMap<object, OwedWakeUps>();

/** One hook per transaction, registered by its first due publish: 1,000 publishes add one callback. */
function owedByHook(route: Extract<WakeRoute, { kind: 'hook' }>): OwedWakeUps {
  let owed = hooked.get(route.transaction);
  if (owed === undefined) {
    const created = new OwedWakeUps();
    owed = created;
    hooked.set(route.transaction, created);
    route.onCommit(() => {
      hooked.delete(route.transaction);
      created.release();
    });
  }
  return owed;
}
