import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';

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

  test('a credential given as an option of its own (an unknown key) is not echoed', () => {
    // Credentials put at the top level instead of under connectOptions / redisOptions: the
    // unknown-key error names the key, never the bare secret, which has no URL shape to mask.
    const factories: Array<[string, () => unknown]> = [
      ['natsSink token', () => natsSink({ servers: 'nats://127.0.0.1:4222', subject: 's', token: SECRET } as never)],
      ['natsSink pass', () => natsSink({ servers: 'nats://127.0.0.1:4222', subject: 's', pass: SECRET } as never)],
      ['rabbitmqSink password', () => rabbitmqSink({ url: 'amqp://127.0.0.1', password: SECRET } as never)],
      ['redisStreamSink password', () => redisStreamSink({ url: 'redis://127.0.0.1', stream: 's', password: SECRET } as never)],
      [
        'redisStreamSink passphrase',
        () => redisStreamSink({ url: 'redis://127.0.0.1', stream: 's', passphrase: SECRET } as never),
      ],
    ];
    for (const [name, make] of factories) {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, `${name}: ${String(error)}`);
        assert.match(error.message, /got \[redacted\]/, name);
        assert.equal(error.value, '[redacted]', name);
        assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, new RegExp(SECRET), name);
        return true;
      });
    }
    // By the option path's last part, whoever raises the error; other options still show their value.
    for (const option of ['token', 'connectOptions.pass', 'redisOptions.password', 'headers["authorization"]', 'tls.key']) {
      const error = new InvalidOptionError({ option, value: SECRET, expected: 'something else' });
      assert.doesNotMatch(error.message, new RegExp(SECRET), option);
    }
    for (const option of ['orderingKey', 'queue', 'leaseTtlMs', 'ctx.stats.increment key']) {
      const error = new InvalidOptionError({ option, value: 'shown', expected: 'something else' });
      assert.match(error.message, /got "shown"/, option);
    }
  });

  test('a credential nested in a mistyped option object is masked in the message and in the error value', () => {
    // Review finding: only the unknown key's own name was judged, so a TLS passphrase or key, or a
    // NATS pass, inside `socketOption` / `connectOption` was quoted whole, and error.value kept
    // the raw object, which util.inspect and structured loggers print.
    const pem = `-----BEGIN PRIVATE KEY-----${SECRET}`;
    const factories: Array<[string, () => unknown]> = [
      [
        'rabbitmqSink socketOption',
        () => rabbitmqSink({ url: 'amqp://127.0.0.1', socketOption: { passphrase: SECRET, key: pem } } as never),
      ],
      [
        'natsSink connectOption',
        () => natsSink({ servers: 'nats://127.0.0.1', subject: 's', connectOption: { user: 'u', pass: SECRET } } as never),
      ],
      [
        'natsSink nkey seed',
        () => natsSink({ servers: 'nats://127.0.0.1', subject: 's', auth: { nkey: 'N', seed: SECRET, jwt: SECRET } } as never),
      ],
      [
        'redisStreamSink tlsOptions',
        () => redisStreamSink({ url: 'redis://127.0.0.1', stream: 's', tlsOptions: { pfx: SECRET } } as never),
      ],
    ];
    for (const [name, make] of factories) {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, `${name}: ${String(error)}`);
        assert.doesNotMatch(`${error.message} ${JSON.stringify(error)} ${inspect(error)}`, new RegExp(SECRET), name);
        return true;
      });
    }
    // An object without credentials is kept as it was given (callers branch on it).
    const plain = { host: 'h', port: 1 };
    assert.equal(new InvalidOptionError({ option: 'x', value: plain, expected: 'y' }).value, plain);
    assert.equal(renderValue({ key: SECRET, passphrase: SECRET }), '{"key":"***","passphrase":"***"}');
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
