import {
  type Context,
  INVALID_SPANID,
  INVALID_TRACEID,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
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
 * A `traceparent` in the one form txoutbox (and every W3C injector) writes: version 00, lowercase
 * hex, nothing around or after it. Anything else (whitespace, another version, a suffix, upper
 * case) is left to the propagator, which decides what it means.
 */
const CANONICAL_TRACEPARENT = /^00-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;

/**
 * The span context W3CTraceContextPropagator.extract reads from a canonical `traceparent`, the same
 * object field for field; undefined for any other value (the all-zero ids too, which W3C refuses).
 */
export function canonicalTraceparent(value: string): SpanContext | undefined {
  if (value.length !== 55 || !CANONICAL_TRACEPARENT.test(value)) return undefined;
  const traceId = value.slice(3, 35);
  const spanId = value.slice(36, 52);
  if (traceId === INVALID_TRACEID || spanId === INVALID_SPANID) return undefined;
  // Built in W3C's order (three fields, then isRemote) so that both paths give the SDK objects of
  // one hidden class: a second shape would make its span-context reads polymorphic.
  const spanContext: SpanContext = { traceId, spanId, traceFlags: parseInt(value.slice(53), 16) };
  spanContext.isRemote = true;
  return spanContext;
}

/** What the propagator is asked to read once before the fast path stands in for it (see readsLikeW3C). */
const PROBES = [
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
  '00-00000000000000000000000000000001-0000000000000001-0b',
];

/** The fields a W3C trace-context propagator declares, alone or composed with the W3C baggage one. */
const W3C_FIELDS: ReadonlySet<string> = new Set(['traceparent', 'tracestate', 'baggage']);

/**
 * Whether `propagator` reads a row that carries a canonical `traceparent` and nothing else it
 * declares exactly as canonicalTraceparent does: it declares `traceparent` and no field outside
 * W3C's (a B3 or Jaeger propagator, or a composite with one, declares others), and it reads the
 * probes into the same span context, without baggage. A custom propagator that declares
 * `traceparent` but reads it its own way fails the probes and keeps every extraction.
 */
function readsLikeW3C(propagator: TextMapPropagator): boolean {
  try {
    const fields = propagator.fields();
    if (!fields.includes('traceparent') || !fields.every((field) => W3C_FIELDS.has(field))) return false;
    return PROBES.every((probe) => {
      const carried = propagator.extract(ROOT_CONTEXT, { traceparent: probe }, ROW_HEADERS);
      const read = trace.getSpanContext(carried);
      const expected = canonicalTraceparent(probe);
      return (
        read !== undefined &&
        expected !== undefined &&
        propagation.getBaggage(carried) === undefined &&
        read.traceId === expected.traceId &&
        read.spanId === expected.spanId &&
        read.traceFlags === expected.traceFlags &&
        read.isRemote === true &&
        read.traceState === undefined
      );
    });
  } catch {
    return false;
  }
}

/**
 * The registered global propagator, through the API's own accessor (what `propagation.extract`
 * calls). Not part of the API's typed surface, so it is looked up, not assumed: without it, every
 * row goes through `propagation.extract`.
 */
const globalPropagator = (propagation as unknown as { _getGlobalPropagator?: () => TextMapPropagator })._getGlobalPropagator;

/** The last global propagator judged, and its verdict: judged again whenever another is registered. */
let judged: TextMapPropagator | undefined;
let judgedW3C = false;

/** True when the global propagator reads a canonical `traceparent` as W3C's does (readsLikeW3C). */
function globalReadsLikeW3C(): boolean {
  if (typeof globalPropagator !== 'function') return false;
  const current = globalPropagator.call(propagation);
  if (current !== judged) {
    judged = current;
    judgedW3C = readsLikeW3C(current);
  }
  return judgedW3C;
}

/**
 * The context a row's headers carry (span context and baggage), on top of ROOT_CONTEXT, never on
 * the context active in the subscriber loop: that is whatever was active when `outbox.start()`
 * ran (an HTTP request's span, say), and every delivery would otherwise join that trace.
 *
 * The common row (a canonical `traceparent`, no `tracestate`, no `baggage`) under a W3C
 * propagator skips `propagation.extract` (its composite loop, getter calls and the W3C
 * regular expression with look-aheads, ~0.2 µs per delivery, issue 18) for the same span context;
 * every other row, and every row under another propagator, goes through the global propagator.
 */
export function extractFrom(headers: Readonly<Record<string, unknown>>): Context {
  const { traceparent } = headers;
  if (
    typeof traceparent === 'string' &&
    headers.tracestate === undefined &&
    headers.baggage === undefined &&
    globalReadsLikeW3C()
  ) {
    const carried = canonicalTraceparent(traceparent);
    if (carried !== undefined) return trace.setSpanContext(ROOT_CONTEXT, carried);
  }
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
