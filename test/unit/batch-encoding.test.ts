import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { batchHeaderLines, buildHeaders, headersJson, withInjectedHeaders } from '../../src/envelope/build-headers.js';
import { encodeBody } from '../../src/envelope/encode-body.js';
import { MAX_PAYLOAD_BYTES, PayloadBuffer } from '../../src/envelope/payload-buffer.js';
import { InvalidOptionError, UnencodableBodyError } from '../../src/errors.js';
import type { OutboxEvent } from '../../src/index.js';
import { MiddlewareChain } from '../../src/instrumentation/middleware-chain.js';
import { encodeBatch, prepareBatch } from '../../src/producer/prepare-bodies.js';
import { resolvePublishOptions } from '../../src/producer/publish-options.js';
import { consoleLogger } from '../../src/util/logger.js';

const BODIES: unknown[] = [
  Buffer.from([0, 10, 44, 92, 255]),
  new Uint8Array([1, 2, 3]).subarray(1),
  '',
  'ascii text',
  // A lone surrogate is refused in a string body (encode-body.ts); JSON keeps it, escaped.
  'héllo 🌍 漢字 \u0000 \n',
  { lone: '\ud800 surrogate' },
  { nested: ['\r\n', null, 1.5], quote: '"\\' },
  [1, 'x', true],
  42,
  null,
  Buffer.alloc(0),
];

/** What publish() stores for each body: encodeBody's payload, buildHeaders + withInjectedHeaders' JSON. */
function singles(
  bodies: readonly unknown[],
  options: Parameters<typeof resolvePublishOptions>[0],
  injected: Record<string, string>,
) {
  const resolved = resolvePublishOptions(options, true);
  return bodies.map((body) => {
    const { payload, contentType } = encodeBody(body);
    const headers = buildHeaders({ headers: resolved.headers, contentType, correlationId: resolved.correlationId });
    return { payload, headers: JSON.parse(withInjectedHeaders(headers, injected)) as Record<string, string> };
  });
}

/** encodeBatch + batchHeaderLines, split back into rows as the statement does (substring, one line each). */
function batchRows(
  bodies: readonly unknown[],
  options: Parameters<typeof resolvePublishOptions>[0],
  injected: Record<string, string>,
) {
  const resolved = resolvePublishOptions(options, true);
  const batch = encodeBatch(bodies, resolved);
  const lines = batchHeaderLines(resolved.headers, injected, batch.contentTypes, batch.correlationIds).split('\n');
  assert.equal(lines.length, bodies.length, 'one header line per row');
  let start = 0;
  return batch.lengths.map((length, i) => {
    const payload = batch.payloads.subarray(start, start + length);
    start += length;
    return { payload: Buffer.from(payload), headers: JSON.parse(lines[i] ?? '') as Record<string, string> };
  });
}

const withoutCorrelation = (rows: { payload: Buffer; headers: Record<string, string> }[]) =>
  rows.map(({ payload, headers }) => {
    const { 'correlation-id': correlationId, ...rest } = headers;
    assert.ok(correlationId !== undefined && correlationId.length > 0, 'every row has a correlation id');
    return { payload, headers: rest };
  });

describe('encodeBatch + batchHeaderLines store what publish() stores for each body', () => {
  const cases: [string, Parameters<typeof resolvePublishOptions>[0], Record<string, string>][] = [
    ['no headers', {}, {}],
    ['user headers with odd characters', { headers: { note: 'multi\nline, "quoted" ✓', 'x-empty': '', ünï: '🌍' } }, {}],
    [
      'injected headers: they win over the caller’s, never over the envelope’s',
      { headers: { traceparent: 'mine', k: 'v' } },
      { traceparent: '00-abc-def-01', 'content-type': 'evil', 'correlation-id': 'evil', extra: 'x\ny' },
    ],
  ];
  for (const [name, options, injected] of cases) {
    test(name, () => {
      assert.deepEqual(
        withoutCorrelation(batchRows(BODIES, options, injected)),
        withoutCorrelation(singles(BODIES, options, injected)),
      );
    });
  }

  test('a shared correlation id (option or header) on every row; otherwise one fresh id per row', () => {
    for (const options of [{ correlationId: 'req-1' }, { headers: { 'correlation-id': 'req-1' } }]) {
      assert.deepEqual(
        batchRows(['a', 'b'], options, {}).map((row) => row.headers['correlation-id']),
        ['req-1', 'req-1'],
      );
    }
    const fresh = batchRows(['a', 'b', 'c'], {}, {}).map((row) => row.headers['correlation-id']);
    assert.equal(new Set(fresh).size, 3);
  });

  test('a user content type relabels bytes only, per row, as buildHeaders does', () => {
    const options = { headers: { 'content-type': 'application/protobuf' } };
    assert.deepEqual(
      batchRows([Buffer.from('x')], options, {}).map((row) => row.headers['content-type']),
      ['application/protobuf'],
    );
    // A text body in the same batch: the same error publish() throws, before any statement.
    assert.throws(
      () => encodeBatch([Buffer.from('x'), 'text'], resolvePublishOptions(options, true)),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === 'headers["content-type"]' && /bodies\[1\]/.test(error.message),
    );
    assert.throws(
      () => encodeBatch(['a'], resolvePublishOptions({ correlationId: 'a', headers: { 'correlation-id': 'b' } }, true)),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'correlationId',
    );
  });

  test('an unencodable body fails the batch with encodeBody’s error', () => {
    assert.throws(
      () => encodeBatch(['ok', undefined], resolvePublishOptions({}, true)),
      // Which body, in a batch of thousands: reported (review) without its index.
      (error: unknown) =>
        error instanceof UnencodableBodyError && /^bodies\[1\]: Cannot encode the body: it is undefined/.test(error.message),
    );
    assert.throws(
      () => encodeBatch([{ big: 1n }], resolvePublishOptions({}, true)),
      (error: unknown) => error instanceof UnencodableBodyError && /BigInt/.test(error.message),
    );
  });

  test('headers JSON is exactly headersJson of the same map', () => {
    const resolved = resolvePublishOptions({ headers: { a: '1', b: '"2"' } }, true);
    const line = batchHeaderLines(resolved.headers, {}, ['application/json'], ['0b0c2c1e-5a4d-4f4e-9f1e-2d3c4b5a6978']);
    assert.equal(
      line,
      headersJson({
        a: '1',
        b: '"2"',
        'content-type': 'application/json',
        'correlation-id': '0b0c2c1e-5a4d-4f4e-9f1e-2d3c4b5a6978',
      }),
    );
  });
});

describe('PayloadBuffer', () => {
  test('writes text as UTF-8 and bytes at their offsets, growing past its first guess', () => {
    const parts: (string | Uint8Array)[] = [
      'abc',
      '',
      Buffer.from([0, 255]),
      '🌍漢字é',
      '\ud800',
      'x'.repeat(1000),
      new Uint8Array(300).fill(7),
    ];
    const buffer = new PayloadBuffer(4);
    const lengths = parts.map((part) => (typeof part === 'string' ? buffer.writeText(part) : buffer.writeBytes(part)));
    const expected = parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part)));
    assert.deepEqual(
      lengths,
      expected.map((part) => part.length),
    );
    assert.deepEqual(buffer.finish(), Buffer.concat(expected));
  });

  test('size guard: past the limit a typed error names the option and the limit, before anything is sent', () => {
    const buffer = new PayloadBuffer(8, 10);
    buffer.writeText('12345');
    assert.throws(
      () => buffer.writeBytes(new Uint8Array(6)),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === 'bodies' &&
        /11 bytes of payload/.test(error.message) &&
        /at most 10 bytes/.test(error.message) &&
        /Split the batch/.test(error.message),
    );
    // Multi-byte text is measured in bytes, not characters.
    assert.throws(() => new PayloadBuffer(2, 10).writeText('ééééé é'), InvalidOptionError);
    assert.throws(
      () => encodeBatch(['x'.repeat(6), 'y'.repeat(6)], resolvePublishOptions({}, true), 10),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'bodies',
    );
    assert.equal(MAX_PAYLOAD_BYTES, 2 ** 30 - 1, "PostgreSQL's largest value");
  });
});

test('an oversized batch fails before any statement, through the publish middlewares and a published error event', async () => {
  const events: OutboxEvent[] = [];
  let insertRan = false;
  const middlewares = new MiddlewareChain(
    [
      {
        name: 'watch',
        publish: async (_ctx, next) => {
          try {
            await next();
          } finally {
            insertRan = true; // the chain ran around the failing insert
          }
        },
      },
    ],
    consoleLogger('error'),
  );
  const ctx = { middlewares, emit: (event: OutboxEvent) => events.push(event), schemas: undefined };
  await assert.rejects(
    prepareBatch(ctx, 'big.q', ['x'.repeat(8), 'y'.repeat(8)], resolvePublishOptions({}, true), 10),
    (error: unknown) => error instanceof InvalidOptionError && error.option === 'bodies',
  );
  assert.ok(insertRan);
  assert.deepEqual(
    events.map((event) => [event.type, (event as { status?: string }).status]),
    [['published', 'error']],
  );
  // Under the limit the same batch encodes.
  const batch = await prepareBatch(ctx, 'big.q', ['x'.repeat(8), 'y'.repeat(8)], resolvePublishOptions({}, true), 16);
  assert.equal(batch.payloads.toString(), 'xxxxxxxxyyyyyyyy');
  assert.deepEqual(batch.lengths, [8, 8]);
});
