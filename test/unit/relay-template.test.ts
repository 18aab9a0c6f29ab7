import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidOptionError, SinkRefusedError } from '../../src/errors.js';
import type { RelayMessage } from '../../src/relay/sink.js';
import { compileDestination } from '../../src/relay/template.js';

function message(fields: Partial<RelayMessage> = {}): RelayMessage {
  return {
    messageId: 'txoutbox.outbox:42',
    id: '42',
    queue: 'orders',
    orderingKey: 'customer-7',
    payload: Buffer.from('{}'),
    headers: { 'content-type': 'application/json', 'correlation-id': 'c-1', tenant: 'acme' },
    correlationId: 'c-1',
    createdAt: new Date(0),
    deliveriesCount: 1,
    ...fields,
  };
}

/** The SinkRefusedError a compiled destination throws for `row`. */
function refusal(of: (row: RelayMessage) => string, row: RelayMessage): SinkRefusedError {
  try {
    of(row);
  } catch (error) {
    assert.ok(error instanceof SinkRefusedError, `expected SinkRefusedError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the destination to refuse the row');
}

test('a fixed string is the destination of every row; {{ and }} are literal braces', () => {
  assert.equal(compileDestination('s', 'subject', 'orders.created')(message()), 'orders.created');
  assert.equal(compileDestination('s', 'subject', 'a{{b}}c')(message()), 'a{b}c');
  assert.equal(compileDestination('s', 'subject', '{{queue}}')(message()), '{queue}');
});

test('a template fills {queue}, {orderingKey}, {messageId}, {id} and {headers.<name>} from the row', () => {
  const of = compileDestination('s', 'subject', '{queue}/{orderingKey}/{messageId}/{id}/{headers.tenant}');
  assert.equal(of(message()), 'orders/customer-7/txoutbox.outbox:42/42/acme');
  assert.equal(
    of(message({ queue: 'refunds', headers: { tenant: 'globex' } })),
    'refunds/customer-7/txoutbox.outbox:42/42/globex',
  );
  assert.equal(compileDestination('s', 'subject', '{{{queue}}}')(message()), '{orders}');
});

test('a row without what its template names is refused for good, naming the option, the template and the row', () => {
  const byKey = refusal(compileDestination('rabbitmq', 'routingKey', 'k.{orderingKey}'), message({ orderingKey: null }));
  assert.equal(byKey.sink, 'rabbitmq');
  assert.match(
    byKey.message,
    /routingKey "k\.\{orderingKey\}" names \{orderingKey\}, which message txoutbox\.outbox:42 does not have/,
  );

  const byHeader = refusal(compileDestination('nats', 'subject', 't.{headers.region}'), message());
  assert.match(byHeader.message, /names header "region", which message txoutbox\.outbox:42 does not have/);
  // An empty value cannot be routed either.
  refusal(compileDestination('nats', 'subject', 't.{headers.region}'), message({ headers: { region: '' } }));
});

test('{headers.<name>} reads the row’s own headers only, never Object.prototype', () => {
  // Row headers come from JSON: a plain object whose prototype has constructor, toString, __proto__…
  const of = compileDestination('s', 'subject', 'x.{headers.constructor}');
  refusal(of, message());
  refusal(compileDestination('s', 'subject', 'x.{headers.toString}'), message());
  refusal(compileDestination('s', 'subject', 'x.{headers.__proto__}'), message());
  // …while a row that does carry such a header is routed by it.
  assert.equal(of(message({ headers: JSON.parse('{"constructor":"c"}') as Record<string, string> })), 'x.c');
});

test('an encoder, when given, escapes every value filled in, never the template’s own text', () => {
  const of = compileDestination('webhook', 'url', 'https://h/{queue}?key={orderingKey}', encodeURIComponent);
  assert.equal(of(message({ queue: 'a/b', orderingKey: 'k&x=1' })), 'https://h/a%2Fb?key=k%26x%3D1');
  const fixed = compileDestination('webhook', 'url', 'https://h/a b', encodeURIComponent);
  assert.equal(fixed(message()), 'https://h/a b');
  const refusing = compileDestination('webhook', 'url', 'https://h/{queue}', () => {
    throw new SinkRefusedError('webhook', 'no');
  });
  refusal(refusing, message());
});

test('a function is called per row; anything but a non-empty string is refused, whatever it returned', () => {
  const of = compileDestination('s', 'subject', (row) => `q.${row.queue}`);
  assert.equal(of(message()), 'q.orders');
  for (const value of ['', undefined, null, 7, 10n, Symbol('s'), { a: 1 }]) {
    const refused = refusal(
      compileDestination('s', 'subject', () => value as unknown as string),
      message(),
    );
    assert.match(refused.message, /subject returned .* for message txoutbox\.outbox:42, not a non-empty string/);
  }
});

test('a function that throws keeps its own error (a retry), not a refusal', () => {
  const of = compileDestination('s', 'subject', () => {
    throw new Error('lookup failed');
  });
  assert.throws(() => of(message()), /lookup failed/);
});

test('bad destinations are InvalidOptionError naming the option', () => {
  for (const bad of ['', 7, null, undefined, {}]) {
    assert.throws(
      () => compileDestination('s', 'subject', bad as string),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'subject',
    );
  }
  for (const template of ['{nope}', '{headers.}', 'a{', 'a}b', '{queue', '{}', '{ queue }', '{headers}']) {
    assert.throws(
      () => compileDestination('s', 'routingKey', template),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === 'routingKey' && /\{queue\}, \{orderingKey\}/.test(error.expected),
      template,
    );
  }
});
