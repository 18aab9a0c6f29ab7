import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { main } from '../../src/cli/main.js';
import { Outbox } from '../../src/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { useTestDatabase } from '../support/database.js';

const db = useTestDatabase(import.meta.url);

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, {
    env,
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  });
  return { code, out, err };
}

describe('txoutbox migrate', () => {
  test('applies the migrations, then reports the schema up to date', async () => {
    const first = await run(['migrate', '--database-url', db.url, '--table', 'cli_outbox']);
    assert.equal(first.code, 0, first.err);
    assert.match(
      first.out,
      /applied outbox\/0001_create_outbox, outbox\/0002_last_exception, outbox\/0003_queue_controls, outbox\/0004_ordering_key, outbox\/0005_activate_at, dlq\/0001_create_dlq, dlq\/0002_last_exception_type, dlq\/0003_failed_at_idx, dlq\/0004_ordering_key/,
    );
    const second = await run(['migrate', '--table', 'cli_outbox', '--lock-timeout-ms', '500', '--lock-attempts', '3'], {
      DATABASE_URL: db.url,
    });
    assert.equal(second.code, 0, second.err);
    assert.match(second.out, /schema is up to date/);
    // A number outside what migrate() takes: exit 1 naming the option and its range.
    const outOfRange = await run(['migrate', '--table', 'cli_outbox', '--lock-attempts', '0'], { DATABASE_URL: db.url });
    assert.equal(outOfRange.code, 1);
    assert.match(outOfRange.err, /lockAttempts: expected an integer from 1 to 1000, got 0/);
  });

  test('never prints the password of the connection string', async () => {
    const secretUrl = new URL(db.url);
    const password = decodeURIComponent(secretUrl.password);
    const ok = await run(['migrate', '--database-url', db.url, '--table', 'cli_secret']);
    assert.equal(ok.code, 0, ok.err);
    assert.ok(!ok.out.includes(password), ok.out);
    secretUrl.password = 'hunter2-wrong';
    const failed = await run(['migrate', '--database-url', secretUrl.toString()]);
    assert.equal(failed.code, 1);
    assert.ok(!failed.err.includes('hunter2-wrong'), failed.err);
  });

  test('--print needs no database and emits the DDL for the given names', async () => {
    const { code, out } = await run(['migrate', '--print', '--table', 'app.events', '--no-dlq']);
    assert.equal(code, 0);
    assert.match(out, /CREATE TABLE "app"."events"/);
    assert.doesNotMatch(out, /_dlq/);
  });

  test('--print by default: the 0.1 check first, then the txoutbox schema, the tables and their history in it', async () => {
    const statements = (out: string): string[] =>
      out
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('--'))
        .join('\n')
        .split(/;\n/);
    const { code, out } = await run(['migrate', '--print']);
    assert.equal(code, 0);
    const guard = /^(?:--[^\n]*\n)*DO \$txoutbox\$\n[\s\S]*?\n\$txoutbox\$;\n/.exec(out);
    assert.ok(guard !== null, `the script starts with the DO block of the 0.1 check:\n${out}`);
    assert.equal(statements(out.slice(guard[0].length))[0], 'CREATE SCHEMA IF NOT EXISTS "txoutbox"');
    assert.match(out, /CREATE TABLE IF NOT EXISTS "txoutbox"\."txoutbox_migrations"/);
    assert.match(out, /CREATE TABLE "txoutbox"\."outbox" \(/);
    assert.match(out, /CREATE TABLE "txoutbox"\."outbox_dlq" \(/);
    assert.match(out, /INSERT INTO "txoutbox"\."txoutbox_migrations" .* VALUES \('txoutbox\.outbox', 1,/);
    assert.doesNotMatch(out, /(TABLE|INTO|ON) "(outbox|outbox_dlq|txoutbox_migrations)"/, 'nothing unqualified');
    const upgrade = await run(['migrate', '--print', '--since', '1']);
    assert.equal(statements(upgrade.out)[0], 'CREATE SCHEMA IF NOT EXISTS "txoutbox"', 'an upgrade script starts with it too');
    assert.doesNotMatch(upgrade.out, /DO \$txoutbox\$/, 'an upgrade script fails by itself on a missing table: no check');
    const elsewhere = await run(['migrate', '--print', '--table', 'app.events']);
    assert.doesNotMatch(elsewhere.out, /DO \$txoutbox\$/, 'only the txoutbox schema is checked');
    // Run as an ORM migration would: the schema, the tables, the history; migrate() then agrees.
    const client = await db.pool.connect();
    try {
      await client.query(`BEGIN; ${out} COMMIT;`);
    } finally {
      client.release();
    }
    const after = await run(['migrate', '--database-url', db.url]);
    assert.match(after.out, /schema is up to date on .* \(txoutbox\.outbox\)/);
  });

  test('a txoutbox table whose 0.1 twin is in public is refused: exit 1, both names and the fix', async () => {
    assert.equal((await run(['migrate', '--database-url', db.url, '--table', 'cli_legacy'])).code, 0);
    const refused = await run(['migrate', '--database-url', db.url, '--table', 'txoutbox.cli_legacy']);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /txoutbox\.cli_legacy does not exist, but public\.cli_legacy .* does/);
    assert.match(refused.err, /--table public\.cli_legacy/);
    const kept = await run(['migrate', '--database-url', db.url, '--table', 'public.cli_legacy']);
    assert.match(kept.out, /schema is up to date/, "0.1's history is found under the bare name");
  });

  test('a printed script for a txoutbox table whose 0.1 twin is in public refuses itself, before creating anything', async () => {
    assert.equal((await run(['migrate', '--database-url', db.url, '--table', 'cli_print_legacy'])).code, 0);
    const refused = await run(['migrate', '--database-url', db.url, '--table', 'txoutbox.cli_print_legacy']);
    const printed = await run(['migrate', '--print', '--table', 'txoutbox.cli_print_legacy']);
    assert.equal(printed.code, 0, printed.err);
    const client = await db.pool.connect();
    let raised: Error | undefined;
    try {
      await client.query(`BEGIN; ${printed.out} COMMIT;`);
    } catch (error) {
      raised = error as Error;
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    assert.ok(raised !== undefined, 'the script ran beside the 0.1 table');
    assert.equal(`txoutbox: ${raised.message}\n`, refused.err, 'the message `txoutbox migrate` prints');
    assert.match(raised.message, /--table public\.cli_print_legacy/);
    const { rows } = await db.pool.query<{ found: boolean }>(
      `SELECT to_regclass('txoutbox.cli_print_legacy') IS NOT NULL AS found`,
    );
    assert.equal(rows[0]?.found, false);
  });

  test('usage mistakes exit 2 with the usage; bad names exit 1 with the reason', async () => {
    for (const args of [
      ['migrate', '--bogus'],
      ['frobnicate'],
      ['migrate', '--no-dlq', '--dlq-table', 'x'],
      ['migrate', '--print', '--since', 'one'],
      ['migrate', '--since', '1'],
      ['migrate', '--lock-timeout-ms', '2s'],
      ['migrate', '--lock-attempts', '-1'],
      ['migrate', '--print', '--lock-timeout-ms', '100'],
    ]) {
      const { code, err } = await run(args);
      assert.equal(code, 2, args.join(' '));
      assert.match(err, /Usage:/);
    }
    // No database named anywhere: exit 2 with the fix alone (connection-options.ts), not the usage.
    const nowhere = await run(['migrate']);
    assert.equal(nowhere.code, 2);
    assert.match(nowhere.err, /--database-url: no database to connect to[\s\S]*Fix: .*DATABASE_URL.*--config.*--print/);
    const bad = await run(['migrate', '--print', '--table', 'bad-name']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /table: "bad-name" is not a valid identifier/);
  });

  test('--print --since 1 upgrades a schema made by version 1 migrations to the current one', async () => {
    // A 0.1.0 schema: the current one without what the version-2 migrations add.
    const table = 'cli_upgrade';
    assert.equal((await run(['migrate', '--database-url', db.url, '--table', table])).code, 0);
    await db.pool.query(
      `ALTER TABLE ${table} DROP COLUMN last_exception_type, DROP COLUMN last_exception, DROP COLUMN ordering_key, DROP COLUMN activate_at`,
    );
    await db.pool.query(`ALTER TABLE ${table}_dlq DROP COLUMN last_exception_type, DROP COLUMN ordering_key`);
    await db.pool.query(`DROP TABLE ${table}_paused, ${table}_stats`);
    await db.pool.query(`DROP INDEX ${table}_dlq_time_idx`);
    await db.pool.query(`DELETE FROM public.txoutbox_migrations WHERE table_name LIKE $1 AND version > 1`, [`${table}%`]);
    const upgrade = await run(['migrate', '--print', '--since', '1', '--table', table]);
    assert.equal(upgrade.code, 0, upgrade.err);
    assert.doesNotMatch(upgrade.out, /CREATE TABLE "cli_upgrade"/, 'nothing of version 1');
    const client = await db.pool.connect();
    try {
      await client.query(`BEGIN; ${upgrade.out} COMMIT;`);
    } finally {
      client.release();
    }
    const after = await run(['migrate', '--database-url', db.url, '--table', table]);
    assert.match(after.out, /schema is up to date/, 'the script recorded what it applied');
    await new Outbox({ pool: db.pool, table, logger: silentLogger }).validateSchema();
  });

  test('the bin runs as a process', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--version']);
    assert.match(stdout, /^\d+\.\d+\.\d+\n$/);
  });
});
