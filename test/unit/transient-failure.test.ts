import assert from 'node:assert/strict';
import { test } from 'node:test';

import { serverFault, transient } from '../../src/util/transient-failure.js';
import { sessionEnded, unanswered } from '../../src/util/unanswered.js';

/** A server's answer as node-postgres raises it: a SQLSTATE and a severity. */
function answered(code: string, severity = 'ERROR'): Error {
  return Object.assign(new Error(`server error ${code}`), { code, severity });
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

test('serverFault: only what the server answered, and only what no handler statement asks for itself', () => {
  for (const code of ['40001', '40P01', '57P01', '57P02', '08006', '25006'])
    assert.equal(serverFault(answered(code)), true, code);
  assert.equal(serverFault(new Error('Connection terminated unexpectedly')), false, 'no SQLSTATE: could be anything');
  assert.equal(
    serverFault(Object.assign(new Error('EPIPE'), { code: 'EPIPE' })),
    false,
    'a socket error code is no SQLSTATE answer',
  );
  for (const code of ['08P01', '57014', '55P03', '53400', '58P01', '23505', 'P0001'])
    assert.equal(serverFault(answered(code)), false, code);
});

test('sessionEnded: an answer sent FATAL or PANIC, whatever its code (PgBouncer drops a client with 08P01 FATAL)', () => {
  for (const code of ['08P01', 'XX000', '25P04', '58000']) {
    assert.ok(sessionEnded(answered(code, 'FATAL')), `${code} FATAL`);
    assert.ok(sessionEnded(answered(code, 'PANIC')), `${code} PANIC`);
  }
  assert.equal(sessionEnded(answered('08P01')), false, 'ERROR: PostgreSQL’s answer to a malformed statement');
  assert.equal(
    sessionEnded(Object.assign(new Error('FATAL'), { severity: 'FATAL' })),
    false,
    'no SQLSTATE: not a server’s answer',
  );
});

test('unanswered: an answer that ended the session leaves the statement’s outcome unknown (a pooler’s, whatever its code)', () => {
  assert.ok(unanswered(answered('XX000', 'FATAL')), 'a pooler’s FATAL: the COMMIT may have landed');
  assert.ok(transient(answered('XX000', 'FATAL')));
  assert.equal(unanswered(answered('XX000')), false, 'an ERROR: the statement did not run');
  for (const code of ['28P01', '28000', '3D000', '53300', '42501', '55000'])
    assert.equal(unanswered(answered(code, 'FATAL')), false, `${code}: a login refused, the statement never sent`);
});
