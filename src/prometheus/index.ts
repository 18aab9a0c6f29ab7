export { AGE_BUCKETS, DURATION_BUCKETS, SIZE_BUCKETS } from './buckets.js';
export type { PrometheusBaseOptions } from './options.js';
export { prometheusMiddleware, type PrometheusMiddlewareOptions } from './prometheus-middleware.js';
export { prometheusRecorder, type PrometheusRecorderOptions } from './prometheus-recorder.js';
export {
  metricsContentType,
  OPENMETRICS_CONTENT_TYPE,
  prefersOpenMetrics,
  PROMETHEUS_CONTENT_TYPE,
  renderMetrics,
} from './render.js';
