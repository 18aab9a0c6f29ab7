/**
 * A broker a relay scenario relays to, owned by the harness like the database server: started on
 * a free port with its data in a temp dir (test/support/<broker>-server.ts, the sinks' own test
 * servers, installed by scripts/ensure-<broker>.sh), killed and restarted by the scenario, and at
 * the end read back by a consumer of the harness's own, so that the accounting counts what arrived
 * at the broker, not what the relay believes it sent.
 */
import type { RelaySpec } from '../worker/protocol.js';
import { within } from './bounded.js';
import type { ScenarioRecord } from './scenario-record.js';

/** Restarting a broker the scenario left down, and reading every message back. */
const READ_BACK_BOUND_MS = 90_000;
const CLOSE_BOUND_MS = 15_000;

/** One message as the broker stored it. */
export interface Arrival {
  /** The relay's stable message id (`<table>:<source>:<row id>`): Nats-Msg-Id, or the entry's `id` field. */
  readonly messageId: string;
  /** When the broker stored it (epoch ms, the broker's clock: the same machine). */
  readonly at: number;
  /** The payload as text (the chain body's JSON). */
  readonly body: string;
}

export type BrokerKind = 'redis' | 'nats';

export interface ChaosBroker {
  readonly kind: BrokerKind;
  /** The binary, for the report (`redis-server`). */
  readonly name: string;
  /**
   * The broker drops a resend of a message id it already stored (JetStream's Nats-Msg-Id within
   * its duplicate window): a message stored twice is then a failure, never explained by a fault.
   */
  readonly deduplicates: boolean;
  readonly port: number;
  /**
   * What a relay worker sends with (its sink factory and options), connecting to 127.0.0.1:`port`:
   * the broker's own port by default, or a proxy's in front of it.
   */
  relay(port?: number): RelaySpec;
  readonly running: boolean;
  /** SIGKILL, and the wait for the exit: a crash, nothing flushed or closed. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it accepts clients. */
  restart(): Promise<void>;
  /** Every message the broker holds, in the broker's order. */
  readBack(): Promise<Arrival[]>;
  /** Stops it and deletes its data. */
  close(): Promise<void>;
}

/** The queue's destination at the broker (a Redis stream, a JetStream subject and stream). */
export const BROKER_STREAM = 'CHAOS';

export async function startBroker(kind: BrokerKind): Promise<ChaosBroker> {
  if (kind === 'redis') return await (await import('./redis-broker.js')).startRedisBroker();
  return await (await import('./nats-broker.js')).startNatsBroker();
}

/**
 * The end of a relay scenario, after its processes were killed: the broker started again if the
 * scenario left it down, every message read back, the broker stopped and its data deleted.
 * undefined (and a finding) when it could not be read: the accounting then has nothing to count.
 */
export async function readBackAndClose(broker: ChaosBroker, record: ScenarioRecord): Promise<Arrival[] | undefined> {
  const read = await within(
    (async () => {
      if (!broker.running) {
        record.note(`${broker.name} was down at the end of the scenario: started again to read it back`);
        await broker.restart();
      }
      return await broker.readBack();
    })(),
    READ_BACK_BOUND_MS,
  ).catch((error: unknown) => {
    record.finding(`reading ${broker.name} back failed: ${error instanceof Error ? error.message : String(error)}`);
    return null;
  });
  if (read === undefined) record.finding(`reading ${broker.name} back took over ${String(READ_BACK_BOUND_MS / 1000)} s`);
  await within(
    broker.close().catch(() => undefined),
    CLOSE_BOUND_MS,
  );
  return read?.value;
}
