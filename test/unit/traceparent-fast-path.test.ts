/**
 * extractFrom's fast path (src/opentelemetry/propagation.ts): a canonical `traceparent` read
 * without the global propagator must give exactly what the propagator gives, and every row the
 * fast path does not own (malformed, another version, all-zero ids, `tracestate` or `baggage`
 * present), and every row under a propagator that is not W3C's, must go through the propagator.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  type Context,
  propagation,
  ROOT_CONTEXT,
  type TextMapGetter,
  type TextMapPropagator,
  trace,
  TraceFlags,
} from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';

import { canonicalTraceparent, extractFrom } from '../../src/opentelemetry/propagation.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const SAMPLED = `00-${TRACE}-${SPAN}-01`;
const NOT_SAMPLED = `00-${TRACE}-${SPAN}-00`;

/** Every traceparent shape the fast path must either read as W3C does or leave to the propagator. */
const TRACEPARENTS = [
  SAMPLED,
  NOT_SAMPLED,
  `00-${TRACE}-${SPAN}-0b`,
  `ff-${TRACE}-${SPAN}-01`, // version ff: invalid
  `01-${TRACE}-${SPAN}-01`, // a future version: W3C reads it
  `01-${TRACE}-${SPAN}-01-what-comes-next`, // a future version with more fields: W3C reads it too
  `00-${TRACE}-${SPAN}-01-extra`, // version 00 with more fields: invalid
  `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
  `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
  `00-${TRACE.toUpperCase()}-${SPAN}-01`, // upper-case hex: invalid
  ` ${SAMPLED}`, // one leading space: W3C allows it
  `${SAMPLED} `,
  `00-${TRACE}-${SPAN}-1`, // one flag digit
  `00-${TRACE.slice(1)}-${SPAN}-01`,
  `00-${TRACE}x${SPAN}-01`,
  `00-${TRACE}-${SPAN}-0g`,
  '',
  'garbage',
];

const GETTER: TextMapGetter<Readonly<Record<string, unknown>>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
};

/** What a context carries that a handler or a downstream inject can see. */
function carried(ctx: Context) {
  const spanContext = trace.getSpanContext(ctx);
  return {
    spanContext: spanContext === undefined ? undefined : { ...spanContext, traceState: spanContext.traceState?.serialize() },
    baggage: propagation
      .getBaggage(ctx)
      ?.getAllEntries()
      .map(([key, entry]) => [key, entry.value]),
  };
}

/** extractFrom and the global propagator agree on `headers`. */
function assertSame(headers: Record<string, unknown>): void {
  assert.deepEqual(
    carried(extractFrom(headers)),
    carried(propagation.extract(ROOT_CONTEXT, headers, GETTER)),
    JSON.stringify(headers),
  );
}

/** A propagator that declares `traceparent` but reads it its own way: every trace it reads is sampled. */
class AlwaysSampledPropagator implements TextMapPropagator {
  readonly #w3c = new W3CTraceContextPropagator();
  extracted = 0;
  inject(context: Context, carrier: unknown, setter: Parameters<TextMapPropagator['inject']>[2]): void {
    this.#w3c.inject(context, carrier, setter);
  }
  extract(context: Context, carrier: unknown, getter: TextMapGetter): Context {
    this.extracted += 1;
    const read = trace.getSpanContext(this.#w3c.extract(context, carrier, getter));
    return read === undefined ? context : trace.setSpanContext(context, { ...read, traceFlags: TraceFlags.SAMPLED });
  }
  fields(): string[] {
    return this.#w3c.fields();
  }
}

/** A propagator reading a header of its own besides W3C's (as a B3 or Jaeger one composed with it would). */
class OwnHeaderPropagator implements TextMapPropagator {
  readonly #w3c = new W3CTraceContextPropagator();
  inject(context: Context, carrier: unknown, setter: Parameters<TextMapPropagator['inject']>[2]): void {
    this.#w3c.inject(context, carrier, setter);
  }
  extract(context: Context, carrier: unknown, getter: TextMapGetter): Context {
    const own = getter.get(carrier, 'x-own-trace');
    if (typeof own === 'string')
      return trace.setSpanContext(context, { traceId: own, spanId: SPAN, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    return this.#w3c.extract(context, carrier, getter);
  }
  fields(): string[] {
    return [...this.#w3c.fields(), 'x-own-trace'];
  }
}

const W3C_AND_BAGGAGE = () =>
  new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] });

after(() => {
  propagation.disable();
});

describe('canonicalTraceparent', () => {
  test('reads what W3CTraceContextPropagator reads, field for field, for the canonical form', () => {
    const w3c = new W3CTraceContextPropagator();
    for (const value of [SAMPLED, NOT_SAMPLED, `00-${TRACE}-${SPAN}-0b`, `00-${TRACE}-${SPAN}-ff`]) {
      const expected = trace.getSpanContext(w3c.extract(ROOT_CONTEXT, { traceparent: value }, GETTER));
      assert.deepEqual(canonicalTraceparent(value), expected, value);
    }
  });

  test('undefined for everything else: malformed, version ff or another, all-zero ids, whitespace, upper case', () => {
    for (const value of TRACEPARENTS.slice(0, 3)) assert.ok(canonicalTraceparent(value) !== undefined, value);
    for (const value of TRACEPARENTS.slice(3)) assert.equal(canonicalTraceparent(value), undefined, value);
  });
});

describe('extractFrom under the W3C trace-context and baggage propagators', () => {
  before(() => {
    propagation.disable();
    propagation.setGlobalPropagator(W3C_AND_BAGGAGE());
  });

  test('every traceparent shape: the same span context as the propagator, or none as it does', () => {
    for (const traceparent of TRACEPARENTS) assertSame({ 'content-type': 'application/json', traceparent });
  });

  test('tracestate or baggage present: both kept, as the propagator reads them', () => {
    assertSame({ traceparent: SAMPLED, tracestate: 'vendor=abc,other=1' });
    assertSame({ traceparent: SAMPLED, baggage: 'tenant=acme,region=eu' });
    assertSame({ traceparent: NOT_SAMPLED, tracestate: 'vendor=abc', baggage: 'tenant=acme' });
    const ctx = extractFrom({ traceparent: SAMPLED, tracestate: 'vendor=abc', baggage: 'tenant=acme' });
    assert.equal(trace.getSpanContext(ctx)?.traceState?.get('vendor'), 'abc');
    assert.equal(propagation.getBaggage(ctx)?.getEntry('tenant')?.value, 'acme');
  });

  test('headers without a usable traceparent: the root context, as the propagator gives', () => {
    for (const headers of [{}, { traceparent: 7 }, { traceparent: null }, { traceparent: [SAMPLED] }, { baggage: 'a=1' }]) {
      assertSame(headers);
    }
  });
});

describe('extractFrom under other propagators', () => {
  test('a custom propagator that declares traceparent but reads it its own way is honoured on every row', () => {
    const custom = new AlwaysSampledPropagator();
    propagation.disable();
    propagation.setGlobalPropagator(custom);
    const before = custom.extracted;
    const ctx = extractFrom({ traceparent: NOT_SAMPLED });
    assert.equal(trace.getSpanContext(ctx)?.traceFlags, TraceFlags.SAMPLED);
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: NOT_SAMPLED }))?.traceFlags, TraceFlags.SAMPLED);
    assert.ok(custom.extracted - before >= 2, 'the propagator read both rows');
  });

  test('a propagator with a header of its own besides traceparent is honoured', () => {
    propagation.disable();
    propagation.setGlobalPropagator(new OwnHeaderPropagator());
    const own = 'abcdef0123456789abcdef0123456789';
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: SAMPLED, 'x-own-trace': own }))?.traceId, own);
    for (const traceparent of TRACEPARENTS) assertSame({ traceparent });
  });

  test('the propagator registered now counts, not the one judged before: W3C, then custom, then W3C again', () => {
    propagation.disable();
    propagation.setGlobalPropagator(W3C_AND_BAGGAGE());
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: NOT_SAMPLED }))?.traceFlags, TraceFlags.NONE);
    propagation.disable();
    propagation.setGlobalPropagator(new AlwaysSampledPropagator());
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: NOT_SAMPLED }))?.traceFlags, TraceFlags.SAMPLED);
    propagation.disable();
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: NOT_SAMPLED }))?.traceFlags, TraceFlags.NONE);
  });

  test('no propagator registered: no parent, as propagation.extract gives', () => {
    propagation.disable();
    assert.equal(trace.getSpanContext(extractFrom({ traceparent: SAMPLED })), undefined);
    for (const traceparent of TRACEPARENTS) assertSame({ traceparent });
  });
});
