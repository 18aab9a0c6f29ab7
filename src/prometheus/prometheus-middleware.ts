import { performance } from 'node:perf_hooks';

import type { Histogram } from 'prom-client';

import { exceptionTypeOf } from '../instrumentation/events.js';
import type { ConsumeResult, Middleware } from '../instrumentation/middleware.js';
import { DURATION_BUCKETS, SIZE_BUCKETS } from './buckets.js';
import { CustomStatMetrics } from './custom-stat-metrics.js';
import { BROKER, traceExemplar } from './labels.js';
import { middlewareMetrics } from './middleware-metrics.js';
import { type PrometheusBaseOptions, resolveBaseOptions, resolveBuckets } from './options.js';
import { allOrNothing } from './registered-metrics.js';

export interface PrometheusMiddlewareOptions extends PrometheusBaseOptions {
  /** Buckets of both duration histograms and of custom durations. @default FastStream's (prometheus_client's defaults) */
  readonly durationBuckets?: readonly number[];
  /** Buckets of `<prefix>_received_messages_size_bytes`. @default FastStream's, 2^4 … 2^24 */
  readonly sizeBuckets?: readonly number[];
}

const KNOWN = ['registry', 'prefix', 'appName', 'durationBuckets', 'sizeBuckets'];

/**
 * A metrics failure must never change what happens to a message: a consume hook that throws after
 * next() turns an ack into a retry, a publish hook that throws fails the caller's transaction
 * (middleware-chain.ts). Inputs are validated so prom-client has nothing to throw about; if it
 * still does, one sample is lost, never a delivery or a publish.
 */
function guard(record: () => void): void {
  try {
    record();
  } catch {
    // see above
  }
}

function observe(metric: Histogram, labels: Record<string, string>, value: number, traceId: string | undefined): void {
  const exemplarLabels = traceExemplar(traceId);
  metric.observe(exemplarLabels === undefined ? { labels, value } : { labels, value, exemplarLabels });
}

/**
 * FastStream's PrometheusMiddleware metrics, from the middleware seam: per delivery (received,
 * size, in process, processed by status, duration, exceptions) and per publish call (published by
 * status, duration, exceptions). What only the outbox knows — fetches, lost leases, terminal
 * reasons, message age — is prometheusRecorder's, under other names, so both share one registry.
 *
 * Duration samples carry a `{ trace_id }` exemplar when a tracing middleware placed before this one
 * set `ctx.traceId`; they appear in OpenMetrics output only (render.ts).
 */
export function prometheusMiddleware(options: PrometheusMiddlewareOptions): Middleware {
  const { raw, base } = resolveBaseOptions(options, 'prometheusMiddleware', KNOWN);
  const { registry, prefix: p, appName } = base;
  const durationBuckets = resolveBuckets('durationBuckets', raw.durationBuckets, DURATION_BUCKETS);
  const sizeBuckets = resolveBuckets('sizeBuckets', raw.sizeBuckets, SIZE_BUCKETS);

  const m = allOrNothing(registry, () => middlewareMetrics(registry, p, sizeBuckets, durationBuckets));
  const customStats = new CustomStatMetrics(registry, p, appName, durationBuckets);

  return {
    name: 'prometheus',

    async consume(ctx, next) {
      const labels = { app_name: appName, broker: BROKER, handler: ctx.subscriber };
      guard(() => {
        m.received.inc(labels);
        m.size.observe(labels, ctx.sizeBytes);
        m.inProcess.inc(labels);
      });
      const t0 = performance.now();
      // next() resolves with the handler's result; it rejects when a middleware inside this one
      // threw or skipped next(), which fails the delivery: an error, typed by what it threw.
      let outcome: { status: ConsumeResult['status']; error: unknown } = { status: 'error', error: undefined };
      try {
        const result = await next();
        outcome = { status: result.status, error: result.error };
      } catch (error) {
        outcome = { status: 'error', error };
        throw error;
      } finally {
        const seconds = (performance.now() - t0) / 1000;
        guard(() => {
          m.inProcess.dec(labels);
          observe(m.processDuration, labels, seconds, ctx.traceId);
          m.processed.inc({ ...labels, status: outcome.status });
          // Only thrown failures: a deliberate nack or reject is an outcome, not an exception.
          if (outcome.status === 'error') m.processExceptions.inc({ ...labels, exception_type: exceptionTypeOf(outcome.error) });
        });
      }
    },

    async publish(ctx, next) {
      const labels = { app_name: appName, broker: BROKER, destination: ctx.queue };
      const t0 = performance.now();
      try {
        const { inserted } = await next();
        guard(() => {
          observe(m.publishDuration, labels, (performance.now() - t0) / 1000, ctx.traceId);
          // Rows that landed: a timerId that was already live inserts 0, and counts 0.
          m.published.inc({ ...labels, status: 'success' }, inserted);
        });
      } catch (error) {
        guard(() => {
          observe(m.publishDuration, labels, (performance.now() - t0) / 1000, ctx.traceId);
          m.published.inc({ ...labels, status: 'error' }, ctx.messageCount);
          m.publishExceptions.inc({ ...labels, exception_type: exceptionTypeOf(error) });
        });
        throw error;
      }
    },

    stat(stat) {
      customStats.record(stat);
    },
  };
}
