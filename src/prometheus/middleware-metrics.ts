import type { AnyRegistry } from './options.js';
import { counter, gauge, histogram } from './registered-metrics.js';

// FastStream's label names and order (faststream/prometheus/container.py), so its dashboards work.
const CONSUME = ['app_name', 'broker', 'handler'] as const;
const PUBLISH = ['app_name', 'broker', 'destination'] as const;

/**
 * prometheusMiddleware's nine series: FastStream's names under `prefix`, its label names in its
 * order, its buckets by default. Created eagerly (a name clash surfaces at construction, not at the
 * first message); a series appears on its first sample.
 */
export function middlewareMetrics(
  registry: AnyRegistry,
  p: string,
  sizeBuckets: readonly number[],
  durationBuckets: readonly number[],
) {
  const received = counter(registry, {
    name: `${p}_received_messages_total`,
    help: 'Messages received, by handler',
    labelNames: CONSUME,
  });
  const size = histogram(registry, {
    name: `${p}_received_messages_size_bytes`,
    help: 'Size of received message bodies in bytes, by handler',
    labelNames: CONSUME,
    buckets: sizeBuckets,
  });
  const inProcess = gauge(registry, {
    name: `${p}_received_messages_in_process`,
    help: 'Messages being handled now',
    labelNames: CONSUME,
  });
  const processed = counter(registry, {
    name: `${p}_received_processed_messages_total`,
    help: 'Messages handled, by handler and status (acked, nacked, rejected, error)',
    labelNames: [...CONSUME, 'status'],
  });
  const processDuration = histogram(registry, {
    name: `${p}_received_processed_messages_duration_seconds`,
    help: 'Time to handle a message in seconds, middlewares inside this one included',
    labelNames: CONSUME,
    buckets: durationBuckets,
    exemplars: true,
  });
  const processExceptions = counter(registry, {
    name: `${p}_received_processed_messages_exceptions_total`,
    help: 'Handler failures, by handler and exception class',
    labelNames: [...CONSUME, 'exception_type'],
  });
  const published = counter(registry, {
    name: `${p}_published_messages_total`,
    help: 'Messages published, by destination queue and status (success, error)',
    labelNames: [...PUBLISH, 'status'],
  });
  const publishDuration = histogram(registry, {
    name: `${p}_published_messages_duration_seconds`,
    help: 'Time of a publish call (the INSERT) in seconds, by destination queue',
    labelNames: PUBLISH,
    buckets: durationBuckets,
    exemplars: true,
  });
  const publishExceptions = counter(registry, {
    name: `${p}_published_messages_exceptions_total`,
    help: 'Failed publish calls, by destination queue and exception class',
    labelNames: [...PUBLISH, 'exception_type'],
  });
  return {
    received,
    size,
    inProcess,
    processed,
    processDuration,
    processExceptions,
    published,
    publishDuration,
    publishExceptions,
  };
}
