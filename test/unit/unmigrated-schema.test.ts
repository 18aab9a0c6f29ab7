/**
 * Which producer-statement errors are a schema behind the code, on error shapes the real data layers
 * produce but this machine's server cannot (a translated lc_messages) or that the integration tests
 * reach only through one layer each (Knex's prefixed message). Plain objects stand in for the
 * driver's errors: only their fields are read. The real layers: adapter-conformance.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SchemaNotMigratedError } from '../../src/index.js';
import { parseTableName } from '../../src/schema/identifiers.js';
import { unmigratedSchemaError } from '../../src/schema/unmigrated-schema.js';

const table = parseTableName('table', 'txoutbox.outbox');
const INSERT = 'insert into "txoutbox"."outbox" (queue, payload, headers, next_attempt_at, ordering_key, activate_at) select $1';

describe('unmigratedSchemaError', () => {
  test("Knex's `<sql> - <message>`: the column PostgreSQL named, not the first the statement lists", () => {
    const error = unmigratedSchemaError(
      { code: '42703', message: `${INSERT} - column "activate_at" of relation "outbox" does not exist` },
      table,
      'publish',
    );
    assert.ok(error instanceof SchemaNotMigratedError);
    assert.equal(error.missing, 'activate_at');
    assert.equal(error.migration, 'outbox/0005');
  });

  test('a translated server message (lc_messages = de_DE) is matched by the names it carries', () => {
    const column = unmigratedSchemaError(
      { code: '42703', message: 'Spalte »ordering_key« von Relation »outbox« existiert nicht' },
      table,
      'publish',
    );
    assert.equal(column?.migration, 'outbox/0004');
    const missing = unmigratedSchemaError(
      { code: '42P01', message: 'Relation »txoutbox.outbox« existiert nicht' },
      table,
      'publish',
    );
    assert.equal(missing?.missing, 'outbox');
  });

  test("an error a function raised (PostgreSQL's `where` context: a trigger) is not the schema's", () => {
    for (const failure of [
      { code: '42703', message: 'record "new" has no field "activate_at"', where: 'PL/pgSQL function audit() line 1' },
      { code: '42P01', message: `${INSERT} - relation "audit" does not exist`, where: 'PL/pgSQL function audit() line 1' },
    ]) {
      assert.equal(unmigratedSchemaError(failure, table, 'publish'), undefined, failure.message);
    }
    // Without the context (a layer that drops it), the name must be the table's.
    assert.equal(
      unmigratedSchemaError({ code: '42P01', message: 'relation "audit" does not exist' }, table, 'publish'),
      undefined,
    );
    assert.equal(
      unmigratedSchemaError({ code: '42P01', message: 'relation "outbox_archive" does not exist' }, table, 'publish'),
      undefined,
    );
  });

  test("a wrapper's own code (Prisma's P2010) is skipped for the driver's it carries", () => {
    const prisma = {
      code: 'P2010',
      message: 'Raw query failed.',
      meta: { driverAdapterError: { cause: { originalCode: '42703', originalMessage: 'column "activate_at" does not exist' } } },
    };
    assert.equal(unmigratedSchemaError(prisma, table, 'publishBatch')?.operation, 'publishBatch');
    assert.equal(unmigratedSchemaError(new Error('connection terminated'), table, 'publish'), undefined);
    assert.equal(unmigratedSchemaError(undefined, table, 'publish'), undefined);
  });
});
