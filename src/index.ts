export type { DriftFinding, TxOutboxErrorCode } from './errors.js';
export {
  EmbeddedPostgresError,
  InvalidIdentifierError,
  InvalidOptionError,
  MigrationFailedError,
  NotInTransactionError,
  OutboxStoppedError,
  SchemaDriftError,
  TxOutboxError,
  UnencodableBodyError,
  UnsupportedPostgresError,
} from './errors.js';
export type { FetchUnprocessedOptions } from './outbox.js';
export { Outbox } from './outbox.js';
export type { ConnectionStringOptions, OutboxOptions, PoolOptions } from './outbox-options.js';
export type { Executor } from './producer/executor.js';
export type { OutboxRow } from './producer/outbox-row.js';
export type { PublishBatchOptions, PublishOptions } from './producer/publish-options.js';
export type { MigrateResult } from './schema/migrate.js';
export type { Logger } from './util/logger.js';
export { consoleLogger } from './util/logger.js';
