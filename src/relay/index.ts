/**
 * `txoutbox/relay`: sinks that carry outbox rows to a broker, for `outbox.relay(queues, sink)`.
 * Each sink loads its client library (an optional peer dependency) when it is created, so importing
 * this entry point needs none of them.
 */
export { SinkRefusedError } from '../errors.js';
export type { RelayMessage, RelaySink, SendContext } from './sink.js';
