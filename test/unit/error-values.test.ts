import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InvalidOptionError, renderValue } from '../../src/errors.js';
import { natsSink, rabbitmqSink, redisStreamSink, webhookSink } from '../../src/relay/index.js';
import { scrubSecrets } from '../../src/runner/config/scrub-secrets.js';
import { maskSecrets } from '../../src/util/redact.js';

const SECRET = 'hunter2-secret';

describe('values quoted in errors never show a password', () => {
  test('renderValue masks a URL password, password=, and credential keys, before it cuts the value', () => {
    assert.equal(renderValue(`amqp://app:${SECRET}@broker:5672/vh`), '"amqp://app:***@broker:5672/vh"');
    assert.equal(renderValue(`host=db user=app password=${SECRET} dbname=x`), '"host=db user=app password=*** dbname=x"');
    assert.equal(
      renderValue({ host: 'db', password: SECRET, nested: { token: SECRET, url: `redis://:${SECRET}@r` } }),
      '{"host":"db","password":"***","nested":{"token":"***","url":"redis://:***@r"}}',
    );
    // Long enough to be cut: the cut falls inside the password, and no part of it is shown.
    const long = `postgres://user:${'s3cr3t!x'.repeat(10)}@db.example.com/app`;
    const shown = renderValue(long);
    assert.ok(shown.length <= 82, shown);
    assert.doesNotMatch(shown, /s3cr3t/);
    // Values without credentials are quoted as they are.
    assert.equal(renderValue('orders.{headers.type}'), '"orders.{headers.type}"');
    assert.equal(renderValue('http://example.com'), '"http://example.com"');
    // A token as the whole userinfo, and credential-named keys of other spellings.
    assert.equal(renderValue(`nats://${SECRET}@n:4222`), '"nats://***@n:4222"');
    assert.equal(
      renderValue({ accessToken: SECRET, client_secret: SECRET, Authorization: SECRET, user: 'app' }),
      '{"accessToken":"***","client_secret":"***","Authorization":"***","user":"app"}',
    );
  });

  test("InvalidOptionError's value field, which loggers serialize, is masked too", () => {
    const error = new InvalidOptionError({ option: 'uri', value: `nats://u:${SECRET}@n:4222`, expected: 'nothing' });
    assert.equal(error.value, 'nats://u:***@n:4222');
    assert.doesNotMatch(error.message, new RegExp(SECRET));
  });

  test('a misspelt url key of a sink factory does not echo the connection string', () => {
    const factories: Array<[string, () => unknown]> = [
      ['rabbitmqSink', () => rabbitmqSink({ uri: `amqp://u:${SECRET}@h` } as never)],
      ['natsSink', () => natsSink({ uri: `nats://u:${SECRET}@h`, subject: 's' } as never)],
      ['redisStreamSink', () => redisStreamSink({ URL: `redis://u:${SECRET}@h`, stream: 's' } as never)],
      ['webhookSink', () => webhookSink({ uri: `https://u:${SECRET}@h/x` } as never)],
    ];
    for (const [name, make] of factories) {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, `${name}: ${String(error)}`);
        assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, new RegExp(SECRET), name);
        return true;
      });
    }
  });

  test('maskSecrets: a short password is masked where it stands alone, and nowhere else', () => {
    assert.equal(maskSecrets('auth failed for app:pw@host (pw)', ['pw']), 'auth failed for app:***@host (***)');
    assert.equal(maskSecrets('the pwd and pwx stay', ['pw']), 'the pwd and pwx stay');
    assert.equal(maskSecrets('a longer s3cr3t inside xs3cr3tx', ['s3cr3t']), 'a longer *** inside x***x');
    assert.equal(maskSecrets('regex a.b stays, a.b. too', ['a.b']), 'regex *** stays, ***. too');
  });

  test('the config scrub masks what is left of a secret where a value was cut short', () => {
    const secret = 'a-webhook-signing-secret-0123456789';
    const [issue] = scrubSecrets([{ path: 'x', message: `got "prefix ${secret.slice(0, 20)}..."` }], [secret]);
    assert.equal(issue?.message, 'got "prefix ***..."');
  });
});
