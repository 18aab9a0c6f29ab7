import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { z } from 'zod';

import { InvalidBodyError, InvalidOptionError, Outbox, type StandardSchemaV1 } from '../../src/index.js';
import { type ClaimedRecord, type HandlerContext, toMessage } from '../../src/subscriber/message.js';
import { bodyIssues, checkPublishedBodies, checkPublishedBody, resolveBodySchemas } from '../../src/typed-events/body-schemas.js';
import { validatingHandler } from '../../src/typed-events/validating-handler.js';

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

describe("the consume-side wrapper: what cannot succeed is rejected, the rest is the handler's", () => {
  function delivered(payload: string, contentType = 'application/json') {
    const record: ClaimedRecord = {
      id: '7',
      queue: 'q',
      payload: Buffer.from(payload),
      headers: { 'content-type': contentType },
      created_at: new Date(),
      deliveries_count: 1,
      attempts_count: 0,
      first_attempt_at: null,
      timer_id: null,
      last_exception_type: null,
      ordering_key: null,
    };
    const rejected: (string | undefined)[] = [];
    const ctx = { reject: (reason?: string) => void rejected.push(reason) } as unknown as HandlerContext;
    return { message: toMessage(record), ctx, rejected };
  }

  function wrap(schema: StandardSchemaV1, handler: () => void = () => undefined) {
    const ran: unknown[] = [];
    const wrapped = validatingHandler(
      (message) => {
        ran.push(message.body);
        handler();
        return undefined;
      },
      resolveBodySchemas({ q: schema }),
      ['q'],
    );
    return { wrapped, ran };
  }

  test('bytes labelled JSON that are not JSON: rejected as InvalidBodyError at (root), the decode error its cause', () => {
    const { wrapped, ran } = wrap(z.object({ a: z.number() }));
    const { message, ctx, rejected } = delivered('{"a": 1,,}');
    let thrown: unknown;
    try {
      void wrapped(message, ctx);
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof InvalidBodyError, String(thrown));
    assert.equal(thrown.phase, 'consume');
    assert.equal(thrown.messageId, '7');
    assert.deepEqual(
      thrown.issues.map((issue) => issue.path),
      ['(root)'],
    );
    assert.match(thrown.issues[0]?.message ?? '', /^the body is labelled application\/json but cannot be decoded: /);
    assert.ok(thrown.cause instanceof SyntaxError, String(thrown.cause));
    assert.equal(Object.keys(thrown).includes('cause'), false, 'not enumerable, as Error defines it');
    assert.deepEqual(rejected, ['the body cannot be decoded']);
    assert.deepEqual(ran, []);
  });

  test("a validate that throws or rejects: not rejected (a failure like the handler's, retried by the policy), that error as is", async () => {
    const throwing: StandardSchemaV1 = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: () => {
          throw new TypeError('schema bug');
        },
      },
    };
    const sync = wrap(throwing);
    const first = delivered('{}');
    assert.throws(
      () => sync.wrapped(first.message, first.ctx),
      (error: unknown) => error instanceof TypeError,
    );
    assert.equal(first.rejected.length, 0);
    assert.deepEqual(sync.ran, []);

    const rejecting: StandardSchemaV1 = {
      '~standard': { version: 1, vendor: 'test', validate: () => Promise.reject(new RangeError('async schema bug')) },
    };
    const async = wrap(rejecting);
    const second = delivered('{}');
    await assert.rejects(
      Promise.resolve(async.wrapped(second.message, second.ctx)),
      (error: unknown) => error instanceof RangeError,
    );
    assert.equal(second.rejected.length, 0);
    assert.deepEqual(async.ran, []);
  });

  test("the handler's own failure is not rejected: the ack policy and the retry decide it", async () => {
    const { wrapped, ran } = wrap(z.object({ a: z.number() }), () => {
      throw new Error('handler failed');
    });
    const sync = delivered('{"a":1}');
    assert.throws(() => wrapped(sync.message, sync.ctx), /handler failed/);
    assert.deepEqual(sync.rejected, []);

    const asyncSchema = z.object({ a: z.number().refine(async () => Promise.resolve(true)) });
    const asyncWrap = wrap(asyncSchema, () => {
      throw new Error('handler failed after an async check');
    });
    const later = delivered('{"a":1}');
    await assert.rejects(Promise.resolve(asyncWrap.wrapped(later.message, later.ctx)), /handler failed after an async check/);
    assert.deepEqual(later.rejected, []);
    assert.deepEqual(ran, [{ a: 1 }]);
    assert.deepEqual(asyncWrap.ran, [{ a: 1 }]);
  });
});
