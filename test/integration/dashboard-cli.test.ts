import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';

import { get } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'dash_cli';
const TOKEN = 'a-token-long-enough-for-the-test';

interface Bin {
  readonly child: ChildProcess;
  /** Everything printed so far. */
  out(): string;
  err(): string;
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number | null>;
}

/** The real bin, as an operator runs it: its own process, stdout and stderr pipes. */
function txoutbox(args: string[], env: NodeJS.ProcessEnv = {}): Bin {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dashboard', ...args], {
    env: { ...process.env, DATABASE_URL: db.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  db.onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, out: () => out, err: () => err, exited };
}

/** Waits for the one line the command prints once it listens, and returns its URL. */
async function listening(bin: Bin): Promise<string> {
  const line = /^txoutbox dashboard listening on (http:\/\/\S+\/)\n/;
  while (!line.test(bin.out())) {
    const gone = await Promise.race([once(bin.child.stdout!, 'data').then(() => false), bin.exited.then(() => true)]);
    if (gone && !line.test(bin.out())) throw new Error(`the command exited before listening: ${bin.err()}`);
  }
  return line.exec(bin.out())![1]!;
}

describe('txoutbox dashboard', () => {
  before(async () => {
    await newOutbox({ pool: db.pool, table: TABLE }).migrate();
  });

  test('prints its URL once it listens (port 0: a free one), serves the pages, and stops on SIGTERM with exit 0', async () => {
    const bin = txoutbox(['--port', '0', '--table', TABLE]);
    const url = await listening(bin);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(bin.out().split('\n').filter(Boolean).length, 1, 'one line on stdout');
    const page = await get(`${url}dlq`);
    assert.equal(page.status, 200);
    assert.match(page.text, new RegExp(`data-testid="outbox-table">${TABLE}<`));
    bin.child.kill('SIGTERM');
    assert.equal(await bin.exited, 0, bin.err());
    await assert.rejects(fetch(`${url}dlq`), 'nothing listens any more');
  });

  test('SIGINT stops it too; --read-only and the token from TXOUTBOX_DASHBOARD_TOKEN apply', async () => {
    const bin = txoutbox(['--port', '0', '--table', TABLE, '--read-only'], { TXOUTBOX_DASHBOARD_TOKEN: TOKEN });
    const url = await listening(bin);
    assert.equal((await get(`${url}dlq`)).status, 401);
    const page = await get(`${url}dlq`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(page.status, 200);
    assert.match(page.text, /data-testid="read-only"/);
    bin.child.kill('SIGINT');
    assert.equal(await bin.exited, 0, bin.err());
    assert.ok(!bin.out().includes(TOKEN) && !bin.err().includes(TOKEN), 'the token is never printed');
  });

  test('--config: the database, table and dashboard: section of the runner’s txoutbox.yaml; flags win', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'txoutbox-dashboard-cli-'));
    db.onCleanup(() => rm(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'handler.js'), 'export default async () => {};\n');
    const config = join(dir, 'txoutbox.yaml');
    writeFileSync(
      config,
      [
        'database:',
        '  url: ${DATABASE_URL}',
        `table: ${TABLE}`,
        'dashboard:',
        '  port: 0',
        '  readOnly: true',
        '  token: ${TXOUTBOX_DASHBOARD_TOKEN}',
        'consumers:',
        '  orders:',
        '    handler: ./handler.js',
        '    queues: [orders]',
        '',
      ].join('\n'),
    );
    const bin = txoutbox(['--config', config, '--token', `${TOKEN}-from-the-flag`], { TXOUTBOX_DASHBOARD_TOKEN: TOKEN });
    const url = await listening(bin);
    const page = await get(`${url}dlq`, { headers: { authorization: `Bearer ${TOKEN}-from-the-flag` } });
    assert.equal(page.status, 200, 'the flag’s token');
    assert.match(page.text, /data-testid="read-only"/, 'the file’s readOnly');
    assert.match(page.text, new RegExp(`data-testid="outbox-table">${TABLE}<`), 'the file’s table');
    bin.child.kill('SIGTERM');
    assert.equal(await bin.exited, 0, bin.err());
  });

  test('a port in use: exit 1 naming the port and the fix', async () => {
    const first = txoutbox(['--port', '0', '--table', TABLE]);
    const port = new URL(await listening(first)).port;
    const second = txoutbox(['--port', port, '--table', TABLE]);
    assert.equal(await second.exited, 1);
    assert.match(second.err(), new RegExp(`127\\.0\\.0\\.1:${port} is already in use\\. Pick another port`));
    assert.match(second.err(), /--port/);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
  });

  test('another host without a token: exit 2 naming --token and how to make one; nothing listens', async () => {
    const bin = txoutbox(['--host', '0.0.0.0', '--port', '0', '--table', TABLE]);
    assert.equal(await bin.exited, 2);
    assert.match(
      bin.err(),
      /--token \(or TXOUTBOX_DASHBOARD_TOKEN\): expected a token, because host "0\.0\.0\.0" is not a loopback address/,
    );
    assert.match(bin.err(), /openssl rand -hex 32/);
    assert.equal(bin.out(), '');
  });

  test('bad usage: a port that is not a number, an argument', async () => {
    const port = txoutbox(['--port', 'eighty']);
    assert.equal(await port.exited, 2);
    assert.match(port.err(), /--port: expected a whole number, got 'eighty'/);
    const extra = txoutbox(['now']);
    assert.equal(await extra.exited, 2);
    assert.match(extra.err(), /dashboard takes no argument/);
  });
});
