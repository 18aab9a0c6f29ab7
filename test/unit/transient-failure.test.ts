import assert from 'node:assert/strict';
import { test } from 'node:test';

import { answeredTransient, endsConnection, transient } from '../../src/util/transient-failure.js';

/** A server's answer as node-postgres raises it: a SQLSTATE and a severity. */
function answered(code: string): Error {
  return Object.assign(new Error(`server error ${code}`), { code, severity: 'ERROR' });
}

test('transient: no answer, a lost connection, a terminated backend, and the server’s own reasons', () => {
  assert.ok(transient(new Error('Query read timeout')), 'a client-side timeout');
  assert.ok(transient(new Error('Connection terminated unexpectedly')), 'a connection lost');
  assert.ok(transient(answered('08006')), 'connection_failure');
  assert.ok(transient(answered('57P01')), 'admin_shutdown');
  assert.ok(transient(answered('57014')), 'query_canceled (statement_timeout)');
  assert.ok(transient(answered('40001')), 'serialization_failure');
  assert.ok(transient(answered('40P01')), 'deadlock_detected');
  assert.ok(transient(answered('53300')), 'too_many_connections');
  assert.ok(transient(answered('58030')), 'io_error');
  assert.ok(transient(answered('55P03')), 'lock_not_available');
  assert.ok(transient(answered('25006')), 'read_only_sql_transaction (a standby)');
});

test('transient: what the transaction did is not', () => {
  for (const code of ['23505', '23514', 'P0001', '25P02', '42P01', '22P02', '55000']) {
    assert.equal(transient(answered(code)), false, code);
  }
});

test('answeredTransient and endsConnection: only what the server answered', () => {
  assert.equal(answeredTransient(new Error('Connection terminated unexpectedly')), false, 'no SQLSTATE: could be anything');
  assert.equal(answeredTransient(answered('40001')), true);
  assert.equal(answeredTransient(answered('23505')), false);
  assert.equal(endsConnection(answered('57P01')), true);
  assert.equal(endsConnection(answered('08006')), true);
  assert.equal(endsConnection(answered('57014')), false, 'a cancelled statement leaves the connection up');
  assert.equal(
    endsConnection(Object.assign(new Error('EPIPE'), { code: 'EPIPE' })),
    false,
    'a socket error code is no SQLSTATE answer',
  );
});
