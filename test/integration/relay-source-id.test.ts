/**
 * The relay's source id (src/relay/source-id.ts), the middle of every relayed messageId: stable for
 * one table, different for another table and for another cluster's table of the same name (the
 * NATS end-to-end test shows what a shared id cost), read again after a failed read, and read
 * without pg_control_system() when the role may not call it, with a warning.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { sourceIdReader } from '../../src/relay/source-id.js';
import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { StatementRunner } from '../../src/util/statement-runner.js';
import { serverUrl, useTestDatabase } from '../support/database.js';
import { TestLogger } from '../support/test-logger.js';

const db = useTestDatabase(import.meta.url);

const outboxOf = (table: string) => resolveSchemaNames(table, undefined).outbox;

describe('sourceIdReader', () => {
  test('12 hex digits, read once, the same for one table and different for another', async () => {
    await db.pool.query('CREATE TABLE source_a (id int); CREATE TABLE source_b (id int)');
    const runner = new StatementRunner(db.pool, true, 5_000);
    const logger = new TestLogger();
    const a = sourceIdReader(runner, outboxOf('source_a'), logger);
    const first = await a();
    assert.match(first, /^[0-9a-f]{12}$/);
    assert.equal(await a(), first);
    assert.equal(await sourceIdReader(runner, outboxOf('source_a'), logger)(), first, 'stable across readers (restarts)');
    assert.notEqual(await sourceIdReader(runner, outboxOf('source_b'), logger)(), first);
    assert.deepEqual(logger.messages('warn'), []);
  });

  test('databases cloned from one template: their tables share an OID, their source ids differ', async () => {
    // Database-per-tenant made with CREATE DATABASE … TEMPLATE copies the catalog, table OIDs included.
    const admin = new pg.Client({ connectionString: serverUrl() });
    await admin.connect();
    const template = `src_tpl_${process.pid}`;
    const clone = `src_clone_${process.pid}`;
    const urlOf = (name: string): string => {
      const url = new URL(serverUrl());
      url.pathname = `/${name}`;
      return url.toString();
    };
    const pools: pg.Pool[] = [];
    try {
      await admin.query(`CREATE DATABASE ${template}`);
      const setup = new pg.Client({ connectionString: urlOf(template) });
      await setup.connect();
      await setup.query('CREATE TABLE tenant_outbox (id int)');
      await setup.end();
      await admin.query(`CREATE DATABASE ${clone} TEMPLATE ${template}`);
      const ids: string[] = [];
      const oids: string[] = [];
      for (const name of [template, clone]) {
        const pool = new pg.Pool({ connectionString: urlOf(name), max: 1 });
        pools.push(pool);
        oids.push((await pool.query<{ oid: string }>("SELECT 'tenant_outbox'::regclass::oid::text AS oid")).rows[0]?.oid ?? '');
        ids.push(await sourceIdReader(new StatementRunner(pool, true, 5_000), outboxOf('tenant_outbox'), new TestLogger())());
      }
      assert.equal(oids[0], oids[1], 'the clone copied the table OID');
      assert.notEqual(ids[0], ids[1]);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
      await admin.query(`DROP DATABASE IF EXISTS ${clone}`);
      await admin.query(`DROP DATABASE IF EXISTS ${template}`);
      await admin.end();
    }
  });

  test('a failed read is not kept: the next call reads again', async () => {
    const runner = new StatementRunner(db.pool, true, 5_000);
    const read = sourceIdReader(runner, outboxOf('source_later'), new TestLogger());
    // The table does not exist yet: the regclass cast fails, and so does the row's send (a retry).
    await assert.rejects(read(), /relation "source_later" does not exist/);
    await db.pool.query('CREATE TABLE source_later (id int)');
    assert.match(await read(), /^[0-9a-f]{12}$/);
  });

  test('a role that may not call pg_control_system(): the database name stands in, with a warning', async () => {
    await db.pool.query('CREATE TABLE source_limited (id int)');
    const role = `source_role_${process.pid}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    // Function privileges are per database: this changes the test's own database only.
    await db.pool.query('REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC');
    const url = new URL(db.url);
    url.username = role;
    url.password = 'pw';
    const limited = new pg.Pool({ connectionString: url.toString(), max: 1 });
    try {
      const logger = new TestLogger();
      const id = await sourceIdReader(new StatementRunner(limited, true, 5_000), outboxOf('source_limited'), logger)();
      assert.match(id, /^[0-9a-f]{12}$/);
      assert.equal(logger.messages('warn').length, 1);
      assert.match(logger.messages('warn')[0] ?? '', /pg_control_system\(\) is not available to this role/);
      const full = await sourceIdReader(
        new StatementRunner(db.pool, true, 5_000),
        outboxOf('source_limited'),
        new TestLogger(),
      )();
      assert.notEqual(id, full, 'a different source: the cluster is not known');
    } finally {
      await limited.end();
      await db.pool.query('GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC');
      // Roles are the cluster's, not the database's.
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });
});
