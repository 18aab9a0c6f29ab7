/**
 * txoutbox/testing: test handlers and the code that publishes without a database.
 *
 * - createTestOutbox(): an in-memory outbox (publish, subscribe, drain, a controllable clock,
 *   inspection of what was published, acked, retried and dead-lettered), kept equal to the real
 *   one by a contract suite.
 * - createHandlerContext() / runHandler() / testMessage(): one handler's decision in one line.
 *
 * What is and is not simulated: architecture/testing.md.
 */
export { DrainLimitError } from '../errors.js';
export { TestClock } from './clock.js';
export type { HandlerContextOptions, TestDecision, TestHandlerContext } from './handler-context.js';
export { createHandlerContext, runHandler, testMessage } from './handler-context.js';
export type { DrainOptions, DrainResult } from './memory-drain.js';
export type { AckedRecord, RetriedRecord } from './memory-outcomes.js';
export type { PublishedRecord } from './test-outbox.js';
export { createTestOutbox, TestOutbox } from './test-outbox.js';
export type { TestOutboxOptions } from './test-outbox-options.js';
export type { TransactionState } from './test-transaction.js';
export { TestTransaction } from './test-transaction.js';
