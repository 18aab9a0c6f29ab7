import type {
  DeadLetter,
  Handler,
  Middleware,
  OutboxEvent,
  OutboxRow,
  PublishOptions,
  StandardSchemaV1,
  SubscribeOptions,
} from '../../src/index.js';

/** One message of a committed (or rolled-back) publish. */
export interface Publication {
  readonly queue: string;
  readonly body: unknown;
  readonly options?: PublishOptions;
}

/** One write of a transaction that mixes them: a publish, or a cancelTimer. */
export type Step =
  { readonly publish: Publication } | { readonly cancelTimer: { readonly queue: string; readonly timerId: string } };

/**
 * What a contract scenario does with an outbox, the same words for the in-memory one and the real
 * one on PostgreSQL: publish in a transaction, subscribe, run until the messages ended, inspect.
 */
export interface ContractOutbox {
  /** Publishes `messages` in one transaction that commits; their ids (null: timerId taken). */
  publish(messages: readonly Publication[]): Promise<(string | null)[]>;
  /** Publishes `messages` in one transaction that rolls back. */
  publishRolledBack(messages: readonly Publication[]): Promise<void>;
  /** cancelTimer in a transaction of its own that commits. */
  cancelTimer(queue: string, timerId: string): Promise<boolean>;
  /**
   * `steps` in order in ONE transaction that commits, or rolls back; each step's answer (a
   * publish's id or null, a cancel's true or false). What a later step sees of an earlier one is
   * the point: a cancel sees the transaction's own inserts, a publish the cancel's released rows.
   */
  transaction(steps: readonly Step[], end: 'commit' | 'rollback'): Promise<(string | null | boolean)[]>;
  subscribe(queue: string, handler: Handler, options?: SubscribeOptions): void;
  start(): void;
  /**
   * Returns once `count` messages ended (acked, or ended as terminal): the real outbox waits for
   * their recorder events; the in-memory one drains, moving its clock to each retry and delay.
   */
  runUntilSettled(count: number): Promise<void>;
  /** Every recorder event so far. */
  readonly events: readonly OutboxEvent[];
  /** The DLQ's rows, by original id. */
  deadLetters(): Promise<DeadLetter[]>;
  /** Rows still in the outbox. */
  remaining(): Promise<OutboxRow[]>;
  stop(): Promise<void>;
}

/** The Outbox options a scenario may set: the same on both sides. */
export interface ContractOptions {
  readonly middlewares?: readonly Middleware[];
  readonly schemas?: Readonly<Record<string, StandardSchemaV1>>;
}

export interface ContractDriver {
  readonly name: 'memory' | 'postgres';
  create(options: ContractOptions): Promise<ContractOutbox>;
}

/** Outcome events: a message has ended once one of these is recorded for it. */
export function settledCount(events: readonly OutboxEvent[]): number {
  return events.filter((event) => event.type === 'acked' || event.type === 'nacked_terminal').length;
}
