/**
 * W2 A/B (issue 18, round four): publishBatch of this checkout against a baseline build of the
 * library (main's, compiled into another directory) and raw SQL's multi-row INSERT, interleaved in
 * one process on one server, so the VM's noise (other engineers' runs) falls on all three alike.
 *
 * Each round runs every variant once, starting one variant later each round: `perPhase` messages,
 * 100 per transaction (BEGIN; publishBatch; COMMIT), `producers` concurrent connections, the table
 * truncated before each phase. Per variant, medians over rounds 2 and later of:
 * - msgs/s, and the ratio to raw SQL's phase in the same round;
 * - Node CPU µs per message (process.cpuUsage over the phase: the library, pg, the harness);
 * - server CPU µs per message (/proc/<pid>/schedstat of every server process pg_stat_activity
 *   lists: the producers' backends, WAL writer, checkpointer, the notifier's backend);
 * - Node CPU µs per message up to the query (publishBatch against an executor that answers at
 *   once, 2,000 batches; raw SQL: building its values), pg's prepareValue included in all.
 *
 *   npm run build && (cd <baseline> && npx tsc -p tsconfig.build.json)
 *   node --import tsx bench/src/probes/batch-ab.ts <baseline dist dir> [rounds, 7] [messages per phase, 20000] [producers, 8] [after-commit | in-transaction]
 *
 * fsync and synchronous_commit as the bench's (on): the numbers include the WAL flush, as W2's do.
 */
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import pg from 'pg';

import type * as Root from '../../../src/index.js';
import { txoutbox } from '../library.js';
import * as RAW from '../systems/raw.js';
import { body, quietLogger } from '../systems/system.js';
import { probeResources } from './probe-resources.js';
import { serverCpuNs } from './server-cpu.js';

const baselineDir = process.argv[2];
if (baselineDir === undefined)
  throw new Error('usage: batch-ab.ts <baseline dist dir> [rounds] [messages per phase] [producers]');
const rounds = Number(process.argv[3] ?? 7);
const perPhase = Number(process.argv[4] ?? 20_000);
const producers = Number(process.argv[5] ?? 8);
const notify = process.argv[6] === 'in-transaction' ? 'in-transaction' : 'after-commit';
const BATCH = 100;
const NODE_BATCHES = 2000;

const baseline = (await import(pathToFileURL(resolve(baselineDir, 'index.js')).href)) as typeof Root;
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (value: unknown) => unknown };
const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};
const bodies = (from: number) => Array.from({ length: BATCH }, (_, i) => body(from + i));

/** An executor in a transaction whose rows answer at once, in each build's result shape (none due: no COMMIT watch). */
const answering = (rows: unknown[]) => ({
  getTransactionStatus: () => 'T',
  connection: { on: () => undefined, removeListener: () => undefined },
  query: (config: { values?: unknown[] }) => {
    for (const value of config.values ?? []) prepareValue(value);
    return Promise.resolve({ rows, rowCount: rows.length });
  },
});
const ids = Array.from({ length: BATCH }, (_, i) => String(i + 1));
const PER_ROW = ids.map((id) => ({ id, due: false }));
const ONE_ROW = [{ ids: ids.join(','), due: false }];

const { server, admin, clients, outboxes, close } = await probeResources();
try {
  const mainOutbox = new baseline.Outbox({
    connectionString: server.connectionString,
    dlqTable: false,
    logger: quietLogger,
    notify,
  });
  const ourOutbox = new txoutbox.Outbox({
    connectionString: server.connectionString,
    dlqTable: false,
    logger: quietLogger,
    notify,
  });
  outboxes.push(mainOutbox, ourOutbox);
  await ourOutbox.migrate();
  await admin.query(RAW.CREATE_TABLE);

  // ---- Node up to the query.
  const nodeWays: Record<string, () => Promise<void>> = {
    baseline: async () => {
      const executor = answering(PER_ROW);
      for (let i = 0; i < NODE_BATCHES; i += 1) await mainOutbox.publishBatch(executor, 'bench', bodies(i * BATCH));
    },
    'this checkout': async () => {
      const executor = answering(ONE_ROW);
      for (let i = 0; i < NODE_BATCHES; i += 1) await ourOutbox.publishBatch(executor, 'bench', bodies(i * BATCH));
    },
    "raw SQL's values": async () => {
      for (let i = 0; i < NODE_BATCHES; i += 1) {
        prepareValue(bodies(i * BATCH).map((b) => JSON.stringify(b)));
        await Promise.resolve();
      }
    },
  };
  const nodeTimes = new Map<string, number[]>();
  for (let round = 0; round < rounds; round += 1) {
    const ways = Object.entries(nodeWays);
    for (const [name, run] of [...ways.slice(round % ways.length), ...ways.slice(0, round % ways.length)]) {
      const before = process.cpuUsage();
      await run();
      const used = process.cpuUsage(before);
      if (round > 0) nodeTimes.set(name, [...(nodeTimes.get(name) ?? []), (used.user + used.system) / (NODE_BATCHES * BATCH)]);
    }
  }

  // ---- W2 end to end.
  for (let c = 0; c < producers; c += 1) {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    clients.push(client);
  }
  type Publish = (client: pg.Client, from: number) => Promise<unknown>;
  const variants: Record<string, Publish> = {
    baseline: (client, from) => mainOutbox.publishBatch(client, 'bench', bodies(from)),
    'this checkout': (client, from) => ourOutbox.publishBatch(client, 'bench', bodies(from)),
    'raw SQL': (client, from) =>
      client.query({
        name: 'raw_insert_many',
        text: 'INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])',
        values: [bodies(from).map((b) => JSON.stringify(b))],
      }),
  };
  const rate = new Map<string, number[]>();
  const ratio = new Map<string, number[]>();
  const nodeCpu = new Map<string, number[]>();
  const pgCpu = new Map<string, number[]>();
  const push = (map: Map<string, number[]>, key: string, value: number) => map.set(key, [...(map.get(key) ?? []), value]);
  for (let round = 0; round < rounds; round += 1) {
    const names = Object.keys(variants);
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    const rates: Record<string, number> = {};
    for (const name of order) {
      const publish = variants[name];
      if (publish === undefined) continue;
      await admin.query('TRUNCATE txoutbox.outbox, raw_q');
      await admin.query('CHECKPOINT');
      let next = 0;
      const nodeBefore = process.cpuUsage();
      const pgBefore = await serverCpuNs(admin);
      const started = performance.now();
      await Promise.all(
        clients.map(async (client) => {
          while (next < perPhase) {
            const from = next;
            next += BATCH;
            await client.query('BEGIN');
            await publish(client, from);
            await client.query('COMMIT');
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const pgUsed = (await serverCpuNs(admin)) - pgBefore;
      const nodeUsed = process.cpuUsage(nodeBefore);
      const table = name === 'raw SQL' ? 'raw_q' : 'txoutbox.outbox';
      const count = Number((await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.n);
      if (count !== perPhase) throw new Error(`${name}: ${count} rows, ${perPhase} published`);
      rates[name] = perPhase / seconds;
      if (round > 0) {
        push(rate, name, perPhase / seconds);
        push(nodeCpu, name, (nodeUsed.user + nodeUsed.system) / perPhase);
        push(pgCpu, name, pgUsed / 1000 / perPhase);
      }
    }
    if (round > 0) for (const name of Object.keys(variants)) push(ratio, name, (rates[name] ?? NaN) / (rates['raw SQL'] ?? NaN));
  }

  console.log(
    `W2 A/B (notify: ${notify}): ${perPhase} messages per phase, ${BATCH} per transaction, ${producers} producers, medians of rounds 2–${rounds} (min–max):`,
  );
  const span = (values: readonly number[], digits: number) =>
    `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
  console.log(
    `  ${'variant'.padEnd(16)} ${'msgs/s'.padStart(24)} ${'÷ raw'.padStart(20)} ${'Node µs/msg'.padStart(20)} ${'server µs/msg'.padStart(20)}`,
  );
  for (const name of Object.keys(variants)) {
    console.log(
      `  ${name.padEnd(16)} ${span(rate.get(name) ?? [], 0).padStart(24)} ${span(ratio.get(name) ?? [], 2).padStart(20)} ${span(nodeCpu.get(name) ?? [], 2).padStart(20)} ${span(pgCpu.get(name) ?? [], 2).padStart(20)}`,
    );
  }
  console.log(`Node CPU µs per message up to the query (${NODE_BATCHES} batches of ${BATCH}, medians of rounds 2–${rounds}):`);
  for (const [name, times] of nodeTimes) console.log(`  ${name.padEnd(16)} ${span(times, 2)}`);
} finally {
  await close();
}
