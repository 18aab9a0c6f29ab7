/**
 * The connection budget (architecture/runner.md, "Connection budget"): the formula per mode, the
 * pools a config's consumers get, the start-up line, and the `database:` keys for PgBouncer
 * (architecture/pgbouncer.md) with their typed errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { ConfigError } from '../../src/errors.js';
import {
  budgetText,
  reloadSurplus,
  reportConnectionBudget,
  reportReloadBudget,
  type ServerConnections,
} from '../../src/runner/budget-report.js';
import { consumerPlans } from '../../src/runner/config/consumer-plans.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { electsQueueStateLeader } from '../../src/runner/config/queue-state-election.js';
import type { RunnerConfig } from '../../src/runner/config/runner-config.js';
import { configBudget } from '../../src/runner/connection-budget.js';
import { poolDemand, poolFloor } from '../../src/subscriber/pool-demand.js';
import { resolveSubscribeOptions } from '../../src/subscriber/subscription-options.js';
import { TestLogger } from '../support/test-logger.js';

const dir = mkdtempSync(join(tmpdir(), 'txoutbox-budget-'));
const HANDLER = join(dir, 'handler.js');
writeFileSync(HANDLER, 'export default async () => {};\n');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});
const URL_WITH_SECRET = 'postgres://app:s3cr3t-pw@db.internal:5432/app';

let written = 0;
async function load(lines: readonly string[]): Promise<RunnerConfig> {
  written += 1;
  const path = join(dir, `config-${written}.yaml`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return await loadRunnerConfig(path, {});
}

async function issues(lines: readonly string[]): Promise<Map<string, string>> {
  try {
    await load(lines);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.ok(!error.message.includes('s3cr3t-pw'), error.message);
    return new Map(error.issues.map((issue) => [issue.path, issue.message]));
  }
  return assert.fail('the config was accepted');
}

/** A config with `database` lines and consumers `name: [subscribe lines]`, each processes × 2. */
function config(
  database: readonly string[],
  consumers: Record<string, readonly string[]>,
  top: readonly string[] = [],
): string[] {
  return [
    'database:',
    `  url: ${URL_WITH_SECRET}`,
    ...database.map((line) => `  ${line}`),
    ...top,
    'consumers:',
    ...Object.entries(consumers).flatMap(([name, lines]) => [
      `  ${name}:`,
      `    handler: ${HANDLER}`,
      `    queues: [${name}]`,
      '    processes: 2',
      ...lines.map((line) => `    ${line}`),
    ]),
  ];
}

const noHandler = (): Promise<void> => Promise.resolve();
const resolved = (options: Record<string, unknown>) => resolveSubscribeOptions('q', noHandler, options, true);

describe('poolDemand: the connections one subscription uses at once, by mode', () => {
  test('token: two claim loops, the acker and one shared by per-row writes, whatever the concurrency', () => {
    assert.equal(poolDemand(resolved({})), 4);
    assert.equal(poolDemand(resolved({ concurrency: 64 })), 4);
    assert.equal(poolDemand(resolved({ concurrency: 8, leaseRenewIntervalMs: 1000 })), 5, 'one renewal in flight');
    assert.equal(poolFloor(resolved({ concurrency: 64 })), 1);
  });

  test('transactional: one per running handler, plus claims and acks, plus the shared one', () => {
    assert.equal(poolDemand(resolved({ transactional: true, concurrency: 8 })), 11);
    assert.equal(poolDemand(resolved({ transactional: true, concurrency: 8, leaseRenewIntervalMs: 1000 })), 12);
    assert.equal(poolFloor(resolved({ transactional: true, concurrency: 8 })), 10);
  });

  test('row-lock: one per loop (ceil(concurrency / fetchBatchSize) + 1), plus the shared one', () => {
    assert.equal(poolDemand(resolved({ lease: 'row-lock', concurrency: 8, fetchBatchSize: 2 })), 6);
    assert.equal(poolDemand(resolved({ lease: 'row-lock', concurrency: 1 })), 3);
    assert.equal(poolFloor(resolved({ lease: 'row-lock', concurrency: 8, fetchBatchSize: 2 })), 5);
  });
});

describe('configBudget: per process, per host', () => {
  // The demo config of `txoutbox dev` (src/cli/dev-command.ts): two consumers × two processes, concurrency 8.
  const demo = { emails: ['concurrency: 8'], stock: ['concurrency: 8'] };

  test('the demo config: 6 per process (pool 4 + LISTEN + NOTIFY), 27 per host with the supervisor’s queue-state lock; with 0.1’s fixed pool of 10, 51', async () => {
    const after = configBudget(await load(config([], demo)));
    assert.equal(
      budgetText(after),
      'emails 6 (pool 4 + LISTEN + NOTIFY) × 2, stock 6 (pool 4 + LISTEN + NOTIFY) × 2, supervisor 3 (pool 2 + queue-state lock) = 27 per host',
    );
    const before = configBudget(await load(config(['poolSize: 10'], demo)));
    assert.equal(before.perHost, 51);
    assert.deepEqual([after.perHost * 10, before.perHost * 10], [270, 510], 'ten hosts');
  });

  test('every mode and option counts: transactional, row-lock, relays, polling, in-transaction NOTIFY, the dashboard', async () => {
    const budget = configBudget(
      await load([
        ...config(['listen: false', 'notify: in-transaction'], {
          tx: ['transactional: true', 'concurrency: 5'],
          locked: ['lease: row-lock', 'concurrency: 4', 'fetchBatchSize: 2'],
        }),
        'relays:',
        '  out:',
        '    queues: [out]',
        '    sink: { type: webhook, url: "http://127.0.0.1:1/hook" }',
        'dashboard:',
        '  port: 0',
      ]),
    );
    assert.deepEqual(
      budget.served.map((entry) => [entry.name, entry.kind, entry.processes, entry.perProcess]),
      [
        ['tx', 'consumer', 2, { pool: 8, listen: 0, notify: 0, total: 8 }],
        ['locked', 'consumer', 2, { pool: 4, listen: 0, notify: 0, total: 4 }],
        ['out', 'relay', 1, { pool: 4, listen: 0, notify: 0, total: 4 }],
      ],
    );
    assert.equal(budget.supervisor, 5, 'pool 4 with the dashboard + the queue-state lock');
    assert.equal(budget.perHost, 2 * 8 + 2 * 4 + 4 + 5);
  });

  test('the queue-state lock session counts only where the election runs: not behind a pooler without listenUrl', async () => {
    const direct = await load(config([], { a: [] }));
    const pooledDirectListen = await load(config(['transactionPooling: true', `listenUrl: ${URL_WITH_SECRET}`], { a: [] }));
    const pooled = await load(config(['transactionPooling: true'], { a: [] }));
    assert.deepEqual(
      [direct, pooledDirectListen, pooled].map((c) => [electsQueueStateLeader(c), configBudget(c).leaderSession]),
      [
        [true, 1],
        [true, 1],
        [false, 0],
      ],
    );
  });

  test('an explicit poolSize wins, and each consumer’s plan carries its pool and application_name', async () => {
    const derived = consumerPlans(await load(config([], { a: ['transactional: true', 'concurrency: 3'], b: [] })));
    assert.deepEqual(
      [...derived.values()].map(({ spec }) => [spec.poolSize, new URL(spec.databaseUrl).searchParams.get('application_name')]),
      [
        [6, 'txoutbox-a'],
        [4, 'txoutbox-b'],
      ],
    );
    const fixed = consumerPlans(await load(config(['poolSize: 7'], { a: ['transactional: true', 'concurrency: 3'], b: [] })));
    assert.deepEqual(
      [...fixed.values()].map(({ spec }) => spec.poolSize),
      [7, 7],
    );
  });

  test('a poolSize below what a transactional or row-lock consumer holds at once is refused, naming the consumer and the fix', async () => {
    const tx = await issues(config(['poolSize: 4'], { fine: [], tx: ['transactional: true', 'concurrency: 8'] }));
    assert.match(
      tx.get('database.poolSize') ?? '',
      /expected at least 10 for consumer tx: each of its 8 transactional handlers holds a connection/,
    );
    assert.match(tx.get('database.poolSize') ?? '', /leave it out/);
    const locked = await issues(config(['poolSize: 2'], { locked: ['lease: row-lock', 'concurrency: 8', 'fetchBatchSize: 4'] }));
    assert.match(locked.get('database.poolSize') ?? '', /at least 3 for consumer locked: its 3 row-lock loops/);
  });
});

describe('database: keys for PgBouncer in transaction mode', () => {
  test('transactionPooling, preparedStatements, listen, notify and listenUrl reach every process', async () => {
    const loaded = await load(
      config(
        [
          'transactionPooling: true',
          'preparedStatements: true',
          'notify: in-transaction',
          `listenUrl: ${URL_WITH_SECRET.replace('5432', '5433')}`,
        ],
        { a: [] },
      ),
    );
    assert.deepEqual(consumerPlans(loaded).get('a')?.spec.connection, {
      transactionPooling: true,
      preparedStatements: true,
      notify: 'in-transaction',
      listenConnectionString: 'postgres://app:s3cr3t-pw@db.internal:5433/app?application_name=txoutbox-a',
    });
    // LISTEN on its direct connection, no NOTIFY connection (in-transaction): pool 4 + 1.
    assert.equal(configBudget(loaded).served[0]?.perProcess.total, 5);
    const polling = configBudget(await load(config(['transactionPooling: true'], { a: [] })));
    assert.deepEqual(polling.served[0]?.perProcess, { pool: 4, listen: 0, notify: 1, total: 5 }, 'polls: no LISTEN by default');
  });

  test('typed errors at the key’s path, never showing the password', async () => {
    const found = await issues(
      config(['transactionPooling: yes', 'preparedStatements: 1', 'notify: later', 'listenUrl: mysql://u:s3cr3t-pw@h/db'], {
        a: [],
      }),
    );
    assert.match(found.get('database.transactionPooling') ?? '', /a boolean/);
    assert.match(found.get('database.preparedStatements') ?? '', /a boolean/);
    assert.match(found.get('database.notify') ?? '', /'after-commit' or 'in-transaction'/);
    assert.match(found.get('database.listenUrl') ?? '', /a postgres:\/\/ or postgresql:\/\/ URL/);
    const listen = await issues(config(['transactionPooling: true', 'listen: true'], { a: [] }));
    assert.match(listen.get('database.listen') ?? '', /false, or a listenConnectionString, under transactionPooling/);
    assert.match(listen.get('database.listen') ?? '', /direct connection/);
    const unknown = await issues(config(['listenURL: x'], { a: [] }));
    assert.ok(unknown.has('database.listenURL'));
  });
});

describe('the start-up line', () => {
  // The server's numbers are injected here (max_connections cannot be lowered for one test); the
  // runner test reads them from the real server.
  const server = (inUse: number): ServerConnections => ({ maxConnections: 100, reserved: 3, inUse });

  test('info with how many hosts fit; a warning past 80 % of what the server allows', async () => {
    const loaded = await load(config([], { emails: ['concurrency: 8'], stock: ['concurrency: 8'] }));
    const logger = new TestLogger();
    await reportConnectionBudget(loaded, logger, () => Promise.resolve(server(10)));
    const line = logger.entries.at(-1);
    assert.equal(line?.level, 'info');
    assert.match(
      line?.message ?? '',
      /= 27 per host; server max_connections 100 \(3 reserved\), 10 in use: 3 hosts of this config fit$/,
    );
    await reportConnectionBudget(loaded, logger, () => Promise.resolve(server(60)));
    const warning = logger.entries.at(-1);
    assert.equal(warning?.level, 'warn');
    assert.match(warning?.message ?? '', /1 host of this config fit — this host takes the server to 87 of 97 connections/);
    await reportConnectionBudget(loaded, logger, () => Promise.reject(new Error('connect ECONNREFUSED')));
    assert.match(logger.entries.at(-1)?.message ?? '', /^connection budget: .* = 27 per host$/);
  });

  test('behind a transaction pooler only the direct connections (LISTEN, the queue-state lock) count against the server', async () => {
    const loaded = await load(config(['transactionPooling: true', `listenUrl: ${URL_WITH_SECRET}`], { a: [] }));
    const logger = new TestLogger();
    // 70 in use + 3 direct connections (2 LISTEN, the supervisor's lock session on listenUrl) stay under 80 % of 97 (the 12 client connections go to PgBouncer).
    await reportConnectionBudget(loaded, logger, () => Promise.resolve(server(70)));
    const line = logger.entries.at(-1);
    assert.equal(line?.level, 'info');
    assert.match(
      line?.message ?? '',
      /= 15 per host; .*: 9 hosts of this config fit; through a transaction pooler: .* plus 3 direct connections per host$/,
    );
  });

  test('a reload: a warning when the connections its rollout opens before the old ones close take the server past 80 %', async () => {
    // Reproduction (review finding): a reload was never measured against the server; old and new
    // processes run side by side during a rollout, and a server near max_connections refused them.
    const running = await load(config([], { emails: ['concurrency: 8'] }));
    const sameConfig = await load(config([], { emails: ['concurrency: 8'] }));
    assert.equal(reloadSurplus(running, sameConfig), 0, 'nothing changed: nothing opened');
    const changed = await load(config([], { emails: ['concurrency: 8', 'maxDeliveries: 3'] }));
    const perProcess = configBudget(changed).served[0]?.perProcess.total ?? 0;
    assert.equal(reloadSurplus(running, changed), perProcess, "a changed spec: one probation replacement's connections");
    const added = await load(config([], { emails: ['concurrency: 8'], stock: ['concurrency: 8'] }));
    assert.equal(reloadSurplus(running, added), 2 * perProcess, "a new consumer: its 2 processes'");

    const logger = new TestLogger();
    await reportReloadBudget(running, added, logger, () => Promise.resolve(server(10)));
    assert.equal(logger.entries.length, 0, 'fits: nothing said');
    await reportReloadBudget(running, added, logger, () => Promise.resolve(server(70)));
    const warning = logger.entries.at(-1);
    assert.equal(warning?.level, 'warn');
    assert.match(
      warning?.message ?? '',
      new RegExp(
        `^config reload: the rollout opens up to ${2 * perProcess} connections .* taking the server to ${70 + 2 * perProcess} of 97 connections`,
      ),
    );
    await reportReloadBudget(running, sameConfig, logger, () => Promise.reject(new Error('not asked')));
    await reportReloadBudget(running, added, logger, () => Promise.reject(new Error('connect ECONNREFUSED')));
    assert.equal(logger.entries.length, 1, 'unread server: the reload goes on without a word');
  });
});
