import assert from 'node:assert/strict';
import dns from 'node:dns';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { publishCommitted } from '../support/publish.js';
import { type BinRun, txoutboxBin, txoutboxMain } from '../support/txoutbox-bin.js';

const db = useTestDatabase(import.meta.url);

// A directory as an operator has it: the runner's txoutbox.yaml, the handler module it names (the
// runner's loader checks it exists), and nothing else. Its database URL comes from ${CLI_DB}.
const dir = mkdtempSync(join(tmpdir(), 'txoutbox-cli-connection-'));
const empty = join(dir, 'empty');
mkdirSync(empty);
writeFileSync(join(dir, 'noop.mjs'), 'export default async () => {};\n');
const CONFIG = join(dir, 'txoutbox.yaml');
writeFileSync(
  CONFIG,
  [
    'database:',
    '  url: ${CLI_DB}',
    'table: cfg.outbox',
    'consumers:',
    '  noop:',
    '    handler: ./noop.mjs',
    '    queues: [orders]',
    '',
  ].join('\n'),
);
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A URL that must never be used (nothing listens on port 1) and whose password must never be printed. */
const DECOY_URL = 'postgres://decoy:hunter2-decoy@127.0.0.1:1/decoy';

/** The tables `schema check --json` reports missing. */
function missingTables(run: BinRun): string[] {
  const { drift } = JSON.parse(run.out) as { drift: { table: string; kind: string }[] };
  return drift.filter((f) => f.kind === 'missing_table').map((f) => f.table);
}

function noSecret(run: BinRun, secret: string): void {
  assert.ok(!`${run.out}${run.err}`.includes(secret), `printed the password:\n${run.out}${run.err}`);
}

describe('where ops commands find their database: --database-url, --config, DATABASE_URL, ./txoutbox.yaml', () => {
  before(async () => {
    const migrated = await txoutboxBin(['migrate', '--config', CONFIG], { env: { CLI_DB: db.url, DATABASE_URL: DECOY_URL } });
    assert.equal(migrated.code, 0, migrated.err);
    assert.match(migrated.out, /applied .* \(cfg\.outbox\)/);
    const outbox = new Outbox({ connectionString: db.url, table: 'cfg.outbox' });
    try {
      await publishCommitted(outbox, db.pool, 'orders', [{ order: 1 }]);
    } finally {
      await outbox.stop();
    }
  });

  test('--config gives the URL (with ${VAR} interpolated) and the tables to every ops command, and beats DATABASE_URL', async () => {
    const env = { CLI_DB: db.url, DATABASE_URL: DECOY_URL };
    const status = await txoutboxBin(['status', '--config', CONFIG, '--json'], { env });
    assert.equal(status.code, 0, status.err);
    const report = JSON.parse(status.out) as { queues: { queue: string; ready: number }[] };
    assert.deepEqual(
      report.queues.map((q) => [q.queue, q.ready]),
      [['orders', 1]],
    );
    const peek = await txoutboxBin(['queue', 'peek', 'orders', '--config', CONFIG, '--json'], { env });
    assert.equal(peek.code, 0, peek.err);
    assert.equal((JSON.parse(peek.out) as { rows: unknown[] }).rows.length, 1);
    const dlq = await txoutboxBin(['dlq', 'list', '--config', CONFIG, '--json'], { env });
    assert.equal(dlq.code, 0, dlq.err);
    assert.deepEqual(JSON.parse(dlq.out), { rows: [], nextCursor: null, limitedByBytes: false });
    const schema = await txoutboxBin(['schema', 'check', '--config', CONFIG], { env });
    assert.equal(schema.code, 0, schema.err);
    assert.match(schema.out, /^ok: the schema of cfg\.outbox \(DLQ cfg\.outbox_dlq\) is what txoutbox expects/);
    const print = await txoutboxBin(['migrate', '--print', '--config', CONFIG], { env });
    assert.equal(print.code, 0, print.err);
    assert.match(print.out, /CREATE TABLE "cfg"\."outbox" \(/);
  });

  test('--table overrides the config (its DLQ follows it); --database-url overrides the config URL', async () => {
    const other = await txoutboxBin(['schema', 'check', '--config', CONFIG, '--table', 'cfg.other', '--json'], {
      env: { CLI_DB: db.url },
    });
    assert.equal(other.code, 1);
    for (const table of ['cfg.other', 'cfg.other_dlq']) assert.ok(missingTables(other).includes(table), table);
    const decoyConfig = await txoutboxBin(['schema', 'check', '--config', CONFIG, '--database-url', db.url], {
      env: { CLI_DB: DECOY_URL },
    });
    assert.equal(decoyConfig.code, 0, decoyConfig.err);
  });

  test('./txoutbox.yaml is used when nothing else names a database, and says so; never when DATABASE_URL is set', async () => {
    const implicit = await txoutboxBin(['schema', 'check'], { env: { CLI_DB: db.url }, cwd: dir });
    assert.equal(implicit.code, 0, implicit.err);
    assert.equal(implicit.err, `txoutbox: using ${CONFIG} (no --database-url, --config or DATABASE_URL given)\n`);
    assert.match(implicit.out, /^ok: the schema of cfg\.outbox \(DLQ cfg\.outbox_dlq\)/);
    const ambient = await txoutboxBin(['schema', 'check', '--json'], {
      env: { CLI_DB: DECOY_URL, DATABASE_URL: db.url },
      cwd: dir,
    });
    assert.equal(ambient.code, 1, 'the default txoutbox.outbox, which this database lacks');
    for (const table of ['txoutbox.outbox', 'txoutbox.outbox_dlq']) assert.ok(missingTables(ambient).includes(table), table);
    // --print needs no database: it never reads the implicit file.
    const print = await txoutboxBin(['migrate', '--print'], { env: {}, cwd: dir });
    assert.equal(print.code, 0, print.err);
    assert.match(print.out, /CREATE TABLE "txoutbox"\."outbox" \(/);
  });

  test('no database named anywhere: exit 2 naming every way to give one, for every ops command', async () => {
    const commands = [
      ['status'],
      ['queue', 'peek', 'orders'],
      ['queue', 'pause', 'orders'],
      ['dlq', 'list'],
      ['schema', 'check'],
    ];
    // Concurrently: five process starts are most of this test's time.
    const runs = await Promise.all(commands.map((args) => txoutboxBin(args, { env: {}, cwd: empty })));
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 2, `${commands[i]?.join(' ')}: ${run.err}`);
      assert.match(
        run.err,
        /^txoutbox: --database-url: no database to connect to \(no --database-url, no --config, no DATABASE_URL/,
      );
      assert.match(run.err, /\nFix: pass --database-url postgres:\/\/…, set DATABASE_URL, or pass --config <txoutbox.yaml>\.\n$/);
    }
  });

  test('a config that cannot be used: exit 2 naming --config, the problem with its line, the fix, and never the password', async () => {
    const missing = await txoutboxBin(['status', '--config', join(dir, 'nope.yaml')], { env: {} });
    assert.equal(missing.code, 2);
    assert.match(
      missing.err,
      /^txoutbox: --config: .*nope\.yaml is not a valid txoutbox config \(1 problem\):\n {2}cannot read the config file/,
    );
    assert.match(missing.err, /\nFix: correct the file/);

    const unset = await txoutboxBin(['status', '--config', CONFIG], { env: {} });
    assert.equal(unset.code, 2);
    assert.match(unset.err, /txoutbox\.yaml:2:\d+: database\.url: .*CLI_DB/);

    const typo = join(dir, 'typo.yaml');
    writeFileSync(
      typo,
      [
        'database:',
        '  url: postgres://app:hunter2-typo@127.0.0.1/app',
        'tabel: x',
        'consumers:',
        '  noop:',
        '    handler: ./noop.mjs',
        '    queues: [orders]',
        '',
      ].join('\n'),
    );
    const bad = await txoutboxBin(['dlq', 'list', '--config', typo], { env: {} });
    assert.equal(bad.code, 2);
    assert.match(bad.err, /typo\.yaml:3:1: .*tabel/);
    noSecret(bad, 'hunter2-typo');

    // The implicit file is named as such, with its own fix.
    const implicitBad = await txoutboxBin(['status'], { env: {}, cwd: dir });
    assert.equal(implicitBad.code, 2);
    assert.match(
      implicitBad.err,
      /txoutbox: \.\/txoutbox\.yaml: [\s\S]*CLI_DB[\s\S]*\nFix: correct it, or name the database with --database-url/,
    );
  });

  test('a wrong password from the config: exit 1, the password never printed', async () => {
    const wrong = new URL(db.url);
    wrong.password = 'hunter2-wrong';
    const run = await txoutboxBin(['status', '--config', CONFIG], { env: { CLI_DB: wrong.toString() } });
    assert.equal(run.code, 1);
    assert.match(run.err, /password authentication failed|authentication/);
    noSecret(run, 'hunter2-wrong');
  });

  test('a host name with two addresses, both refusing: the error names each refusal, never an empty message', async () => {
    // Reported (review): Node's connect to a name with several addresses (localhost as ::1 and
    // 127.0.0.1) fails with an AggregateError whose message is '': the CLI printed `txoutbox: `.
    const lookup = dns.lookup;
    // Here the name resolves to two loopback addresses on which nothing listens (port 1).
    (dns as { lookup: unknown }).lookup = (_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      if (options.all === true)
        callback(null, [
          { address: '127.0.0.1', family: 4 },
          { address: '127.0.0.2', family: 4 },
        ]);
      else callback(null, '127.0.0.1', 4);
    };
    try {
      const run = await txoutboxMain(['status', '--database-url', 'postgres://u:hunter2-two@db.example:1/app'], {});
      assert.equal(run.code, 1);
      assert.match(run.err, /ECONNREFUSED 127\.0\.0\.1:1; connect ECONNREFUSED 127\.0\.0\.2:1/);
      noSecret(run, 'hunter2-two');
    } finally {
      (dns as { lookup: unknown }).lookup = lookup;
    }
  });
});
