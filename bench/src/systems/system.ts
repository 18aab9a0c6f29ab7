import type pg from 'pg';

/** The message every system carries: a sequence number (to check exactly-once) and ~200 bytes of padding. */
export interface Body {
  readonly n: number;
  readonly pad: string;
}

const PAD = 'x'.repeat(200);

export function body(n: number): Body {
  return { n, pad: PAD };
}

export type WorkloadId = 'W1' | 'W2' | 'W3' | 'W4' | 'W5' | 'W6';

export interface ConsumeOptions {
  readonly concurrency: number;
  /** Called at the start of each handler run with the message's sequence number. */
  readonly onMessage: (n: number) => void;
}

export interface Consumer {
  stop(): Promise<void>;
}

export interface RunOptions {
  /**
   * txoutbox only: `'on'` = Prometheus recorder + middleware and OpenTelemetry tracing (when the
   * SDK loads); `'prometheus'` = the Prometheus seams alone; `'floor'`, `'tracing'`,
   * `'tracing-dropped'`, `'context'`: tracing alone and its references (seams.ts).
   */
  readonly seams?: 'off' | 'prometheus' | 'on' | 'floor' | 'tracing' | 'tracing-dropped' | 'context';
  /** txoutbox only: the no-op handler is an `async` function (a promise per run) instead of a plain one. */
  readonly asyncHandler?: boolean;
}

/** One system in one fresh database. */
export interface SystemInstance {
  /** Creates the schema (not measured). */
  setup(): Promise<void>;
  /** Publishes one message through `client`, inside the transaction the caller opened. */
  publishOne(client: pg.PoolClient, n: number): Promise<void>;
  /** Publishes messages through `client` in one call, inside the caller's transaction. */
  publishBatch(client: pg.PoolClient, ns: readonly number[]): Promise<void>;
  consume(options: ConsumeOptions): Promise<Consumer>;
  /** Messages still waiting or in flight in the queue table. */
  remaining(): Promise<number>;
  /** W5 seams on: spans exported so far, a running total (undefined when this instance traces nothing). */
  spansExported?(): Promise<number | undefined>;
  /** W5: spans each handler run must export (1, or 0 when the sampler drops them); undefined = 1. */
  readonly spansPerRun?: number | undefined;
  close(): Promise<void>;
}

export interface System {
  readonly id: string;
  readonly label: string;
  readonly version: string;
  /** Which workloads it runs, and for those it does not, why. */
  readonly skips: Partial<Record<WorkloadId, string>>;
  /** The options that make the comparison fair, for the report. */
  readonly tuning: string;
  create(databaseUrl: string, options: RunOptions): SystemInstance;
}

/** A logger that keeps quiet unless something is wrong. */
export const quietLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (fields: object, message: string) => {
    process.stderr.write(`\n[warn] ${message} ${JSON.stringify(fields)}\n`);
  },
  error: (fields: object, message: string) => {
    process.stderr.write(`\n[error] ${message} ${JSON.stringify(fields)}\n`);
  },
};
