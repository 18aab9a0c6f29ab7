/**
 * Every message of a relay scenario accounted for at the broker: the ledger says what committed,
 * the broker's read-back (broker.ts) says what arrived, the outbox and the DLQ say what is left.
 *
 * - lost: committed, not at the broker when read back, not in the DLQ, not in the table;
 * - duplicates: copies the broker stored beyond the first of one row id. Where the broker
 *   deduplicates (JetStream's Nats-Msg-Id) none is explained: the resend was the broker's to drop.
 *   Where it cannot (Redis), one is explained only when the copy before it was stored within
 *   CONFIRM_WINDOW_MS of a fault that explains redelivery (a broker killed, its connections
 *   frozen): before it, its confirm may have been lost; during or just after it, it was held by
 *   the fault while its send timed out and was retried;
 * - DLQ unexpected: any DLQ row (the relay refuses nothing the harness publishes; there is no
 *   poison for a relay);
 * - stuck: still in the table when the final drain's bound ran out;
 * - out of order: a row stored after a later row of its ordering key (the claim hands out a key's
 *   next row only once the previous one was confirmed and deleted, so even a duplicate comes
 *   before the next row of its key);
 * - altered: a stored body that is not the committed one (its chain key differs);
 * - unknown: stored messages whose id the ledger never saw committed.
 */
import type { Accounting, MessageRow } from './accounting.js';
import type { Arrival } from './broker.js';
import type { FaultLog } from './faults.js';

/**
 * The sinks' default confirmTimeoutMs (5 s) plus 1 s: a copy stored longer than that before a fault
 * had its confirm back (and its row deleted) or its send failed, and one stored that long after it
 * was not held by it; a resend of either needs another cause.
 */
const CONFIRM_WINDOW_MS = 6_000;

export interface RelayAccounting {
  readonly accounting: Accounting;
  readonly outOfOrder: number;
  readonly altered: number;
  readonly unknown: number;
  /** Explained duplicates by the fault that explains them (its detail): what each fault cost. */
  readonly explainedBy: Readonly<Record<string, number>>;
}

/** `<table>:<source>:<row id>` → the row id. */
function rowId(messageId: string): string {
  return messageId.slice(messageId.lastIndexOf(':') + 1);
}

function chainKey(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { key?: string }).key;
  } catch {
    return undefined;
  }
}

export function accountRelay(
  rows: readonly MessageRow[],
  arrivals: readonly Arrival[],
  faults: FaultLog,
  options: {
    readonly deduplicates: boolean;
    /** The ordering key a root was published with (chain key → key), or undefined for none. */
    readonly orderingKeyOf: (key: string) => string | undefined;
  },
): RelayAccounting {
  const examples: string[] = [];
  const example = (text: string): void => {
    if (examples.length < 12) examples.push(text);
  };
  const byId = new Map(rows.map((row) => [row.id, row]));
  const stored = new Map<string, Arrival[]>();
  let unknown = 0;
  let altered = 0;
  let outOfOrder = 0;
  const lastOfKey = new Map<string, bigint>();
  for (const arrival of arrivals) {
    const id = rowId(arrival.messageId);
    const row = byId.get(id);
    if (row === undefined) {
      unknown += 1;
      example(`unknown: the broker stored ${arrival.messageId || '(no id)'}, which the ledger never saw committed`);
      continue;
    }
    const copies = stored.get(id) ?? [];
    copies.push(arrival);
    stored.set(id, copies);
    if (chainKey(arrival.body) !== row.key) {
      altered += 1;
      example(`altered: ${arrival.messageId} arrived with a body that is not ${row.key}'s`);
    }
    const orderingKey = options.orderingKeyOf(row.key);
    if (orderingKey !== undefined) {
      const previous = lastOfKey.get(orderingKey);
      if (previous !== undefined && BigInt(id) < previous) {
        outOfOrder += 1;
        example(`out of order: ${id} (key ${orderingKey}) stored after ${String(previous)} of the same key`);
      } else lastOfKey.set(orderingKey, BigInt(id));
    }
  }

  let lost = 0;
  let duplicates = 0;
  let explained = 0;
  let dlqUnexpected = 0;
  let stuck = 0;
  let worstLatencyMs: number | null = null;
  const explainedBy: Record<string, number> = {};
  for (const row of rows) {
    const copies = stored.get(row.id) ?? [];
    if (row.in_table) {
      stuck += 1;
      example(`stuck: ${row.id} (${row.key}) still in the table`);
    }
    if (row.dlq_reasons.length > 0) {
      dlqUnexpected += row.dlq_reasons.length;
      example(
        `DLQ: ${row.id} (${row.key}) as ${row.dlq_reasons.join(', ')}` +
          (row.dlq_exception === null ? '' : `: ${row.dlq_exception.split('\n')[0] ?? ''}`),
      );
    }
    const [first] = copies;
    if (first === undefined) {
      if (row.dlq_reasons.length === 0 && !row.in_table) {
        lost += 1;
        example(`lost: ${row.id} (${row.key}) committed, not at the broker when read back, and gone from the table`);
      }
      continue;
    }
    const latency = first.at - row.published_at;
    if (worstLatencyMs === null || latency > worstLatencyMs) worstLatencyMs = latency;
    for (let k = 1; k < copies.length; k += 1) {
      const previous = copies[k - 1];
      const copy = copies[k];
      if (previous === undefined || copy === undefined) continue;
      duplicates += 1;
      const fault = options.deduplicates
        ? undefined
        : faults.explaining(previous.at - CONFIRM_WINDOW_MS, Math.min(previous.at + CONFIRM_WINDOW_MS, copy.at));
      if (fault !== undefined) {
        explained += 1;
        explainedBy[fault.detail] = (explainedBy[fault.detail] ?? 0) + 1;
      } else
        example(
          `${options.deduplicates ? 'stored twice by a deduplicating broker' : 'duplicate without a fault'}: ${row.id} (${row.key}) ` +
            `at ${new Date(previous.at).toISOString()} and ${new Date(copy.at).toISOString()}`,
        );
    }
  }
  return {
    accounting: {
      messages: rows.length,
      chains: 0,
      chainsComplete: 0,
      handlerRuns: arrivals.length,
      transactionalRuns: 0,
      lost,
      duplicates,
      explained,
      effectsTwice: 0,
      dlqExpected: 0,
      dlqUnexpected,
      stuck,
      handlerErrors: 0,
      handlerErrorsUnexpected: 0,
      worstLatencyMs,
      examples,
    },
    outOfOrder,
    altered,
    unknown,
    explainedBy,
  };
}
