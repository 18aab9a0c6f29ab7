/**
 * Every error txoutbox throws on purpose is a `TxOutboxError` with a stable `code`, so callers branch
 * on `instanceof` or `code`, never on message text. Subclasses carry the structured fields their
 * message is composed from (option, value, expected, fix) and keep the underlying `cause`.
 */
import { credentialMasker, isSecretOption, maskCredentials, maskedOptionValue } from './util/redact.js';

export type TxOutboxErrorCode =
  | 'INVALID_OPTION'
  | 'INVALID_IDENTIFIER'
  | 'UNSUPPORTED_POSTGRES'
  | 'SCHEMA_DRIFT'
  | 'SCHEMA_NOT_MIGRATED'
  | 'MIGRATION_FAILED'
  | 'MIGRATION_LOCK_TIMEOUT'
  | 'TABLE_IN_OTHER_SCHEMA'
  | 'NOT_IN_TRANSACTION'
  | 'UNENCODABLE_BODY'
  | 'INVALID_BODY'
  | 'EMBEDDED_POSTGRES_FAILED'
  | 'OUTBOX_STOPPED'
  | 'MIDDLEWARE_FAILED'
  | 'CUSTOM_STAT_CONFLICT'
  | 'PORT_IN_USE'
  | 'INVALID_CONFIG'
  | 'MISSING_PEER_DEPENDENCY'
  | 'SINK_REFUSED'
  | 'SINK_UNAVAILABLE'
  | 'DRAIN_LIMIT'
  | 'HANDLER_TIMEOUT'
  | 'LEASE_LOST';

export class TxOutboxError extends Error {
  readonly code: TxOutboxErrorCode;

  constructor(code: TxOutboxErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Renders a user-supplied value for an error message: short, single-line, never huge, and without
 * the passwords it spells (a connection string where another value goes, a map with a `password`
 * key). Masked before it is cut short: a password cut in two is no longer one a later scrub finds.
 */
export function renderValue(value: unknown): string {
  if (typeof value === 'string') {
    const masked = maskCredentials(value);
    return JSON.stringify(masked.length > 80 ? `${masked.slice(0, 77)}...` : masked);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (value === undefined) return 'undefined';
  try {
    const json = JSON.stringify(value, credentialMasker) as string | undefined;
    if (json === undefined) return typeof value === 'symbol' ? value.toString() : 'a value with no JSON form';
    return json.length > 80 ? `${json.slice(0, 77)}...` : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** An option (constructor, subscribe, publish, config file) has a value that cannot work. */
export class InvalidOptionError extends TxOutboxError {
  readonly option: string;
  readonly value: unknown;
  readonly expected: string;
  readonly fix: string | undefined;

  constructor(args: { option: string; value: unknown; expected: string; fix?: string; cause?: unknown; redact?: boolean }) {
    // An option named as a credential (`token`, `connectOptions.pass`, an unknown `password` key)
    // never shows its value, whoever raised the error: a bare secret has no shape to mask. A
    // missing one still says so.
    const redact = args.redact === true || (args.value !== undefined && args.value !== null && isSecretOption(args.option));
    const shown = redact ? '[redacted]' : renderValue(args.value);
    const fix = args.fix === undefined ? '' : ` ${args.fix}`;
    super('INVALID_OPTION', `${args.option}: expected ${args.expected}, got ${shown}.${fix}`, { cause: args.cause });
    this.option = args.option;
    // Kept for callers that branch on it, and logged with the error by structured loggers: a
    // connection string here (a misspelt `url` key) keeps its password masked.
    this.value = redact ? '[redacted]' : maskedOptionValue(args.value);
    this.expected = args.expected;
    this.fix = args.fix;
  }
}

/** A table, schema or derived name is not a safe Postgres identifier (or exceeds 63 bytes). */
export class InvalidIdentifierError extends TxOutboxError {
  readonly option: string;
  readonly identifier: string;
  readonly reason: string;

  constructor(args: { option: string; identifier: string; reason: string }) {
    super('INVALID_IDENTIFIER', `${args.option}: ${renderValue(args.identifier)} is not a valid identifier: ${args.reason}`);
    this.option = args.option;
    this.identifier = args.identifier;
    this.reason = args.reason;
  }
}

/** The server is older than the version floor (see architecture/schema.md for why). */
export class UnsupportedPostgresError extends TxOutboxError {
  readonly serverVersionNum: number;
  readonly minimumVersionNum: number;

  constructor(serverVersionNum: number, minimumVersionNum: number, reason: string) {
    super(
      'UNSUPPORTED_POSTGRES',
      `PostgreSQL ${formatVersion(serverVersionNum)} is not supported: txoutbox needs ${formatVersion(minimumVersionNum)} or newer (${reason}).`,
    );
    this.serverVersionNum = serverVersionNum;
    this.minimumVersionNum = minimumVersionNum;
  }
}

function formatVersion(num: number): string {
  return `${Math.floor(num / 10000)}.${num % 10000}`;
}

/** One difference between the live catalog and the schema txoutbox expects. */
export interface DriftFinding {
  /** The table the finding is about, as written in SQL (`app.outbox`). */
  readonly table: string;
  readonly kind:
    | 'missing_table'
    | 'missing_column'
    | 'wrong_type'
    | 'wrong_nullability'
    /** A column txoutbox's INSERTs leave out has no default (or identity): every such INSERT fails. */
    | 'missing_default'
    | 'missing_index'
    | 'index_not_partial'
    | 'index_wrong_predicate'
    | 'index_not_unique'
    | 'missing_check'
    | 'autovacuum_not_tuned'
    /** 0.1's twin of a txoutbox-schema outbox holds rows nothing consumes (schema/stranded-rows.ts). */
    | 'stranded_rows';
  /** What is wrong, phrased for a DBA. */
  readonly message: string;
  /** How to repair it. */
  readonly fix: string;
}

/** `validateSchema()` found drift; every finding is reported at once. */
export class SchemaDriftError extends TxOutboxError {
  readonly findings: readonly DriftFinding[];

  constructor(findings: readonly DriftFinding[]) {
    const lines = findings.map((f) => `- ${f.table}: ${f.message} Fix: ${f.fix}`);
    super(
      'SCHEMA_DRIFT',
      `The outbox schema does not match what txoutbox expects (${findings.length} finding(s)):\n${lines.join('\n')}`,
    );
    this.findings = findings;
  }
}

/**
 * A producer statement (publish, publishBatch, cancelTimer) found the schema older than this
 * version of txoutbox: the outbox table, or a column it writes, does not exist. The code was
 * deployed before its migrations ran. Nothing was written; the caller's transaction is aborted (as
 * after any failed statement) and must roll back. `cause` is the data layer's own error.
 */
export class SchemaNotMigratedError extends TxOutboxError {
  readonly operation: string;
  /** The table the options name (`txoutbox.outbox`). */
  readonly table: string;
  /** The missing column (`activate_at`), or the table itself when it does not exist. */
  readonly missing: string;
  /** The migration that adds the column (`outbox/0005`); undefined when the table is missing. */
  readonly migration: string | undefined;
  readonly fix: string;

  constructor(args: {
    operation: string;
    table: string;
    missing: string;
    migration?: { readonly name: string; readonly since: number };
    cause: unknown;
  }) {
    const { operation, table, missing, migration } = args;
    const fix =
      migration === undefined
        ? 'run the migrations first: outbox.migrate(), `txoutbox migrate`, or the script of `txoutbox migrate --print` in your own migration tool (or point the `table` option at the table you migrated)'
        : `run \`txoutbox migrate\` or outbox.migrate(), or apply \`txoutbox migrate --print --since ${String(migration.since)}\` with your own migration tool. Migrate before rolling out a new version`;
    const problem =
      migration === undefined
        ? `${table} does not exist`
        : `${table} has no column ${missing}, which this version of txoutbox writes (migration ${migration.name}): the code was deployed before the schema was upgraded`;
    super('SCHEMA_NOT_MIGRATED', `${operation}: ${problem}. Nothing was written; roll the transaction back. Fix: ${fix}`, {
      cause: args.cause,
    });
    this.operation = operation;
    this.table = table;
    this.missing = missing;
    this.migration = migration?.name;
    this.fix = fix;
  }
}

/** A migration statement failed; the whole migration transaction was rolled back. */
export class MigrationFailedError extends TxOutboxError {
  readonly migration: string;

  constructor(migration: string, cause: unknown) {
    super('MIGRATION_FAILED', `Migration ${migration} failed and was rolled back: ${errorMessage(cause)}`, { cause });
    this.migration = migration;
  }
}

/** A session that held a lock on the table when a migration gave up waiting for it. */
export interface LockHolder {
  readonly pid: number;
  /** Its `application_name`, when the role may read it (else null). */
  readonly applicationName: string | null;
  /** `active`, `idle in transaction`, … (pg_stat_activity.state; null when not readable). */
  readonly state: string | null;
  /** How long its transaction had been open, in ms (null when not readable). */
  readonly transactionMs: number | null;
}

/**
 * A migration that alters a live table waited `lockTimeoutMs` for its lock in each of `attempts`
 * transactions, and another session held the table every time. Nothing was applied. Waiting
 * without a bound would have queued every publish and claim behind the migration's lock request
 * for as long as the holder's transaction lasts.
 */
export class MigrationLockTimeoutError extends TxOutboxError {
  /** The migration that waited (`outbox/0004_ordering_key`). */
  readonly migration: string;
  readonly table: string;
  readonly lockTimeoutMs: number;
  readonly attempts: number;
  /** The sessions that held a lock on the table after the last attempt (empty when none could be read). */
  readonly holders: readonly LockHolder[];

  constructor(args: {
    migration: string;
    table: string;
    lockTimeoutMs: number;
    attempts: number;
    holders: readonly LockHolder[];
    cause: unknown;
  }) {
    const holders =
      args.holders.length === 0
        ? 'no session held it by the time it was looked up'
        : `held by ${args.holders.map(describeHolder).join('; ')}`;
    super(
      'MIGRATION_LOCK_TIMEOUT',
      `Migration ${args.migration} (on ${args.table}) waited ${args.lockTimeoutMs} ms for the table's lock in each of ${args.attempts} attempt(s) and was rolled back: ${holders}. ` +
        'End or wait out those transactions (pg_stat_activity lists them), migrate when the table is quieter, ' +
        'or raise the migrate option lockTimeoutMs or lockAttempts (--lock-timeout-ms, --lock-attempts); lockTimeoutMs: 0 waits without a bound, and every publish and claim waits behind it.',
      { cause: args.cause },
    );
    this.migration = args.migration;
    this.table = args.table;
    this.lockTimeoutMs = args.lockTimeoutMs;
    this.attempts = args.attempts;
    this.holders = args.holders;
  }
}

function describeHolder(holder: LockHolder): string {
  const details = [
    holder.applicationName === null || holder.applicationName === ''
      ? undefined
      : `application ${renderValue(holder.applicationName)}`,
    holder.state ?? undefined,
    holder.transactionMs === null ? undefined : `transaction open for ${(holder.transactionMs / 1000).toFixed(1)} s`,
  ].filter((part) => part !== undefined);
  return details.length === 0 ? `pid ${holder.pid}` : `pid ${holder.pid} (${details.join(', ')})`;
}

/**
 * The outbox table is missing where the options put it (`txoutbox.outbox`, the default since 0.2)
 * while a table of txoutbox's shape with its name sits where an unqualified name resolves
 * (`public.outbox`, 0.1's default). Thrown by `migrate()` — before it creates anything, so no
 * second, empty outbox appears beside the one holding rows — and by `validateSchema()`.
 */
export class TableInOtherSchemaError extends TxOutboxError {
  readonly option: string;
  /** The table the options name (`txoutbox.outbox`). */
  readonly table: string;
  /** Where txoutbox's table of that name is (`public.outbox`). */
  readonly found: string;
  /** The two ways out: the `table` option that keeps it there, and the SQL that moves it. */
  readonly fix: string;

  constructor(args: { option: string; table: string; found: string; foundDlq: string | undefined; fix: string }) {
    const dlq = args.foundDlq === undefined ? '' : ` (and its DLQ ${args.foundDlq})`;
    super(
      'TABLE_IN_OTHER_SCHEMA',
      `${args.option}: ${args.table} does not exist, but ${args.found}${dlq} does, with txoutbox's columns: the tables of txoutbox 0.1, whose default was an unqualified "outbox". Creating ${args.table} now would leave a second, empty outbox beside the one holding your rows, and rows older processes publish into ${args.found} would never be consumed. Fix: ${args.fix}`,
    );
    this.option = args.option;
    this.table = args.table;
    this.found = args.found;
    this.fix = args.fix;
  }
}

/** `publish()` was handed something that cannot make the insert atomic with the caller's data. */
export class NotInTransactionError extends TxOutboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_IN_TRANSACTION', message, options);
  }
}

/** One way a body fails its queue's schema: where (`items[0].qty`, `(root)`) and what the schema said. */
export interface BodyIssue {
  readonly path: string;
  readonly message: string;
}

/** How many issues an InvalidBodyError's message lists (`issues` keeps them all). */
const SHOWN_ISSUES = 10;

/**
 * A body does not match its queue's schema (the Outbox's `schemas` option; architecture/typed-events.md).
 * At publish it is thrown before any INSERT: nothing was written, the caller's transaction is
 * untouched. At consume it is what the DLQ's last_exception records for a row ended without
 * running its handler.
 */
export class InvalidBodyError extends TxOutboxError {
  readonly queue: string;
  readonly phase: 'publish' | 'consume';
  readonly issues: readonly BodyIssue[];
  /** The row's id, at consume. */
  readonly messageId: string | undefined;
  readonly fix: string;

  constructor(args: { queue: string; phase: 'publish' | 'consume'; issues: readonly BodyIssue[]; messageId?: string }) {
    const listed = args.issues
      .slice(0, SHOWN_ISSUES)
      .map((issue) => `${issue.path}: ${issue.message}`)
      .join('; ');
    const more = args.issues.length > SHOWN_ISSUES ? ` (and ${args.issues.length - SHOWN_ISSUES} more)` : '';
    const fix =
      args.phase === 'publish'
        ? `Pass a body that matches schemas[${JSON.stringify(args.queue)}]: nothing was inserted and your transaction can go on.`
        : 'The row was ended as rejected without running the handler (into the DLQ when there is one; without a DLQ table it is deleted). Fix the producer or the schema, then redrive it from the DLQ (`txoutbox dlq redrive`).';
    const subject =
      args.phase === 'publish'
        ? `publish to ${JSON.stringify(args.queue)}`
        : `message ${args.messageId ?? '?'} of ${JSON.stringify(args.queue)}`;
    super('INVALID_BODY', `${subject}: the body does not match the queue's schema: ${listed}${more}. ${fix}`);
    this.queue = args.queue;
    this.phase = args.phase;
    this.issues = args.issues;
    this.messageId = args.messageId;
    this.fix = fix;
  }
}

/** The message body cannot be encoded (BigInt, cycle, function, …). */
export class UnencodableBodyError extends TxOutboxError {
  constructor(message: string, cause?: unknown) {
    super('UNENCODABLE_BODY', message, { cause });
  }
}

/** The embedded PostgreSQL server could not be started. */
export class EmbeddedPostgresError extends TxOutboxError {
  constructor(message: string, cause?: unknown) {
    super('EMBEDDED_POSTGRES_FAILED', message, { cause });
  }
}

/** A command or entry point needs an optional peer dependency that is not installed. */
export class MissingPeerDependencyError extends TxOutboxError {
  readonly dependency: string;

  constructor(dependency: string, neededBy: string, cause?: unknown) {
    super(
      'MISSING_PEER_DEPENDENCY',
      `${neededBy} needs the optional peer dependency "${dependency}", which is not installed. Fix: npm install ${dependency}`,
      { cause },
    );
    this.dependency = dependency;
  }
}

/**
 * A broker refused a relayed message for good (unroutable, a 4xx, a message too large): retrying
 * cannot help, so the relay ends the row into the DLQ with `reason`. Sinks throw it; any other
 * error from a sink is a failure worth retrying.
 */
export class SinkRefusedError extends TxOutboxError {
  readonly sink: string;
  readonly reason: string;

  constructor(sink: string, reason: string, options?: { cause?: unknown }) {
    super('SINK_REFUSED', `${sink} refused the message: ${reason}`, options);
    this.sink = sink;
    this.reason = reason;
  }
}

/**
 * A sink cannot reach its broker now (not connected, reconnecting, a dial that failed, a confirm that
 * did not come in time). Worth retrying: the relay keeps the row and tries again later. Its message
 * never carries a password (connection strings are redacted).
 */
export class SinkUnavailableError extends TxOutboxError {
  readonly sink: string;
  readonly reason: string;

  constructor(sink: string, reason: string, options?: { cause?: unknown }) {
    super('SINK_UNAVAILABLE', `${sink} is unavailable: ${reason}`, options);
    this.sink = sink;
    this.reason = reason;
  }
}

/** The Outbox was used after `stop()`. */
export class OutboxStoppedError extends TxOutboxError {
  constructor(operation: string) {
    super('OUTBOX_STOPPED', `outbox.${operation}() was called after outbox.stop(); create a new Outbox.`);
  }
}

/**
 * A transactional delivery lost its row: re-leased by another delivery before its handler started
 * (its lease ran out while the row waited in the local buffer: the handler did not run), or its
 * lease ran out while the handler ran with the row locked (ctx.signal's reason: the transaction was
 * closed). Nothing of the run was written; the row is another delivery's, or redelivered.
 */
export class LeaseLostError extends TxOutboxError {
  readonly messageId: string;

  constructor(
    messageId: string,
    what = 'its lease was lost before the handler started (another delivery re-claimed the row); the handler did not run',
  ) {
    super('LEASE_LOST', `message ${messageId}: ${what}; nothing of this run was written, and the row is redelivered`);
    this.messageId = messageId;
  }
}

/** A middleware broke the seam's contract (returned from consume/publish without calling next()). */
export class MiddlewareError extends TxOutboxError {
  readonly middleware: string;

  /** `consequence`: what became of the delivery or publish; by default it failed. */
  constructor(middleware: string, problem: string, consequence = 'the delivery or publish counts as failed') {
    super('MIDDLEWARE_FAILED', `${middleware} ${problem}; ${consequence}.`);
    this.middleware = middleware;
  }
}

/**
 * A handler used one custom-stat key as two kinds (ctx.stats.incr('x') then ctx.stats.set('x')), or
 * a key whose series would collide with another's (`x` as a counter is `x_total`). Thrown at the
 * call, so the mistake surfaces in the handler instead of as a missing series.
 */
export class CustomStatConflictError extends TxOutboxError {
  readonly key: string;
  readonly kind: string;
  readonly existingKey: string;
  readonly existingKind: string;

  constructor(args: { key: string; kind: string; existingKey: string; existingKind: string; series: string }) {
    super(
      'CUSTOM_STAT_CONFLICT',
      `ctx.stats: key ${JSON.stringify(args.key)} as a ${args.kind} would export ${args.series}, which ${JSON.stringify(args.existingKey)} already exports as a ${args.existingKind}. Use a different key for each kind.`,
    );
    this.key = args.key;
    this.kind = args.kind;
    this.existingKey = args.existingKey;
    this.existingKind = args.existingKind;
  }
}

/** An HTTP endpoint could not bind its port; nothing was left listening. */
export class PortInUseError extends TxOutboxError {
  readonly host: string;
  readonly port: number;

  constructor(args: { host: string; port: number; option: string; cause: unknown }) {
    super(
      'PORT_IN_USE',
      `${args.option}: ${args.host}:${args.port} is already in use. Pick another port (or 0 for any free one), or stop the process holding it.`,
      { cause: args.cause },
    );
    this.host = args.host;
    this.port = args.port;
  }
}

/** One problem in a config file: its path in the config (`consumers.orders.processes`), or its position when the file does not parse. */
export interface ConfigIssue {
  /** Dotted path, `[i]` for list items; '' for the file as a whole. */
  readonly path: string;
  readonly message: string;
  /** 1-based position: of a syntax error, or of the entry (else its nearest section) a path names. */
  readonly line?: number;
  readonly column?: number;
}

/**
 * A `txoutbox run` config file is unreadable, does not parse, or has invalid values. Every problem
 * is collected before this is thrown, so one run shows them all; nothing was started from it.
 */
export class ConfigError extends TxOutboxError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];

  constructor(file: string, issues: readonly ConfigIssue[]) {
    const lines = issues.map((issue) => {
      if (issue.line !== undefined) {
        const where = `${file}:${issue.line}:${issue.column ?? 1}`;
        return issue.path === '' ? `  ${where}: ${issue.message}` : `  ${where}: ${issue.path}: ${issue.message}`;
      }
      return issue.path === '' ? `  ${issue.message}` : `  ${issue.path}: ${issue.message}`;
    });
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    super('INVALID_CONFIG', `${file} is not a valid txoutbox config (${count}):\n${lines.join('\n')}`);
    this.file = file;
    this.issues = issues;
  }
}

/**
 * An error's message for logs, pages and the CLI. Never empty: Node's connect to a host name with
 * several addresses (`localhost` as ::1 and 127.0.0.1) fails with an AggregateError whose message
 * is '', and the CLI printed `txoutbox: ` and nothing else. Such an error is told by its parts
 * (each address's refusal), or by its code.
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message !== '') return error.message;
  const parts = error instanceof AggregateError ? [...new Set(error.errors.map(errorMessage))].filter((part) => part !== '') : [];
  if (parts.length > 0) return parts.join('; ');
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? `${error.name} (${code})` : error.name;
}

/**
 * txoutbox/testing: drain() delivered `maxSteps` messages and rows were still due, so it stopped
 * instead of looping forever (a handler that re-publishes into its own queue, a retry loop).
 */
export class DrainLimitError extends TxOutboxError {
  readonly maxSteps: number;
  /** Rows of subscribed queues still in the in-memory table when drain() gave up. */
  readonly pending: number;

  constructor(maxSteps: number, pending: number) {
    super(
      'DRAIN_LIMIT',
      `drain() delivered ${maxSteps} messages and ${pending} row(s) are still due: a handler that keeps publishing into its own queue, or a retry that never ends? Fix: raise createTestOutbox({ maxDrainSteps }) if the test really needs more deliveries.`,
    );
    this.maxSteps = maxSteps;
    this.pending = pending;
  }
}

/**
 * A handler ran past its time and was failed without waiting for it to settle: its signal is
 * aborted and its delivery fails with this error under the ack policy (a retry by default), so a
 * handler that hangs ends in the DLQ after its attempts instead of holding its row, its slot and its
 * ordering key for good. `bound` says which time: a `lease: 'row-lock'` batch's deadline
 * (leaseTtlMs from its claim: no lease protects those rows); in token mode, `handlerTimeoutMs`
 * (from the handler's start) or, without leaseRenewIntervalMs, the row's lease (leaseTtlMs from its
 * claim).
 */
export class HandlerTimeoutError extends TxOutboxError {
  readonly timeoutMs: number;
  readonly bound: HandlerBound;

  constructor(timeoutMs: number, bound: HandlerBound = 'row-lock batch') {
    super('HANDLER_TIMEOUT', handlerTimeoutMessage(timeoutMs, bound));
    this.bound = bound;
    this.timeoutMs = timeoutMs;
  }
}

/** What a handler ran past: see HandlerTimeoutError. */
export type HandlerBound = 'row-lock batch' | 'lease' | 'handlerTimeoutMs';

function handlerTimeoutMessage(timeoutMs: number, bound: HandlerBound): string {
  switch (bound) {
    case 'handlerTimeoutMs':
      return `the handler ran past handlerTimeoutMs (${timeoutMs} ms) without settling; its delivery failed with this error and whatever the handler does later is ignored. Fix: let the handler end sooner (it can watch ctx.signal), or raise handlerTimeoutMs above its longest run`;
    case 'lease':
      return `the handler ran past its lease (leaseTtlMs ${timeoutMs} ms, no leaseRenewIntervalMs) without settling; its delivery failed with this error and whatever the handler does later is ignored. Fix: let the handler end sooner (it can watch ctx.signal), raise leaseTtlMs above its longest run, or set leaseRenewIntervalMs so a live process keeps its rows while their handlers run`;
    default:
      return `the row-lock batch ran past leaseTtlMs (${timeoutMs} ms) while this handler ran; its transaction is committed without waiting for it. Fix: raise leaseTtlMs above fetchBatchSize × the handler's p99, lower fetchBatchSize, or use the default lease: 'token' for slow handlers`;
  }
}
