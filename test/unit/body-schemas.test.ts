import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { z } from 'zod';

import { InvalidBodyError, InvalidOptionError, Outbox, type StandardSchemaV1 } from '../../src/index.js';
import { bodyIssues, checkPublishedBodies, checkPublishedBody, resolveBodySchemas } from '../../src/typed-events/body-schemas.js';

const URL = 'postgres://app@127.0.0.1:1/app';

describe('the schemas option is validated once, at construction', () => {
  test('a value that is not a Standard Schema names the queue, and the fix', () => {
    assert.throws(
      () => new Outbox({ connectionString: URL, schemas: { 'order.created': { parse: () => 1 } } as never }),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === 'schemas["order.created"]' &&
        /Standard Schema v1/.test(error.message) &&
        /wrap your validator/.test(error.message),
    );
  });

  test('not an object, an empty queue name', () => {
    assert.throws(
      () => resolveBodySchemas([z.string()]),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'schemas',
    );
    assert.throws(
      () => resolveBodySchemas({ '': z.string() }),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'schemas[""]',
    );
  });

  test('none, an empty map or only undefined entries: no schemas at all (nothing to pay on the hot path)', () => {
    assert.equal(resolveBodySchemas(undefined), undefined);
    assert.equal(resolveBodySchemas({}), undefined);
    assert.equal(resolveBodySchemas({ a: undefined }), undefined);
    assert.equal(resolveBodySchemas({ a: z.string() })?.size, 1);
  });
});

describe('body checks', () => {
  test('a synchronous schema is checked synchronously (no await on the publish path)', () => {
    const check = checkPublishedBody(z.object({ n: z.number().default(1) }), 'q', {});
    assert.ok(!(check instanceof Promise));
    assert.deepEqual(check, { ok: true, value: { n: 1 } });
  });

  test('an async schema settles to the same shape', async () => {
    const schema = z.string().refine(async (value) => Promise.resolve(value === 'yes'), 'must be yes');
    const check = checkPublishedBody(schema, 'q', 'no');
    assert.ok(check instanceof Promise);
    const settled = await check;
    assert.equal(settled.ok, false);
    assert.ok(!settled.ok && settled.error instanceof InvalidBodyError);
    assert.deepEqual(!settled.ok && settled.error.issues, [{ path: '(root)', message: 'must be yes' }]);
  });

  test('the error names the queue, each issue path and message, and the fix', () => {
    const schema = z.object({ items: z.array(z.object({ qty: z.number() })), note: z.string() });
    const check = checkPublishedBody(schema, 'order.created', { items: [{ qty: 1 }, { qty: 'two' }] });
    assert.ok(!(check instanceof Promise) && !check.ok);
    const error = check.error;
    assert.equal(error.code, 'INVALID_BODY');
    assert.equal(error.queue, 'order.created');
    assert.equal(error.phase, 'publish');
    assert.deepEqual(
      error.issues.map((issue) => issue.path),
      ['items[1].qty', 'note'],
    );
    assert.match(
      error.message,
      /^publish to "order\.created": the body does not match the queue's schema: items\[1\]\.qty: .+; note: .+\. Pass a body that matches schemas\["order\.created"\]/,
    );
  });

  test('a batch reports the issues of every invalid body, each under its place in the batch', async () => {
    const check = await checkPublishedBodies(z.object({ n: z.number() }), 'q', [{ n: 1 }, { n: 'x' }, 'y']);
    assert.ok(!check.ok);
    assert.deepEqual(
      check.error.issues.map((issue) => issue.path),
      ['bodies[1].n', 'bodies[2]'],
    );
  });

  test('path segments as the spec allows them: keys, indexes, { key } objects, symbols', () => {
    const sym = Symbol('s');
    const issues = bodyIssues([{ message: 'm', path: ['a', 0, { key: 'b' }, { key: 2 }, sym] }]);
    assert.deepEqual(issues, [{ path: 'a[0].b[2].Symbol(s)', message: 'm' }]);
  });

  test('a hand-written schema (no library) works through the same interface', () => {
    const even: StandardSchemaV1<number> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value) => (typeof value === 'number' && value % 2 === 0 ? { value } : { issues: [{ message: 'odd' }] }),
      },
    };
    assert.deepEqual(checkPublishedBody(even, 'q', 2), { ok: true, value: 2 });
    const failed = checkPublishedBody(even, 'q', 3);
    assert.ok(!(failed instanceof Promise) && !failed.ok && failed.error.issues[0]?.message === 'odd');
  });
});
