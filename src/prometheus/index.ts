export { AGE_BUCKETS, BATCH_BUCKETS, DURATION_BUCKETS, SIZE_BUCKETS } from './buckets.js';
export type { PrometheusBaseOptions } from './options.js';
export { prometheusMiddleware, type PrometheusMiddlewareOptions } from './prometheus-middleware.js';
export { prometheusRecorder, type PrometheusRecorderOptions } from './prometheus-recorder.js';
export { type QueueStateCollector, queueStateCollector, type QueueStateCollectorOptions } from './queue-state-collector.js';
export {
  metricsContentType,
  OPENMETRICS_CONTENT_TYPE,
  prefersOpenMetrics,
  PROMETHEUS_CONTENT_TYPE,
  renderMetrics,
} from './render.js';
export {
  DEFAULT_METRICS_HOST,
  DEFAULT_METRICS_PORT,
  type ServedMetrics,
  serveMetrics,
  type ServeMetricsOptions,
} from './serve-metrics.js';
