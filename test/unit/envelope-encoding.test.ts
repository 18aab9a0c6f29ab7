import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { headersJson } from '../../src/envelope/build-headers.js';
import { bodyKind, decodeBody } from '../../src/envelope/decode-body.js';
import { encodeBody } from '../../src/envelope/encode-body.js';
import { UnencodableBodyError } from '../../src/errors.js';

/** The payload as text, for bodies that encode as JSON. */
const json = (body: unknown): string => {
  const { payload, contentType } = encodeBody(body);
  assert.equal(contentType, 'application/json');
  return payload.toString('utf8');
};

describe('encodeBody: plain bodies skip the replacer, and store what JSON.stringify writes', () => {
  class Point {
    readonly x: number;
    readonly y: number;
    constructor(x: number, y: number) {
      this.x = x;
      this.y = y;
    }
  }
  const nested = (depth: number): unknown => (depth === 0 ? { leaf: true } : { next: nested(depth - 1) });
  const cases: [string, unknown][] = [
    ['a plain object', { n: 1, pad: 'x'.repeat(200), s: 'héllo 🌍 \u0000 \n', ok: true, none: null }],
    ['undefined values and array holes', { gone: undefined, list: [1, undefined, , 3] }], // eslint-disable-line no-sparse-arrays
    ['-0', [-0]],
    ['a null-prototype object', Object.assign(Object.create(null) as object, { a: 1 })],
    ['nested deeper than the pre-check walks', nested(100)],
    ['a Date (its toJSON)', { at: new Date(0) }],
    ['a class instance', { p: new Point(1, 2) }],
    ['a Buffer inside JSON (its toJSON)', { b: Buffer.from([1, 2]) }],
    ['an object with its own toJSON', { v: { toJSON: () => 'custom' } }],
    ['an array with its own toJSON', Object.assign([1, 2], { toJSON: () => 'arr' })],
    ['a getter', { get computed() { return 7; } }], // prettier-ignore
  ];
  for (const [name, body] of cases) {
    test(name, () => {
      assert.equal(json(body), JSON.stringify(body));
    });
  }

  test('what the replacer refuses is refused wherever it sits: behind a toJSON, in a class instance, past the walk depth', () => {
    class Holder {
      readonly map = new Map([[1, 2]]);
    }
    const deep = (depth: number, leaf: unknown): unknown => (depth === 0 ? leaf : [deep(depth - 1, leaf)]);
    const refused: [unknown, RegExp][] = [
      [{ v: { toJSON: () => new Set([1]) } }, /Set/],
      // JSON would store null: refused, on the plain path too.
      [[Number.NaN, 1], /key "0": NaN/],
      [{ v: { toJSON: () => Number.POSITIVE_INFINITY } }, /Infinity has no JSON form/],
      [{ h: new Holder() }, /Map/],
      [deep(100, () => 1), /function/],
      [deep(3, 10n), /BigInt/],
      [{ s: Symbol('x') }, /symbol/],
      // Reported (review): Date's toJSON gives null for an invalid date, stored as null.
      [{ at: new Date('not a date') }, /key "at": an invalid Date/],
      [new Date(Number.NaN), /the body: an invalid Date/],
    ];
    for (const [body, message] of refused) {
      assert.throws(
        () => encodeBody(body),
        (error: unknown) => error instanceof UnencodableBodyError && message.test(error.message),
      );
    }
  });

  test('bytes are copied at the call: a buffer the caller reuses before the statement is sent is stored as it was', () => {
    // Reported (review): publish() kept the caller's Buffer, and its statement is sent after the
    // middlewares ran: a caller reusing its buffer meanwhile stored the later bytes.
    const bytes = Buffer.from('aaaa');
    const { payload } = encodeBody(bytes);
    bytes.fill(0x62);
    assert.equal(payload.toString(), 'aaaa');
    const view = new Uint8Array([1, 2, 3]);
    const encoded = encodeBody(view).payload;
    view[0] = 9;
    assert.deepEqual([...encoded], [1, 2, 3]);
  });

  test('a cycle, and a getter that throws, are reported as before', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(
      () => encodeBody(cyclic),
      (error: unknown) => error instanceof UnencodableBodyError && /circular/.test(error.message),
    );
    const throwing = {
      get broken(): never {
        throw new Error('nope');
      },
    };
    assert.throws(
      () => encodeBody(throwing),
      (error: unknown) => error instanceof UnencodableBodyError && /nope/.test(error.message),
    );
  });

  test('each failure gets its own fix, not always "remove the circular reference"', () => {
    // Review finding: a throwing getter, a toJSON that throws and a body too deep for the stack
    // were all told to remove a circular reference.
    const fixOf = (body: unknown): string => {
      try {
        encodeBody(body);
      } catch (error) {
        assert.ok(error instanceof UnencodableBodyError);
        return error.message.slice(error.message.indexOf('Fix: '));
      }
      return assert.fail('encoded');
    };
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(fixOf(cyclic), 'Fix: remove the circular reference.');
    assert.match(
      fixOf({
        toJSON: () => {
          throw new Error('no');
        },
      }),
      /^Fix: a getter or toJSON\(\) of the body threw/,
    );
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i += 1) deep = [deep];
    assert.match(fixOf(deep), /^Fix: publish a smaller or flatter body/);
  });
});

describe('headersJson writes what JSON.stringify writes', () => {
  const cases: Record<string, string | undefined>[] = [
    {},
    { 'content-type': 'application/json', 'correlation-id': '0b0c2c1e-5a4d-4f4e-9f1e-2d3c4b5a6978' },
    { quote: '"', backslash: '\\', newline: 'a\nb', tab: '\t', nul: '\u0000', del: '\u007f', ctrl: '\u001f' },
    { 'ünïcode ✓': '🌍 漢字', separators: '\u2028\u2029', lone: '\ud800', '': '' },
    { gone: undefined, kept: 'x' },
  ];
  for (const headers of cases) {
    test(JSON.stringify(headers), () => {
      assert.equal(headersJson(headers), JSON.stringify(headers));
    });
  }
});

describe('bodyKind reads the media type, not a prefix', () => {
  test('application/json (with parameters) is JSON; jsonl, json-seq and json5 are bytes', () => {
    // Review finding: a Buffer relabelled application/jsonl was parsed as JSON, and every delivery failed.
    const kind = (contentType: unknown) => bodyKind({ 'content-type': contentType } as Record<string, string>);
    assert.equal(kind('application/json'), 'json');
    assert.equal(kind('Application/JSON; charset=utf-8'), 'json');
    for (const relabel of ['application/jsonl', 'application/json-seq', 'application/json5', 'application/x-protobuf'])
      assert.equal(kind(relabel), 'bytes', relabel);
    assert.equal(kind('text/plain; charset=utf-8'), 'text');
    assert.equal(kind('text/csv'), 'text');
    assert.equal(kind('text/csv; charset="UTF-8"'), 'text');
    // Another charset decoded as UTF-8 would be mangled: the bytes, as stored.
    assert.equal(kind('text/csv; charset=iso-8859-1'), 'bytes');
    assert.equal(kind('text/plain; charset=us-ascii'), 'text');
    assert.equal(kind('application/json; charset=utf-16'), 'bytes');
    assert.equal(kind(7), 'bytes');
    assert.equal(bodyKind({}), 'bytes');
    const lines = Buffer.from('{"a":1}\n{"b":2}');
    assert.equal(decodeBody(lines, { 'content-type': 'application/jsonl' }), lines);
  });
});
