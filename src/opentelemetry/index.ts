export { INSTRUMENTATION_SCOPE } from './attributes.js';
export { OTEL_AGE_BUCKETS, OTEL_BATCH_BUCKETS, OTEL_DURATION_BUCKETS } from './instruments.js';
export { openTelemetryRecorder, type OpenTelemetryRecorderOptions } from './meter-recorder.js';
export type { ConsumerSpanRelation } from './span-relation.js';
export { tracingMiddleware, type TracingMiddlewareOptions } from './tracing-middleware.js';
