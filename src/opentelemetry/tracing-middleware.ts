import {
  type Attributes,
  type Context,
  context,
  diag,
  type Span,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  trace,
  TraceFlags,
  type TracerProvider,
} from '@opentelemetry/api';

import { errorMessage, InvalidOptionError, renderValue } from '../errors.js';
import { type ConsumeObserver, type ObservedConsume, observingMiddleware } from '../instrumentation/consume-observer.js';
import { exceptionTypeOf } from '../instrumentation/events.js';
import type { ConsumeResult, Middleware, PublishContext, PublishResult } from '../instrumentation/middleware.js';
import { boundedLastException, MAX_LAST_EXCEPTION_CHARS, type RenderError } from '../subscriber/render-error.js';
import { Memo } from '../util/memo.js';
import { ATTR, INSTRUMENTATION_SCOPE, MESSAGING_SYSTEM, OPERATION } from './attributes.js';
import { resolveProvider, resolveRaw } from './options.js';
import { extractFrom, injectInto, remoteSpanContext, sampledTraceId } from './propagation.js';
import { type ConsumerSpanRelation, resolveConsumerSpanRelation } from './span-relation.js';

export interface TracingMiddlewareOptions {
  /** Where spans go. @default the global provider (`trace.setGlobalTracerProvider`, the Node SDK's) */
  readonly tracerProvider?: TracerProvider;
  /**
   * `'parent'`: the process span is a child of the publish span, so one trace runs request →
   * outbox → handler. `'link'`: it starts a trace of its own with a link to the publish span, for
   * when consumption happens long after the request (scheduled rows, retries hours later) and one
   * trace spanning both would be misleading, or too long for the tracing backend.
   * @default 'parent'
   */
  readonly consumerSpanRelation?: ConsumerSpanRelation;
  /**
   * `true`: a row whose trace context says "not sampled" gets no process span at all; the handler
   * runs in the row's context as it arrived (its trace id, the not-sampled flag), so follow-ups
   * still carry the trace, not sampled, as children of the publish span instead of a process span
   * nobody records. Equivalent for the parent-based samplers (the SDK's default and every
   * `parentbased_*` OTEL_TRACES_SAMPLER), which drop such a span anyway; wrong for a sampler that
   * may record the child of a not-sampled parent. Saves `startSpan` and its context per dropped
   * delivery (issue 18: BENCHMARKS.md, "tracing and Prometheus seams"). Under
   * `consumerSpanRelation: 'link'` it changes nothing: each process span is a new root there.
   * @default false (every delivery asks the sampler)
   */
  readonly skipUnsampledParents?: boolean;
  /**
   * What of a failure reaches the span (its status message and exception event): the Outbox's
   * `renderError` fits, so what it redacts from the DLQ stays out of the traces too; `null` records
   * the error's type only. With it the stack is left out (it repeats the message). Either way the
   * text is cut at 8 KiB, as the DLQ's `last_exception` is.
   * @default the error's message and stack
   */
  readonly renderError?: RenderError;
}

const KNOWN = ['tracerProvider', 'consumerSpanRelation', 'skipUnsampledParents', 'renderError'];
const MAX_ERROR_TEXT = MAX_LAST_EXCEPTION_CHARS;

/** Text of an error for a span: bounded, as a handler's error may quote a whole response or body. */
function bounded(text: string): string {
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 12)}…[truncated]` : text;
}

function publishAttributes(ctx: PublishContext): Attributes {
  const attributes: Attributes = {
    [ATTR.system]: MESSAGING_SYSTEM,
    [ATTR.operationType]: OPERATION.send.type,
    [ATTR.operationName]: OPERATION.send.name,
    [ATTR.destination]: ctx.queue,
  };
  // semconv: batch APIs carry the count, single-message ones the body size (a batch has many).
  if (ctx.batch) attributes[ATTR.batchCount] = ctx.messageCount;
  else attributes[ATTR.bodySize] = ctx.sizeBytes;
  if (ctx.correlationId !== undefined) attributes[ATTR.conversationId] = ctx.correlationId;
  return attributes;
}

/**
 * What `startSpan` gets for one subscriber's deliveries, made once: the span name and the
 * attributes known before the message is read, which semconv asks for at creation so a sampler can
 * use them. The SDK copies them and never writes to them, so one object serves every delivery.
 */
interface ConsumeStart {
  readonly name: string;
  readonly options: SpanOptions;
}

function consumeStart(subscriber: string, queue: string): ConsumeStart {
  return {
    name: `${OPERATION.process.name} ${queue}`,
    options: {
      kind: SpanKind.CONSUMER,
      attributes: {
        [ATTR.system]: MESSAGING_SYSTEM,
        [ATTR.operationType]: OPERATION.process.type,
        [ATTR.operationName]: OPERATION.process.name,
        [ATTR.destination]: queue,
        [ATTR.subscriber]: subscriber,
      },
    },
  };
}

/**
 * The message's own attributes, set only on a span the sampler kept. One setAttribute call each:
 * setAttributes with an object built per delivery cost ~0.6 µs more per span (the object, and the
 * SDK's for-in over it; BENCHMARKS.md, issue 18 seams, round five).
 */
function setMessageAttributes(span: Span, ctx: ObservedConsume): void {
  span.setAttribute(ATTR.messageId, ctx.messageId);
  span.setAttribute(ATTR.conversationId, ctx.correlationId);
  span.setAttribute(ATTR.bodySize, ctx.sizeBytes);
  span.setAttribute(ATTR.deliveryCount, ctx.deliveriesCount);
}

/** One delivery's process span, from the observer's start to its end. */
interface ProcessSpan {
  /** Undefined when skipUnsampledParents made none. */
  readonly span: Span | undefined;
  /** False for a span the sampler dropped: nothing is set on it. */
  readonly recording: boolean;
  /** The context active around the handler: the row's, with this span. */
  readonly active: Context;
}

/**
 * A thrown failure: ERROR status, `error.type` and the exception event. The event's
 * `exception.type` is the class name too (the SDK would take `error.name`, which is "Error" for
 * any subclass that does not set it), so the two attributes agree.
 */
function markError(span: Span, error: unknown, render: RenderError | undefined): void {
  const type = exceptionTypeOf(error);
  span.setAttribute(ATTR.errorType, type);
  if (render !== undefined) {
    // Unbounded, a poison message's error (a 5 MB response quoted whole) went into every retry's
    // span, and what renderError kept out of the DLQ went to the tracing backend (review).
    const text = boundedLastException(render, error) ?? undefined;
    span.recordException({ name: type, ...(text === undefined ? {} : { message: text }) });
    span.setStatus({ code: SpanStatusCode.ERROR, ...(text === undefined ? {} : { message: text }) });
    return;
  }
  if (error instanceof Error) {
    const message = bounded(error.message);
    span.recordException({ name: type, message, ...(error.stack === undefined ? {} : { stack: bounded(error.stack) }) });
    span.setStatus({ code: SpanStatusCode.ERROR, message });
    return;
  }
  if (error !== undefined && error !== null) span.recordException({ name: type, message: renderValue(error) });
  span.setStatus({ code: SpanStatusCode.ERROR });
}

/**
 * How the handler ended and what txoutbox will write next. Only a thrown failure is an ERROR span:
 * a deliberate ctx.nack() or ctx.reject() is the handler's decision (FastStream's telemetry
 * middleware draws the same line), visible in `messaging.outbox.status` and the outcome.
 */
function recordResult(span: Span, result: ConsumeResult, render: RenderError | undefined): void {
  const { outcome } = result;
  span.setAttribute(ATTR.status, result.status);
  span.setAttribute(ATTR.outcome, outcome.kind);
  if (outcome.kind === 'retry') {
    span.setAttribute(ATTR.retryDelayMs, outcome.delayMs);
    span.addEvent('messaging.outbox.retry', { [ATTR.retryDelayMs]: outcome.delayMs });
  } else if (outcome.kind === 'terminal') {
    span.setAttribute(ATTR.terminalReason, outcome.reason);
    span.addEvent('messaging.outbox.terminal', { [ATTR.terminalReason]: outcome.reason });
  }
  if (result.status === 'error') markError(span, result.error, render);
}

/** span.end(), whose span processors' onEnd may throw: told to `failed`, never to the caller. */
function endSpan(span: Span, failed: (error: unknown) => void): void {
  try {
    span.end();
  } catch (error) {
    failed(error);
  }
}

/**
 * Spans per the OpenTelemetry messaging conventions, from the middleware seam:
 *
 * - `publish <queue>` (PRODUCER) around each publish / publishBatch INSERT, a child of the
 *   caller's active span. The global propagator writes its context into the row headers
 *   (`traceparent`, `tracestate`, `baggage`), so it crosses the table with the row and reaches
 *   whichever process consumes it. A batch is one span with `messaging.batch.message_count`.
 * - `process <queue>` (CONSUMER) around decoding and the handler, a child of (or linked to) the
 *   context read back from the row, and **active while the handler runs**: its spans, logs and
 *   outgoing calls join the trace. It ends when the handler has returned, before the outcome's
 *   write lands (a lease lost after that is the recorder seam's `lease_lost`).
 *
 * Both set `ctx.traceId` (sampled spans only), which prometheusMiddleware attaches to its duration
 * samples as an exemplar, in either order in `middlewares`. No metrics here: they are
 * openTelemetryRecorder's, so nothing is counted twice.
 *
 * A tracing SDK that throws (a span processor's onStart / onEnd, a sampler) costs spans, never a
 * delivery or a publish: reported once on OpenTelemetry's `diag` logger, then ignored.
 */
export function tracingMiddleware(options?: TracingMiddlewareOptions): Middleware {
  const raw = resolveRaw(options, 'tracingMiddleware', KNOWN);
  const provider = resolveProvider(raw, 'tracerProvider', 'getTracer', 'new BasicTracerProvider()') as TracerProvider | undefined;
  const relation = resolveConsumerSpanRelation(raw.consumerSpanRelation);
  const { skipUnsampledParents } = raw;
  if (skipUnsampledParents !== undefined && typeof skipUnsampledParents !== 'boolean') {
    throw new InvalidOptionError({ option: 'skipUnsampledParents', value: skipUnsampledParents, expected: 'a boolean' });
  }
  const skipUnsampled = skipUnsampledParents === true;
  const renderError = raw.renderError as RenderError | undefined;
  if (renderError !== undefined && typeof renderError !== 'function') {
    throw new InvalidOptionError({
      option: 'renderError',
      value: renderError,
      expected: 'a function (error) => string | null',
      fix: "Pass the Outbox's renderError, or leave it out for the error's message and stack.",
    });
  }
  // The global API's tracer is a proxy until an SDK registers, so creating the middleware before
  // the SDK starts still exports to it.
  const tracer = (provider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_SCOPE);
  const starts = new Memo((subscriber: string) => new Memo((queue: string) => consumeStart(subscriber, queue)));

  // The SDK calls span processors and the sampler synchronously from startSpan and span.end(), and
  // its MultiSpanProcessor catches nothing: a user processor or sampler that throws would throw here,
  // into the delivery (a throw at start: the handler never runs, the row is retried; at end: an ack
  // turns into a retry) or into publish() after its INSERT landed in the caller's transaction. So
  // every SDK call is guarded (DESIGN invariant 5): a failed start runs the work without a span, a
  // failed end loses the span, never the message (opentelemetry.test.ts, "a failing tracing SDK").
  // Reported once per middleware on OpenTelemetry's diag logger, where the SDK reports its own
  // failures: a processor that throws for every span would otherwise log once per message.
  let reported = false;
  const spanFailed = (error: unknown): void => {
    if (reported) return;
    reported = true;
    try {
      diag.error(
        `txoutbox tracingMiddleware: the tracing SDK threw (a span processor or the sampler); spans may be missing, deliveries and publishes go on. Later failures are not reported. ${exceptionTypeOf(error)}: ${errorMessage(error)}`,
      );
    } catch {
      // A diag logger that throws, or an error that cannot be printed: the report is lost, nothing else.
    }
  };

  // The consume hook as observer callbacks (instrumentation/consume-observer.ts): the generic
  // hook is built from them, and an Outbox whose consume middlewares are all txoutbox's calls them
  // directly, without the chain's promises.
  const observer: ConsumeObserver<ProcessSpan> = {
    start(ctx) {
      const carried = extractFrom(ctx.headers);
      // Under 'parent' only: a linked span is a new root, which the consumer's own sampler decides,
      // whatever the publisher's flag says. Skipped there, a consumer with `link` and sampler 1 made
      // no span for an unsampled publisher's rows, and its handler ran in that dropped trace.
      if (skipUnsampled && relation === 'parent') {
        const parent = trace.getSpanContext(carried);
        if (parent !== undefined && (parent.traceFlags & TraceFlags.SAMPLED) === 0)
          return { span: undefined, recording: false, active: carried };
      }
      const start = starts.get(ctx.subscriber).get(ctx.queue);
      let { options } = start;
      if (relation === 'link') {
        const remote = remoteSpanContext(carried);
        if (remote !== undefined) options = { ...options, root: true, links: [{ context: remote }] };
      }
      // A try block, not a guard(() => …): no closure per delivery, and no cost until it throws.
      let span: Span | undefined;
      try {
        span = tracer.startSpan(start.name, options, carried);
        // A span the sampler dropped records nothing, so nothing is built for it: no attributes, no
        // outcome, no exception event. It is still made active around the handler (around): its
        // context (the row's trace id, the not-sampled flag) is what a follow-up publish carries, so
        // parent-based sampling downstream keeps dropping the trace (tracing-sampling.test.ts).
        const recording = span.isRecording();
        if (recording) setMessageAttributes(span, ctx);
        ctx.traceId = sampledTraceId(span) ?? ctx.traceId;
        // `carried` keeps the row's baggage in link mode too; only the parent span differs.
        return { span, recording, active: trace.setSpan(carried, span) };
      } catch (error) {
        spanFailed(error);
        // The handler runs in the row's context, without a span of ours (a follow-up publish still
        // carries the row's trace); a span that did start is ended in end(), with nothing recorded.
        return { span, recording: false, active: carried };
      }
    },
    around(run, inner) {
      return context.with(run.active, inner);
    },
    end({ span, recording }, _ctx, result, thrown) {
      if (span === undefined) return;
      // No result: a middleware inside this one failed, and the delivery with it (middleware-chain.ts).
      if (recording)
        try {
          if (result === undefined) markError(span, thrown, renderError);
          else recordResult(span, result, renderError);
        } catch (error) {
          spanFailed(error);
        }
      endSpan(span, spanFailed);
    },
  };

  return observingMiddleware(observer, {
    name: 'opentelemetry',

    async publish(ctx, next) {
      const parent = context.active();
      let span: Span;
      try {
        span = tracer.startSpan(
          `${OPERATION.send.name} ${ctx.queue}`,
          { kind: SpanKind.PRODUCER, attributes: publishAttributes(ctx) },
          parent,
        );
      } catch (error) {
        spanFailed(error);
        // No span: the rows still carry the caller's trace context, so the consumer joins its trace.
        injectInto(ctx.headers, parent);
        await next();
        return;
      }
      const withSpan = trace.setSpan(parent, span);
      injectInto(ctx.headers, withSpan);
      let recording = false;
      try {
        ctx.traceId = sampledTraceId(span) ?? ctx.traceId;
        recording = span.isRecording();
      } catch (error) {
        spanFailed(error);
      }
      // What next() settled with is what publish() gets: a tracing error never replaces it (thrown
      // after the INSERT landed, it would fail the caller's transaction).
      let result: PublishResult;
      try {
        result = await context.with(withSpan, next);
      } catch (error) {
        if (recording)
          try {
            markError(span, error, renderError);
          } catch (spanError) {
            spanFailed(spanError);
          }
        endSpan(span, spanFailed);
        throw error;
      }
      if (recording)
        try {
          const [id] = result.ids;
          if (!ctx.batch && typeof id === 'string') span.setAttribute(ATTR.messageId, id);
          span.setAttribute(ATTR.inserted, result.inserted);
        } catch (error) {
          spanFailed(error);
        }
      endSpan(span, spanFailed);
    },
  });
}
