import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InvalidOptionError } from '../../src/index.js';
import { type ResolvedOutboxOptions, resolveOutboxOptions } from '../../src/outbox-options.js';
import { silentLogger } from '../../src/util/logger.js';

const URL_WITH_SECRET = 'postgres://app:s3cr3t-pw@bouncer.internal:6432/app';
const DIRECT_WITH_SECRET = 'postgres://app:s3cr3t-pw@db.internal:5432/app';

async function resolved(options: Record<string, unknown>): Promise<ResolvedOutboxOptions> {
  const result = resolveOutboxOptions({ connectionString: URL_WITH_SECRET, logger: silentLogger, ...options });
  await result.pool.end();
  return result;
}

function rejects(options: Record<string, unknown>, option: string, message: RegExp): InvalidOptionError {
  try {
    resolveOutboxOptions({ connectionString: URL_WITH_SECRET, logger: silentLogger, ...options });
  } catch (error) {
    assert.ok(error instanceof InvalidOptionError, String(error));
    assert.equal(error.option, option);
    assert.match(error.message, message);
    assert.ok(!error.message.includes('s3cr3t-pw'), error.message);
    assert.ok(!JSON.stringify(error.value ?? null).includes('s3cr3t-pw'));
    return error;
  }
  return assert.fail(`${JSON.stringify(options)} was accepted`);
}

describe('transactionPooling and listenConnectionString (architecture/pgbouncer.md)', () => {
  test('off by default: prepared statements, LISTEN on the pool’s server, session settings on the pool', async () => {
    const options = await resolved({});
    assert.deepEqual([options.transactionPooling, options.preparedStatements, options.listen], [false, true, true]);
    assert.equal(options.listenClientConfig, options.clientConfig);
    assert.equal(options.pool.options.statement_timeout, options.queryTimeoutMs, 'the owned pool sends statement_timeout');
  });

  test('on: no statement_timeout startup parameter (PgBouncer refuses it), unnamed statements, polling', async () => {
    const options = await resolved({ transactionPooling: true });
    assert.deepEqual([options.transactionPooling, options.preparedStatements, options.listen], [true, false, false]);
    assert.equal(options.pool.options.statement_timeout, undefined);
  });

  test('on, with a direct connection for LISTEN: listen defaults to true there; explicit choices win', async () => {
    const direct = await resolved({ transactionPooling: true, listenConnectionString: DIRECT_WITH_SECRET });
    assert.equal(direct.listen, true);
    assert.equal(direct.listenClientConfig.connectionString, DIRECT_WITH_SECRET);
    assert.equal(direct.clientConfig.connectionString, URL_WITH_SECRET, 'NOTIFY still goes through the pooler');
    assert.equal(direct.listenClientConfig.keepAlive, true, 'the LISTEN connection gets the same safeguards');
    const prepared = await resolved({ transactionPooling: true, preparedStatements: true });
    assert.equal(prepared.preparedStatements, true, 'PgBouncer >= 1.21 with max_prepared_statements keeps them');
  });

  test('listenConnectionString works without transactionPooling too (LISTEN on another route)', async () => {
    const options = await resolved({ listenConnectionString: DIRECT_WITH_SECRET });
    assert.deepEqual([options.listen, options.listenClientConfig.connectionString], [true, DIRECT_WITH_SECRET]);
  });

  test('typed errors name the option and the fix, never the password', () => {
    rejects({ transactionPooling: 'yes' }, 'transactionPooling', /a boolean/);
    const listen = rejects({ transactionPooling: true, listen: true }, 'listen', /false, or a listenConnectionString/);
    assert.match(listen.fix ?? '', /direct connection/);
    rejects({ listenConnectionString: ' ' }, 'listenConnectionString', /non-empty connection string/);
    rejects({ listenConnectionString: 42 }, 'listenConnectionString', /non-empty connection string/);
    rejects({ listen: false, listenConnectionString: DIRECT_WITH_SECRET }, 'listenConnectionString', /listen: false/);
  });
});
