/**
 * Every message accounted for by row id, from the ledger, the outbox and the DLQ:
 *
 * - lost: published (committed), never handled, not in the DLQ, not in the table. A poison row is
 *   lost when it is not in the DLQ either.
 * - duplicates: handler runs beyond the first for one row id. One is explained when a fault that
 *   explains redelivery (faults.ts) overlaps the window from one lease before the previous run
 *   started to the start of the duplicate: only a lease that expired after a fault may repeat a run.
 *   Never one that started after a transactional subscription's run wrote its record, whatever
 *   the faults: that record commits with the ack, in the transaction that holds the row locked
 *   from before the run, so no later claim can reach the row (effects once). Counted in
 *   `effectsTwice` and left unexplained.
 * - DLQ unexpected: a DLQ row for a message that was not meant to fail (anything but a poison row
 *   rejected by its handler), with its reason.
 * - stuck: still in the table when the final drain's bound ran out.
 * - handler errors unexpected: a failed handler run with no fault nearby, or one that failed
 *   because the Outbox refused a publish while it drained (OutboxStoppedError): that is a spent
 *   retry caused by the product, not by the fault.
 */
import type { Fault, FaultLog } from './faults.js';

export interface HandlerRun {
  readonly pid: number;
  readonly delivery: number;
  /** A transactional subscription's run: its ledger row committed with the ack. */
  readonly transactional: boolean;
  readonly startedAt: number;
  readonly at: number;
}

export interface MessageRow {
  readonly id: string;
  readonly key: string;
  readonly poison: boolean;
  readonly published_at: number;
  readonly runs: HandlerRun[];
  readonly dlq_reasons: string[];
  readonly dlq_exception: string | null;
  readonly in_table: boolean;
}

export interface FailureRow {
  readonly id: string;
  readonly pid: number;
  readonly error_name: string;
  readonly error: string;
  readonly at: number;
}

export interface Accounting {
  readonly messages: number;
  readonly chains: number;
  readonly chainsComplete: number;
  readonly handlerRuns: number;
  /** Of those, a transactional subscription's (committed with their acks). */
  readonly transactionalRuns: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly explained: number;
  /** Runs that started after a transactional run wrote its record: what its effects-once promise rules out. */
  readonly effectsTwice: number;
  readonly dlqExpected: number;
  readonly dlqUnexpected: number;
  readonly stuck: number;
  readonly handlerErrors: number;
  readonly handlerErrorsUnexpected: number;
  /** Longest publish → first handled (commit) of a message, ms. */
  readonly worstLatencyMs: number | null;
  /** A few examples of each problem, for the report. */
  readonly examples: readonly string[];
}

/** A handler error within this long after a fault ended is put down to it (reconnects, retries). */
const ERROR_AFTER_FAULT_MS = 5_000;

export function account(
  rows: readonly MessageRow[],
  failures: readonly FailureRow[],
  faults: FaultLog,
  leaseTtlMs: number,
  chainLength: number,
  unknown: { outbox: number; dlq: number },
): Accounting {
  const examples: string[] = [];
  const example = (text: string): void => {
    if (examples.length < 12) examples.push(text);
  };
  let lost = 0;
  let duplicates = 0;
  let explained = 0;
  let effectsTwice = 0;
  let dlqExpected = 0;
  let dlqUnexpected = 0;
  let stuck = 0;
  let handlerRuns = 0;
  let transactionalRuns = 0;
  let worstLatencyMs: number | null = null;
  const handledKeys = new Set<string>();
  const chains = new Set<string>();
  for (const row of rows) {
    const chain = row.key.split(':')[0] ?? row.key;
    handlerRuns += row.runs.length;
    transactionalRuns += row.runs.filter((run) => run.transactional).length;
    if (row.in_table) {
      stuck += 1;
      example(`stuck: ${row.id} (${row.key}) still in the table`);
    }
    if (row.poison) {
      const rejected = row.dlq_reasons.filter((r) => r === 'rejected').length;
      dlqExpected += Math.min(rejected, 1);
      dlqUnexpected += row.dlq_reasons.length - Math.min(rejected, 1);
      if (row.dlq_reasons.length === 0 && !row.in_table) {
        lost += 1;
        example(`lost: poison ${row.id} (${row.key}) is neither in the DLQ nor in the table`);
      }
      continue;
    }
    if (row.key.endsWith(':1')) chains.add(chain);
    if (row.dlq_reasons.length > 0) {
      dlqUnexpected += row.dlq_reasons.length;
      example(
        `DLQ: ${row.id} (${row.key}) as ${row.dlq_reasons.join(', ')} after ${row.runs.length} run(s)` +
          (row.dlq_exception === null ? '' : `: ${row.dlq_exception.split('\n')[0] ?? ''}`),
      );
    }
    const first = row.runs[0];
    if (first === undefined) {
      if (row.dlq_reasons.length === 0 && !row.in_table) {
        lost += 1;
        example(`lost: ${row.id} (${row.key}) was never handled and is gone`);
      }
      continue;
    }
    const latency = first.at - row.published_at;
    if (worstLatencyMs === null || latency > worstLatencyMs) worstLatencyMs = latency;
    handledKeys.add(row.key);
    // The first transactional run of the row to write its record (runs are in that order).
    let transactional: HandlerRun | undefined = first.transactional ? first : undefined;
    for (let k = 1; k < row.runs.length; k += 1) {
      const previous = row.runs[k - 1];
      const run = row.runs[k];
      if (previous === undefined || run === undefined) continue;
      duplicates += 1;
      // A run that started before it may end after it (a row-lock batch's handler, its batch rolled
      // back under it, while the transactional run waited for the row's lock): at-least-once, as any.
      if (transactional !== undefined && run.startedAt > transactional.at) {
        effectsTwice += 1;
        example(
          `effects twice: ${row.id} (${row.key}) ran again from ${new Date(run.startedAt).toISOString()} (pid ${run.pid}) ` +
            `after a transactional run wrote its record at ${new Date(transactional.at).toISOString()} (pid ${transactional.pid})`,
        );
        continue;
      }
      if (run.transactional) transactional ??= run;
      const fault: Fault | undefined = faults.explaining(previous.startedAt - leaseTtlMs - 1_000, run.startedAt);
      if (fault !== undefined) explained += 1;
      else
        example(
          `duplicate without a fault: ${row.id} (${row.key}) ran at ${new Date(previous.startedAt).toISOString()} (pid ${previous.pid}) ` +
            `and again at ${new Date(run.startedAt).toISOString()} (pid ${run.pid}, delivery ${run.delivery})`,
        );
    }
  }
  // A chain is complete when its last link ran (each link is published only by its parent's run).
  const chainsComplete = [...chains].filter((chain) => handledKeys.has(`${chain}:${String(chainLength)}`)).length;
  let handlerErrorsUnexpected = 0;
  for (const failure of failures) {
    const nearFault = faults.explaining(failure.at - ERROR_AFTER_FAULT_MS, failure.at) !== undefined;
    const refused = failure.error_name === 'OutboxStoppedError';
    if (refused || !nearFault) {
      handlerErrorsUnexpected += 1;
      const why = refused ? 'a publish refused by a draining Outbox' : 'a handler error with no fault nearby';
      example(`${why}: ${failure.id} in pid ${String(failure.pid)}: ${failure.error_name}: ${failure.error}`);
    }
  }
  if (unknown.outbox + unknown.dlq > 0) {
    example(`${unknown.outbox} outbox and ${unknown.dlq} DLQ row(s) the ledger never saw published`);
  }
  return {
    messages: rows.length,
    chains: chains.size,
    chainsComplete,
    handlerRuns,
    transactionalRuns,
    lost,
    duplicates,
    explained,
    effectsTwice,
    dlqExpected,
    dlqUnexpected,
    stuck,
    handlerErrors: failures.length,
    handlerErrorsUnexpected,
    worstLatencyMs,
    examples,
  };
}
