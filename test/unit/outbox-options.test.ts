import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { InvalidIdentifierError, InvalidOptionError, Outbox, OutboxStoppedError } from '../../src/index.js';
import { redactConnectionString } from '../../src/util/redact.js';

const URL_WITH_SECRET = 'postgres://app:s3cr3t-pw@db.internal:5432/app';

describe('new Outbox(options) validates every option once', () => {
  const invalid: [string, unknown, string, RegExp][] = [
    ['no connection at all', {}, 'connectionString', /exactly one of connectionString or pool/],
    [
      'both a connection string and a pool',
      { connectionString: URL_WITH_SECRET, pool: new pg.Pool() },
      'connectionString',
      /exactly one/,
    ],
    ['empty connection string', { connectionString: ' ' }, 'connectionString', /non-empty string/],
    ['pool that is not a pool', { pool: {} }, 'pool', /a pg.Pool/],
    // A Client has connect/query/end too; claims on it would share (and weaken) the caller's transactions.
    ['a pg.Client as the pool', { pool: new pg.Client() }, 'pool', /not a pg.Client/],
    ['poolSize zero', { connectionString: URL_WITH_SECRET, poolSize: 0 }, 'poolSize', /integer >= 1, got 0/],
    ['poolSize with a pool', { pool: new pg.Pool(), poolSize: 5 }, 'poolSize', /Size your own pool/],
    ['unknown option', { connectionString: URL_WITH_SECRET, tabel: 'x' }, 'tabel', /one of the Outbox options/],
    [
      'preparedStatements not boolean',
      { connectionString: URL_WITH_SECRET, preparedStatements: 'yes' },
      'preparedStatements',
      /a boolean/,
    ],
    [
      'logger without methods',
      { connectionString: URL_WITH_SECRET, logger: console.log },
      'logger',
      /debug, info, warn and error/,
    ],
    ['options not an object', 'postgres://x', 'options', /an object/],
  ];
  for (const [name, options, option, message] of invalid) {
    test(name, () => {
      assert.throws(
        () => new Outbox(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option && message.test(error.message),
      );
    });
  }

  test('errors never carry the password of a connection string', () => {
    for (const options of [
      { connectionString: URL_WITH_SECRET, pool: new pg.Pool() },
      { connectionString: URL_WITH_SECRET, poolSize: -1 },
    ]) {
      try {
        new Outbox(options as never);
        assert.fail('expected an error');
      } catch (error) {
        assert.ok(error instanceof InvalidOptionError);
        assert.ok(!error.message.includes('s3cr3t-pw'), error.message);
        assert.ok(!JSON.stringify(error.value).includes('s3cr3t-pw'));
      }
    }
  });

  test('a table name is validated at construction', () => {
    assert.throws(() => new Outbox({ connectionString: URL_WITH_SECRET, table: 'x;y' }), InvalidIdentifierError);
  });

  test('defaults: table outbox, DLQ outbox_dlq, channel txoutbox.outbox', async () => {
    const outbox = new Outbox({ connectionString: URL_WITH_SECRET });
    assert.equal(outbox.table, 'outbox');
    assert.equal(outbox.dlqTable, 'outbox_dlq');
    assert.equal(outbox.channel, 'txoutbox.outbox');
    await outbox.stop();
  });

  test('stop() closes a pool it created, never one it was given, and is idempotent', async () => {
    const pool = new pg.Pool();
    const shared = new Outbox({ pool });
    await shared.stop();
    await shared.stop();
    assert.equal(pool.ending, false, 'the caller still owns their pool');
    await pool.end();
    const owned = new Outbox({ connectionString: URL_WITH_SECRET });
    await owned.stop();
    await assert.rejects(owned.fetchUnprocessed(), OutboxStoppedError);
    await assert.rejects(owned.publish({}, 'q', 'x'), OutboxStoppedError);
  });
});

describe('redactConnectionString', () => {
  test('masks URL and keyword passwords', () => {
    assert.equal(redactConnectionString(URL_WITH_SECRET), 'postgres://app:***@db.internal:5432/app');
    assert.equal(
      redactConnectionString('postgres://db/app?password=pw&sslmode=require'),
      'postgres://db/app?password=***&sslmode=require',
    );
    assert.equal(redactConnectionString("host=db password='p w' user=app"), 'host=db password=*** user=app');
    assert.equal(redactConnectionString('postgres://db/app'), 'postgres://db/app');
  });
});
