import {
  type Context,
  INVALID_TRACEID,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  type TextMapGetter,
  trace,
  TraceFlags,
} from '@opentelemetry/api';

/**
 * Reads only string values: row headers are JSONB, and a row written by hand may hold anything
 * there; a number where `traceparent` belongs must mean "no parent", not a propagator error.
 */
const ROW_HEADERS: TextMapGetter<Readonly<Record<string, unknown>>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
};

/**
 * Writes the global propagator's fields (W3C `traceparent` / `tracestate`, and `baggage` when the
 * baggage propagator is registered, as the Node SDK does by default) for `spanContext` into
 * `headers`, which txoutbox merges into every row of the publish call. A throwing custom
 * propagator loses the trace link, never the publish.
 */
export function injectInto(headers: Record<string, string>, withSpan: Context): void {
  try {
    propagation.inject(withSpan, headers);
  } catch {
    // see above
  }
}

/**
 * The context a row's headers carry (span context and baggage), on top of ROOT_CONTEXT, never on
 * the context active in the subscriber loop: that is whatever was active when `outbox.start()`
 * ran (an HTTP request's span, say), and every delivery would otherwise join that trace.
 */
export function extractFrom(headers: Readonly<Record<string, unknown>>): Context {
  try {
    return propagation.extract(ROOT_CONTEXT, headers, ROW_HEADERS);
  } catch {
    return ROOT_CONTEXT;
  }
}

/** The remote span context in `ctx`, when valid. */
export function remoteSpanContext(ctx: Context): SpanContext | undefined {
  const spanContext = trace.getSpanContext(ctx);
  return spanContext !== undefined && trace.isSpanContextValid(spanContext) ? spanContext : undefined;
}

/**
 * The span's trace id for `ctx.traceId` (an exemplar on duration samples): only for a sampled
 * span, since an exemplar pointing at a trace nobody recorded is a dead link.
 */
export function sampledTraceId(span: Span): string | undefined {
  const { traceFlags, traceId } = span.spanContext();
  // The flag first: a dropped span (most of them under a low sampling ratio) stops here. Then the
  // id's shape, without the API's regular expressions (isSpanContextValid cost ~0.5 µs per
  // delivery, issue 18); prometheus/labels.ts traceExemplar bounds what reaches a label anyway.
  if ((traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return typeof traceId === 'string' && traceId.length === 32 && traceId !== INVALID_TRACEID ? traceId : undefined;
}
