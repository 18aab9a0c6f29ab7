export type { DeadLetter, DeadLetterFields, DeadLetterPreview, DlqPage, DlqPreviewPage } from './dlq/dead-letters.js';
export { DeadLetters } from './dlq/dead-letters.js';
export type {
  DlqBatchOptions,
  DlqFailureReason,
  DlqFilter,
  DlqListOptions,
  DlqListPreviewOptions,
  DlqRedriveOptions,
} from './dlq/dlq-options.js';
export { REDRIVEN_FROM_HEADER, REDRIVEN_ORIGINAL_ID_HEADER, REDRIVEN_REASON_HEADER } from './dlq/dlq-sql.js';
export { CAUSATION_ID_HEADER } from './envelope/headers.js';
export type { BodyIssue, DriftFinding, HandlerBound, LockHolder, TxOutboxErrorCode } from './errors.js';
export {
  CustomStatConflictError,
  EmbeddedPostgresError,
  HandlerTimeoutError,
  InvalidBodyError,
  InvalidIdentifierError,
  InvalidOptionError,
  LeaseLostError,
  MiddlewareError,
  MigrationFailedError,
  MigrationLockTimeoutError,
  MissingPeerDependencyError,
  NotInTransactionError,
  OutboxStoppedError,
  PortInUseError,
  SchemaDriftError,
  SchemaNotMigratedError,
  SinkRefusedError,
  TableInOtherSchemaError,
  TxOutboxError,
  UnencodableBodyError,
  UnsupportedPostgresError,
} from './errors.js';
export type { Stats } from './instrumentation/custom-stats.js';
export type {
  AckedEvent,
  DispatchedEvent,
  DlqWrittenEvent,
  DrainTimeoutEvent,
  FetchedEvent,
  LeaseLostEvent,
  LeasePhase,
  NackedRetriedEvent,
  NackedTerminalEvent,
  OutboxEvent,
  PublishedEvent,
  Recorder,
  TerminalReason,
} from './instrumentation/events.js';
export type {
  ConsumeContext,
  ConsumeOutcome,
  ConsumeResult,
  ConsumeStatus,
  CustomStat,
  Middleware,
  OutcomeWrite,
  PublishContext,
  PublishResult,
} from './instrumentation/middleware.js';
export type { SubscriptionInfo } from './outbox.js';
export { Outbox } from './outbox.js';
export type { ConnectionStringOptions, OutboxOptions, PoolOptions } from './outbox-options.js';
export type { Executor, TransactionAdapter, TransactionTarget } from './producer/executor.js';
export type { FetchUnprocessedOptions } from './producer/fetch-unprocessed.js';
export type { OutboxRow } from './producer/outbox-row.js';
export type { CancelTimerOptions, PublishBatchOptions, PublishOptions } from './producer/publish-options.js';
export type { NotifyMode } from './producer/wake-after-commit.js';
export type { PeekedPreview, PeekedRow, PeekOptions, PeekPage, PeekPreviewPage, PeekState } from './queues/peek.js';
export type {
  PauseOptions,
  QueuePauseState,
  QueueStatus,
  QueueStatusReport,
  StatusOptions,
  ThroughputMinute,
} from './queues/queue-status.js';
export type { RelayOptions } from './relay/relay-options.js';
export { RELAY_DEFAULTS } from './relay/relay-options.js';
export type { RelayMessage, RelaySink, SendContext } from './relay/sink.js';
export type { BoundedRetryOptions } from './retry/bounded-retry.js';
export type { RetryContext, RetryStrategy } from './retry/retry-strategy.js';
export type { ConstantRetryOptions, ExponentialRetryOptions, LinearRetryOptions } from './retry/strategies.js';
export { ConstantRetry, ExponentialRetry, LinearRetry, NoRetry } from './retry/strategies.js';
export type { MigrateResult } from './schema/migrate.js';
export type { MigrateOptions } from './schema/migration-lock.js';
export type { ValidateSchemaOptions } from './schema/validate-schema.js';
export type { CausedBy, Handler, HandlerContext, Message } from './subscriber/message.js';
export type { RenderError } from './subscriber/render-error.js';
export type { AckPolicy, LeaseMode, SubscribeOptions } from './subscriber/subscription-options.js';
export type { AnyQueues, BodyOf, PublishBody, QueueMap, QueueName, QueueSchemas } from './typed-events/queue-map.js';
export type {
  InferInput,
  InferOutput,
  StandardSchemaV1,
  StandardSchemaV1Issue,
  StandardSchemaV1Props,
  StandardSchemaV1Result,
} from './typed-events/standard-schema.js';
export type { Logger } from './util/logger.js';
export { consoleLogger } from './util/logger.js';
