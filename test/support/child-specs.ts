import type { ConsumerChildSpec, RelayChildSpec } from '../../src/runner/protocol.js';

/** What a child spec for ConsumerSlot tests holds when its child never reads it (a fake, or a fork that fails). */
const UNUSED_CHILD = {
  databaseUrl: 'postgres://unused',
  poolSize: 1,
  queryTimeoutMs: 10_000,
  table: 'outbox',
  dlqTable: false,
  gracefulTimeoutMs: 1000,
  queues: ['orders'],
  subscribe: {},
  metricsPrefix: 'txoutbox',
  flushIntervalMs: 500,
  statsd: null,
} as const;

export const RELAY_CHILD_SPEC: RelayChildSpec = {
  ...UNUSED_CHILD,
  consumer: 'to-broker',
  sink: { type: 'webhook', options: { url: 'http://127.0.0.1:1/hook' } },
};

export const CONSUMER_CHILD_SPEC: ConsumerChildSpec = {
  ...UNUSED_CHILD,
  consumer: 'orders',
  handlerPath: '/unused.js',
  handlerExport: 'default',
};
