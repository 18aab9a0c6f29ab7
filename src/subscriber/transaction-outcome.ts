import { backoffMs } from '../util/backoff.js';
import { type Statement, statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import type { ClaimedRecord } from './message.js';
import type { UnsettledWrite } from './unsettled-writes.js';

/**
 * $1 a transaction id (xid8 as text): 'committed', 'aborted' or 'in progress', NULL when the server
 * no longer knows (older than its commit log keeps). On a server that never assigned the id (a
 * failover to a standby it had not reached) it fails with 22023, "in the future".
 */
const XACT_STATUS = statement('xact_status', 'SELECT pg_xact_status($1::xid8) AS status');

/** pg_xact_status of an id the server never assigned. */
const INVALID_PARAMETER = '22023';

/** How often a transaction still in progress, or a server out of reach, is asked again: from 100 ms up to every 2 s. */
const ASK_AGAIN_BASE_MS = 100;
const ASK_AGAIN_CAP_MS = 2_000;

/**
 * What the server says became of a transaction; 'in progress' or undefined when it could not say by
 * the deadline. 'reused': the server says the id committed, and the rows the transaction wrote say
 * it is not theirs (WrittenRows): after a failover the new primary gave the id to a transaction of
 * its own, and this one never committed there. 'reclaimed': the subscription claimed one of those
 * rows again as the transaction had claimed it (unsettled-writes.ts), so it did not commit, whatever
 * the server says of the id.
 */
export type TransactionOutcome = 'committed' | 'aborted' | 'reused' | 'reclaimed' | 'in progress' | undefined;

/**
 * What the transaction wrote: the outbox rows, as claimed, it acked, moved, deleted or retried, and
 * the statement that counts those still as claimed (sql.ts `unwritten`).
 */
export interface WrittenRows {
  readonly unwritten: Statement;
  readonly records: readonly Pick<ClaimedRecord, 'id' | 'attempts_count'>[];
}

/**
 * What became of transaction `xid`, whose COMMIT was sent and never answered (a client-side
 * timeout, a connection lost after it left: util/unanswered.ts), asked of the server on a pool
 * connection (architecture/row-lock-mode.md, architecture/transactional-consume.md). 'in progress'
 * (the COMMIT still on its way, a backend the server has not ended yet) and a server out of reach
 * are asked again, with a growing pause, until `endedWithinMs` (by when the server ends the
 * transaction, its idle bound: util/idle-bound.ts) and one more pause have passed, or `giveUp()`
 * says so (stop()); whatever was last heard is returned then. A server that never saw the id has
 * nothing of it: 'aborted'. After a failover to a standby the transaction never reached, the new
 * primary may already have given the same id to a transaction of its own, and say 'committed' of
 * that one: so a 'committed' is checked against the rows the transaction wrote (`written`), each
 * of which its commit changed for good; one still as claimed means 'reused'. The rows tell that only
 * until a later run ends them: `watch` (the subscription's UnsettledWrites) says whether one of them
 * was claimed again as written, which no commit of this transaction can explain: 'reclaimed'.
 */
export async function transactionOutcome(
  db: Pick<StatementRunner, 'run'>,
  xid: string,
  written: WrittenRows,
  endedWithinMs: number,
  { giveUp, watch, hurry }: Asking,
): Promise<TransactionOutcome> {
  const giveUpAt = performance.now() + endedWithinMs + ASK_AGAIN_CAP_MS;
  // A function: the flag turns true while a question is on its way.
  const reclaimed = (): boolean => watch?.reclaimed === true;
  let outcome: TransactionOutcome;
  for (let attempt = 1; ; attempt += 1) {
    if (reclaimed()) return 'reclaimed';
    try {
      const { rows } = await db.run<{ status: string | null }>(XACT_STATUS, [xid]);
      const status = rows[0]?.status;
      // NULL: older than the server's commit log keeps, which a transaction just sent never is in practice.
      if (status !== 'committed' && status !== 'aborted' && status !== 'in progress') return undefined;
      // Not heard as 'committed' until the rows agree: a check that fails is asked again.
      if (status === 'committed') {
        if (await writtenAsClaimed(db, written)) return 'reused';
        // Rows gone: a later run of this subscription may have ended them (watch).
        return reclaimed() ? 'reclaimed' : status;
      }
      outcome = status;
      if (outcome !== 'in progress') return outcome;
    } catch (failure) {
      if ((failure as { code?: unknown } | null)?.code === INVALID_PARAMETER) return 'aborted';
    }
    if (giveUp() || performance.now() >= giveUpAt) return outcome;
    await pause(backoffMs(attempt, ASK_AGAIN_BASE_MS, ASK_AGAIN_CAP_MS), hurry);
  }
}

/** How a transaction's outcome is asked for (transactionOutcome). */
export interface Asking {
  /** True when nobody waits for the answer any more: what was last heard is returned. */
  readonly giveUp: () => boolean;
  /** The subscription's claims seen while asking (unsettled-writes.ts). */
  readonly watch?: Pick<UnsettledWrite, 'reclaimed'>;
  /** Someone waits for the answer (stop(), within its budget): ask again sooner (pause). */
  readonly hurry?: Hurry;
}

/** A wait for the answers beginning (RowLockQuestions: stop()). */
export class Hurry {
  #hurried = false;
  readonly #wakers = new Set<() => void>();

  get hurried(): boolean {
    return this.#hurried;
  }

  /** Calls `wake` once, when hurry() is (never during this call); returns how to stop listening. */
  onHurry(wake: () => void): () => void {
    this.#wakers.add(wake);
    return () => this.#wakers.delete(wake);
  }

  hurry(): void {
    if (this.#hurried) return;
    this.#hurried = true;
    for (const wake of [...this.#wakers]) wake();
    this.#wakers.clear();
  }
}

/**
 * The pause before a question is asked again: `ms`, cut short when `hurry` comes, and the shortest
 * (ASK_AGAIN_BASE_MS) once it has. Unref'd: a caller still asking never keeps the process alive.
 */
async function pause(ms: number, hurry: Hurry | undefined): Promise<void> {
  if (hurry?.hurried === true) {
    await new Promise((resolve) => setTimeout(resolve, ASK_AGAIN_BASE_MS).unref());
    return;
  }
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stopListening?.();
      resolve();
    };
    const timer = setTimeout(done, ms).unref();
    const stopListening = hurry?.onHurry(done);
  });
}

/**
 * Whether any of the rows a write (or a transaction's writes) wrote is still as it was claimed: then
 * it did not land. Also outcome-writer.ts's check of a fenced write whose answer was lost.
 */
export async function writtenAsClaimed(db: Pick<StatementRunner, 'run'>, { unwritten, records }: WrittenRows): Promise<boolean> {
  if (records.length === 0) return false;
  const { rows } = await db.run<{ unwritten: number }>(unwritten, [
    records.map((record) => record.id),
    records.map((record) => record.attempts_count),
  ]);
  return (rows[0]?.unwritten ?? 0) > 0;
}
