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
    [
      'queryTimeoutMs below 100 ms',
      { connectionString: URL_WITH_SECRET, queryTimeoutMs: 50 },
      'queryTimeoutMs',
      /100 to 3600000/,
    ],
    ['queryTimeoutMs not an integer', { connectionString: URL_WITH_SECRET, queryTimeoutMs: '5s' }, 'queryTimeoutMs', /integer/],
    [
      // "Forever" overflowed Node's timer, which then fired at once: the runner SIGKILLed on every stop.
      'gracefulTimeoutMs past a day',
      { connectionString: URL_WITH_SECRET, gracefulTimeoutMs: 2_147_483_647 },
      'gracefulTimeoutMs',
      /from 0 to 86400000 \(milliseconds: 24 hours\), got 2147483647\. It bounds how long stop\(\) waits/,
    ],
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

  test('the table-name limit is the longest derived identifier, and the error names the option the user set (issue 13, item 14)', async () => {
    const construct = (options: Record<string, unknown>) => new Outbox({ connectionString: URL_WITH_SECRET, ...options });
    const rejects = (options: Record<string, unknown>) => {
      try {
        construct(options);
      } catch (error) {
        assert.ok(error instanceof InvalidIdentifierError, String(error));
        return error;
      }
      return assert.fail(`${JSON.stringify(options)} was accepted`);
    };
    // With the default DLQ the longest derived name is "<table>_dlq_failed_idx": 63 - 15 = 48 bytes.
    const t49 = 'x'.repeat(49);
    const error = rejects({ table: t49 });
    assert.equal(error.option, 'table', 'the user set table, never dlqTable');
    assert.equal(error.identifier, t49);
    assert.match(error.message, /at most 48 bytes/);
    assert.match(error.message, new RegExp(`"${t49}_dlq_failed_idx"`), 'names the derived identifier that is too long');
    assert.match(error.message, /dlqTable/, 'says a shorter dlqTable (or false) lifts the limit');
    await construct({ table: 'x'.repeat(48) }).stop();
    await construct({ table: `app.${'x'.repeat(48)}` }).stop();
    assert.equal(rejects({ table: `app.${t49}` }).option, 'table');

    // Without a DLQ derived from the table, "<table>_ready_idx" is the longest: 53 bytes.
    await construct({ table: 'x'.repeat(53), dlqTable: false }).stop();
    await construct({ table: 'x'.repeat(53), dlqTable: 'dead_letters' }).stop();
    const t54 = rejects({ table: 'x'.repeat(54), dlqTable: false });
    assert.deepEqual([t54.option, /at most 53 bytes/.test(t54.message)], ['table', true]);
    // A dlqTable the user set is its own option: "<dlq>_failed_idx" leaves it 52 bytes.
    await construct({ table: 'outbox', dlqTable: 'd'.repeat(52) }).stop();
    const dlq = rejects({ table: 'outbox', dlqTable: 'd'.repeat(53) });
    assert.deepEqual([dlq.option, /at most 52 bytes/.test(dlq.message)], ['dlqTable', true]);
  });

  test('defaults: table txoutbox.outbox, DLQ txoutbox.outbox_dlq, channel txoutbox.outbox', async () => {
    const outbox = new Outbox({ connectionString: URL_WITH_SECRET });
    assert.equal(outbox.table, 'txoutbox.outbox');
    assert.equal(outbox.dlqTable, 'txoutbox.outbox_dlq');
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
    await assert.rejects(owned.publish({} as never, 'q', 'x'), OutboxStoppedError);
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
