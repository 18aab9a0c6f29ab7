import { performance } from 'node:perf_hooks';

import { type ConsumeObserver, observingMiddleware } from '../instrumentation/consume-observer.js';
import { exceptionTypeOf } from '../instrumentation/events.js';
import type { ConsumeResult, Middleware, OutcomeWrite } from '../instrumentation/middleware.js';
import type { Logger } from '../util/logger.js';
import { Memo } from '../util/memo.js';
import { DURATION_BUCKETS, SIZE_BUCKETS } from './buckets.js';
import { CustomStatMetrics } from './custom-stat-metrics.js';
import { boundedLabels, BROKER, type LabelValues } from './labels.js';
import { middlewareMetrics } from './middleware-metrics.js';
import { type PrometheusBaseOptions, resolveBaseOptions, resolveBuckets } from './options.js';
import { allOrNothing } from './registered-metrics.js';
import { CounterSeries, GaugeSeries, HistogramSeries } from './series.js';

export interface PrometheusMiddlewareOptions extends PrometheusBaseOptions {
  /** Buckets of both duration histograms and of custom durations. @default FastStream's (prometheus_client's defaults) */
  readonly durationBuckets?: readonly number[];
  /** Buckets of `<prefix>_received_messages_size_bytes`. @default FastStream's, 2^4 … 2^24 */
  readonly sizeBuckets?: readonly number[];
  /**
   * Distinct `destination` values (queues published to) with series of their own; publishes to
   * queues past them are counted under `destination="_other"`, with one warning. Bounds the series
   * a producer of data-derived queue names (`orders.<tenantId>`) creates. 1 to 100,000. @default 500
   */
  readonly maxDestinations?: number;
  /**
   * Distinct `exception_type` values (error class names), publish and consume together; others
   * are counted under `exception_type="_other"`, with one warning. 1 to 10,000. @default 100
   */
  readonly maxExceptionTypes?: number;
  /** Where the warning of a bound reached goes. A pino logger fits. @default JSON lines on stderr, as the Outbox's */
  readonly logger?: Logger;
}

const KNOWN = [
  'registry',
  'prefix',
  'appName',
  'durationBuckets',
  'sizeBuckets',
  'maxDestinations',
  'maxExceptionTypes',
  'logger',
];

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

type Metrics = ReturnType<typeof middlewareMetrics>;
type Status = ConsumeResult['status'];

/** One delivery's run, between the observer's start and its written. */
interface ConsumeRun {
  readonly series: ConsumeSeries;
  readonly t0: number;
  /** How the run ended as this middleware saw it (end): whether it already counted an exception. */
  status: Status;
}

/**
 * One subscriber's consume series, made on its first delivery and reused (series.ts: no label
 * hashing per message). Keyed by subscriber name and status, bounded by the code base, and by
 * exception class, bounded by maxExceptionTypes (a class can be made at run time).
 */
class ConsumeSeries {
  readonly received: CounterSeries;
  readonly size: HistogramSeries;
  readonly inProcess: GaugeSeries;
  readonly duration: HistogramSeries;
  readonly processed: Memo<Status, CounterSeries>;
  readonly exceptions: Memo<string, CounterSeries>;
  readonly #exceptionTypes: LabelValues;

  constructor(m: Metrics, appName: string, handler: string, exceptionTypes: LabelValues) {
    const labels = { app_name: appName, broker: BROKER, handler };
    this.#exceptionTypes = exceptionTypes;
    this.received = new CounterSeries(m.received, labels);
    this.size = new HistogramSeries(m.size, labels);
    this.inProcess = new GaugeSeries(m.inProcess, labels);
    this.duration = new HistogramSeries(m.processDuration, labels);
    this.processed = new Memo((status) => new CounterSeries(m.processed, { ...labels, status }));
    this.exceptions = new Memo((type) => new CounterSeries(m.processExceptions, { ...labels, exception_type: type }));
  }

  // The per-delivery updates are methods with their own try/catch (what guard() does) rather than
  // guard(() => …): a closure per call was an allocation per message on the drain path (issue 18).

  /** A delivery starts: received, its size, one more in process. */
  started(sizeBytes: number): void {
    try {
      this.received.inc(1);
      this.size.observe(sizeBytes);
      this.inProcess.add(1);
    } catch {
      // see guard()
    }
  }

  /** The chain inside returned (or threw) after `seconds`. */
  ended(seconds: number, traceId: string | undefined, status: Status, error: unknown): void {
    try {
      this.inProcess.add(-1);
      this.duration.observe(seconds, traceId);
      // Only thrown failures: a deliberate nack or reject is an outcome, not an exception.
      if (status === 'error') this.exceptions.get(this.#exceptionTypes.admit(exceptionTypeOf(error))).inc(1);
    } catch {
      // see guard()
    }
  }

  /**
   * The outcome's write landed: processed{status} of the result written, or error when the write
   * did not take (see the observer's written). `seen`: the status this middleware's end() saw.
   */
  written(write: OutcomeWrite, result: ConsumeResult | undefined, seen: Status): void {
    try {
      const status = result === undefined ? 'error' : result.status;
      this.processed.get(write === 'written' ? status : 'error').inc(1);
      // Failed from outside after this middleware saw it end well (an outer middleware threw after
      // next()): the error that failed the delivery is an exception ended() could not count.
      if (status === 'error' && seen !== 'error' && result !== undefined)
        this.exceptions.get(this.#exceptionTypes.admit(exceptionTypeOf(result.error))).inc(1);
    } catch {
      // see guard()
    }
  }
}

/** One destination's publish series (see ConsumeSeries): a queue's, or the overflow's. */
class PublishSeries {
  readonly duration: HistogramSeries;
  readonly success: CounterSeries;
  readonly error: CounterSeries;
  readonly exceptions: Memo<string, CounterSeries>;

  constructor(m: Metrics, appName: string, destination: string) {
    const labels = { app_name: appName, broker: BROKER, destination };
    this.duration = new HistogramSeries(m.publishDuration, labels);
    this.success = new CounterSeries(m.published, { ...labels, status: 'success' });
    this.error = new CounterSeries(m.published, { ...labels, status: 'error' });
    this.exceptions = new Memo((type) => new CounterSeries(m.publishExceptions, { ...labels, exception_type: type }));
  }
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

  // Per middleware: N middlewares on one registry (one per Outbox) hold at most N × the bound.
  // Validated before any metric is registered.
  const { destinations, exceptionTypes } = boundedLabels(
    raw,
    'prometheusMiddleware',
    { destination: 'destination', exceptionType: 'exception_type' },
    { prefix: p, appName },
  );

  const m = allOrNothing(registry, () => middlewareMetrics(registry, p, sizeBuckets, durationBuckets));
  const customStats = new CustomStatMetrics(registry, p, appName, durationBuckets);

  const consumers = new Memo((handler: string) => new ConsumeSeries(m, appName, handler, exceptionTypes));
  // Keyed by the admitted value: a queue past the bound adds nothing here either.
  const publishers = new Memo((destination: string) => new PublishSeries(m, appName, destination));

  // The consume hook as observer callbacks (instrumentation/consume-observer.ts): the generic
  // hook is built from them, and an Outbox whose consume middlewares are all txoutbox's calls them
  // directly, without the chain's promises.
  const observer: ConsumeObserver<ConsumeRun> = {
    start(ctx) {
      const series = consumers.get(ctx.subscriber);
      series.started(ctx.sizeBytes);
      return { series, t0: performance.now(), status: 'error' };
    },
    end(run, ctx, result, thrown) {
      // No result: a middleware inside this one threw or skipped next(), which fails the delivery:
      // an error, typed by what it threw.
      run.status = result === undefined ? 'error' : result.status;
      run.series.ended(
        (performance.now() - run.t0) / 1000,
        ctx.traceId,
        run.status,
        result === undefined ? thrown : result.error,
      );
    },
    written(run, write, result) {
      // processed{status} says what the database did: the status of the result written, which a
      // middleware outside this one may have failed after this one's end() (its ack then became a
      // retry, and the redelivery is the ack); and a run whose outcome was fenced off (lease lost),
      // failed to write, or was abandoned at shutdown is redelivered, so it counts as an error,
      // never as throughput. Counted when the (coalesced) write lands.
      run.series.written(write, result, run.status);
    },
  };

  return observingMiddleware(observer, {
    name: 'prometheus',

    async publish(ctx, next) {
      const series = publishers.get(destinations.admit(ctx.queue));
      const t0 = performance.now();
      try {
        const { inserted } = await next();
        guard(() => {
          series.duration.observe((performance.now() - t0) / 1000, ctx.traceId);
          // Rows that landed: a timerId that was already live inserts 0, and counts 0.
          series.success.inc(inserted);
        });
      } catch (error) {
        guard(() => {
          series.duration.observe((performance.now() - t0) / 1000, ctx.traceId);
          series.error.inc(ctx.messageCount);
          series.exceptions.get(exceptionTypes.admit(exceptionTypeOf(error))).inc(1);
        });
        throw error;
      }
    },

    stat(stat) {
      customStats.record(stat);
    },
  });
}
