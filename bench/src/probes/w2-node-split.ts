/**
 * W2's Node side, split (issue 18, round five): where does the whole process's CPU per
 * batch-published message go, and how much of it is the after-commit wake-up?
 *
 * One process, one embedded server, this checkout's dist/ (`npm run build` first). Each round runs
 * every variant once, in rotated order: `perPhase` messages, 100 per transaction (BEGIN;
 * publishBatch; COMMIT), `producers` connections, the table truncated and a CHECKPOINT before each
 * phase. Variants:
 * - `in-transaction`: `notify: 'in-transaction'` (pg_notify inside the publish statement);
 * - `after-commit`: the default (the COMMIT watch, then the Outbox's WakeNotifier sends NOTIFY);
 * - `after-commit, no NOTIFY`: as after-commit, but WakeNotifier.request() returns at once (a
 *   diagnostic, patched in this process only): the COMMIT watch's cost without the statements;
 * - `after-commit, ≤1 per 10 ms`: request() forwards at most one wake-up per 10 ms (diagnostic):
 *   what fewer NOTIFY statements would save;
 * - `publishBatch's statement, pg only`: the exact statement and values publishBatch sent
 *   (after-commit), captured once and sent again through pg.Client without the library: how much
 *   of the Node side is node-postgres and the round trip, and how much the library's code;
 * - `raw SQL`: `INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])`.
 * Per variant, medians over rounds 2 and later: msgs/s, ÷ raw SQL of the same round, Node CPU
 * µs/msg (user and system apart: process.cpuUsage; the main thread and the other threads apart:
 * /proc/self/task/<tid>/schedstat), server CPU µs/msg (/proc/<pid>/schedstat of
 * every backend pg_stat_activity lists), wake statements and request() calls per batch (counted
 * by wrapping pg.Client.prototype.query and WakeNotifier.prototype.request).
 *
 *   npm run build
 *   [W2_PROFILE_DIR=<dir>] node --import tsx bench/src/probes/w2-node-split.ts [rounds, 7] [messages per phase, 20000] [producers, 8]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import pg from 'pg';

import type * as Notifier from '../../../src/producer/wake-notifier.js';
import { profiled } from '../cpu-profile.js';
import { txoutbox } from '../library.js';
import * as RAW from '../systems/raw.js';
import { body, quietLogger } from '../systems/system.js';
import { probeResources } from './probe-resources.js';
import { serverCpuNs } from './server-cpu.js';

const rounds = Number(process.argv[2] ?? 7);
const perPhase = Number(process.argv[3] ?? 20_000);
const producers = Number(process.argv[4] ?? 8);
const BATCH = 100;
/** W2_PROFILE_DIR=<dir>: a V8 CPU profile of every measured phase (it slows every variant alike). */
const profileDir = process.env['W2_PROFILE_DIR'];

const distUrl = new URL('../../../dist/', import.meta.url);
const { WakeNotifier } = (await import(new URL('producer/wake-notifier.js', distUrl).href)) as typeof Notifier;
// The pg that dist/ imports (the notifier's connection), which may be another copy than this file's.
const distPg = createRequire(new URL('index.js', distUrl))('pg') as typeof pg;

type RequestMode = 'pass' | 'drop' | 'sparse';
let requestMode: RequestMode = 'pass';
let requests = 0;
let wakeStatements = 0;
let lastForwarded = Number.NEGATIVE_INFINITY;
/** publishBatch's own statement and values, captured once (the `publishBatch's statement, pg only` variant). */
let capturing = false;
let captured: pg.QueryConfig | undefined;
// eslint-disable-next-line @typescript-eslint/unbound-method -- called with .call(this) below
const originalRequest = WakeNotifier.prototype.request;
WakeNotifier.prototype.request = function request(this: Notifier.WakeNotifier, queue: string): void {
  requests += 1;
  if (requestMode === 'drop') return;
  if (requestMode === 'sparse') {
    const now = performance.now();
    if (now - lastForwarded < 10) return;
    lastForwarded = now;
  }
  originalRequest.call(this, queue);
};
for (const Client of new Set([distPg.Client, pg.Client])) {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- applied with its `this` below
  const originalQuery = Client.prototype.query as (...args: unknown[]) => unknown;
  (Client.prototype as { query: unknown }).query = function query(this: pg.Client, ...args: unknown[]): unknown {
    const config = args[0] as { name?: string; text?: string } | string | undefined;
    const name = typeof config === 'object' ? config.name : undefined;
    if (name?.startsWith('txoutbox_wake_') === true) wakeStatements += 1;
    if (
      capturing &&
      typeof config === 'object' &&
      name?.startsWith('txoutbox_') === true &&
      config.text?.includes('INSERT') === true
    )
      captured = config as pg.QueryConfig;
    return originalQuery.apply(this, args);
  };
}

/** CPU ns of this process's main thread, and of all its other threads (V8's GC and compiler helpers, libuv's pool). */
const threadCpuNs = (): { main: number; helpers: number } => {
  let main = 0;
  let helpers = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      if (Number(tid) === process.pid) main += ns;
      else helpers += ns;
    } catch {
      // a thread that ended between the two reads
    }
  }
  return { main, helpers };
};

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};
const bodies = (from: number) => Array.from({ length: BATCH }, (_, i) => body(from + i));

const { server, admin, clients, outboxes, close } = await probeResources();
try {
  const afterCommit = new txoutbox.Outbox({
    connectionString: server.connectionString,
    dlqTable: false,
    logger: quietLogger,
  });
  const inTransaction = new txoutbox.Outbox({
    connectionString: server.connectionString,
    dlqTable: false,
    logger: quietLogger,
    notify: 'in-transaction',
  });
  outboxes.push(afterCommit, inTransaction);
  await afterCommit.migrate();
  await admin.query(RAW.CREATE_TABLE);
  for (let c = 0; c < producers; c += 1) {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    clients.push(client);
  }
  const first = clients[0];
  if (first === undefined) throw new Error('no producers');
  capturing = true;
  await first.query('BEGIN');
  await afterCommit.publishBatch(first, 'bench', bodies(0));
  await first.query('ROLLBACK');
  capturing = false;
  const statement = captured;
  if (statement === undefined) throw new Error('publishBatch sent no INSERT to capture');
  type Publish = (client: pg.Client, from: number) => Promise<unknown>;
  const variants: Record<string, { mode: RequestMode; publish: Publish }> = {
    'in-transaction': { mode: 'pass', publish: (client, from) => inTransaction.publishBatch(client, 'bench', bodies(from)) },
    'after-commit': { mode: 'pass', publish: (client, from) => afterCommit.publishBatch(client, 'bench', bodies(from)) },
    'after-commit, no NOTIFY': {
      mode: 'drop',
      publish: (client, from) => afterCommit.publishBatch(client, 'bench', bodies(from)),
    },
    'after-commit, ≤1 per 10 ms': {
      mode: 'sparse',
      publish: (client, from) => afterCommit.publishBatch(client, 'bench', bodies(from)),
    },
    "publishBatch's statement, pg only": { mode: 'pass', publish: (client) => client.query(statement) },
    'raw SQL': {
      mode: 'pass',
      publish: (client, from) =>
        client.query({
          name: 'raw_insert_many',
          text: 'INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])',
          values: [bodies(from).map((b) => JSON.stringify(b))],
        }),
    },
  };
  const results = new Map<string, Record<string, number[]>>();
  const push = (name: string, key: string, value: number) => {
    const row = results.get(name) ?? {};
    row[key] = [...(row[key] ?? []), value];
    results.set(name, row);
  };
  for (let round = 0; round < rounds; round += 1) {
    const names = Object.keys(variants);
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    const rates: Record<string, number> = {};
    for (const name of order) {
      const variant = variants[name];
      if (variant === undefined) continue;
      await admin.query('TRUNCATE txoutbox.outbox, raw_q');
      await admin.query('CHECKPOINT');
      // Let a wake-up still pending from the last phase go out before the counters start.
      await new Promise((resolve) => setTimeout(resolve, 20));
      requestMode = variant.mode;
      let next = 0;
      const requestsBefore = requests;
      const wakesBefore = wakeStatements;
      const threadsBefore = threadCpuNs();
      const nodeBefore = process.cpuUsage();
      const pgBefore = await serverCpuNs(admin);
      const started = performance.now();
      await profiled(round > 0 ? profileDir : undefined, `${name.replace(/\W+/g, '-')}-${round}`, () =>
        Promise.all(
          clients.map(async (client) => {
            while (next < perPhase) {
              const from = next;
              next += BATCH;
              await client.query('BEGIN');
              await variant.publish(client, from);
              await client.query('COMMIT');
            }
          }),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      const nodeUsed = process.cpuUsage(nodeBefore);
      const threads = threadCpuNs();
      const pgUsed = (await serverCpuNs(admin)) - pgBefore;
      requestMode = 'pass';
      const table = name === 'raw SQL' ? 'raw_q' : 'txoutbox.outbox';
      const count = Number((await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.n);
      if (count !== perPhase) throw new Error(`${name}: ${count} rows, ${perPhase} published`);
      rates[name] = perPhase / seconds;
      if (round > 0) {
        push(name, 'rate', perPhase / seconds);
        push(name, 'user', nodeUsed.user / perPhase);
        push(name, 'system', nodeUsed.system / perPhase);
        push(name, 'node', (nodeUsed.user + nodeUsed.system) / perPhase);
        push(name, 'server', pgUsed / 1000 / perPhase);
        push(name, 'mainThread', (threads.main - threadsBefore.main) / 1000 / perPhase);
        push(name, 'helpers', (threads.helpers - threadsBefore.helpers) / 1000 / perPhase);
        push(name, 'requests', ((requests - requestsBefore) * BATCH) / perPhase);
        push(name, 'wakes', ((wakeStatements - wakesBefore) * BATCH) / perPhase);
      }
    }
    if (round > 0)
      for (const name of Object.keys(variants)) push(name, 'ratio', (rates[name] ?? NaN) / (rates['raw SQL'] ?? NaN));
  }

  console.log(
    `W2 Node split: ${perPhase} messages per phase, ${BATCH} per transaction, ${producers} producers, medians of rounds 2–${rounds}:`,
  );
  const columns = ['rate', 'ratio', 'node', 'user', 'system', 'mainThread', 'helpers', 'server', 'requests', 'wakes'] as const;
  const heads = [
    'msgs/s',
    '÷ raw',
    'Node µs/msg',
    'user',
    'system',
    'main thread',
    'other threads',
    'server µs/msg',
    'request()/batch',
    'NOTIFY stmts/batch',
  ];
  console.log(`  ${'variant'.padEnd(28)} ${heads.map((h) => h.padStart(18)).join(' ')}`);
  for (const name of Object.keys(variants)) {
    const row = results.get(name) ?? {};
    const cell = (key: (typeof columns)[number]) => {
      const values = row[key] ?? [];
      const digits = key === 'rate' ? 0 : 2;
      return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
    };
    console.log(`  ${name.padEnd(28)} ${columns.map((key) => cell(key).padStart(18)).join(' ')}`);
  }
} finally {
  await close();
}
