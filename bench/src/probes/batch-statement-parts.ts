/**
 * What each part of publishBatch's statement costs the server (issue 18, round nine: W2 ≥ 0.8× raw
 * SQL). The statement and values publishBatch sends for 100 of W2's bodies are captured once and
 * sent again, unchanged or with one part changed, by `producers` connections (BEGIN, the
 * statement, COMMIT; fsync on), next to raw SQL's multi-row INSERT. Node builds nothing per batch,
 * so the figures are the server's alone:
 *
 * - `shipped`; `no ORDER BY m.ord` (the rows' sort by publish order); `string_agg unordered` (the
 *   returned ids' sort); `headers content-type only` (rows without the correlation id);
 *   `headers {}` (no header at all); `no keyed next_attempt_at` (without the per-key due time,
 *   what an unkeyed publish evaluates to anyway); `no ready_idx` (a copy of the table without it);
 *   `raw SQL`.
 *
 * Each round runs every variant once in a rotated order on truncated tables after a CHECKPOINT;
 * the figures are medians of rounds 2 and later: msgs/s, ÷ raw SQL, the producers' backend CPU per
 * message (/proc/<pid>/schedstat), the statement's execution per message (pg_stat_statements).
 *
 *   node --import tsx bench/src/probes/batch-statement-parts.ts [rounds, 7] [messages per phase, 20000] [producers, 8]
 */
import pg from 'pg';

import { Outbox } from '../../../src/index.js';
import * as RAW from '../systems/raw.js';
import { body, quietLogger } from '../systems/system.js';
import { probeResources } from './probe-resources.js';
import { processCpuNs } from './server-cpu.js';

const ROUNDS = Number(process.argv[2] ?? 7);
const PER_PHASE = Number(process.argv[3] ?? 20_000);
const PRODUCERS = Number(process.argv[4] ?? 8);
const BATCH = 100;
const bodies = () => Array.from({ length: BATCH }, (_, i) => body(i));

const { server, admin, clients, outboxes, close } = await probeResources();
try {
  const outbox = new Outbox({ connectionString: server.connectionString, dlqTable: false, logger: quietLogger });
  outboxes.push(outbox);
  await outbox.migrate();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.query(RAW.CREATE_TABLE);
  await admin.query('CREATE TABLE txoutbox.outbox_no_ready (LIKE txoutbox.outbox INCLUDING ALL)');
  const ready = await admin.query<{ indexname: string }>(
    `SELECT indexname FROM pg_indexes WHERE schemaname = 'txoutbox' AND tablename = 'outbox_no_ready' AND indexdef LIKE '%(queue, next_attempt_at, id)%'`,
  );
  if (ready.rows.length !== 1) throw new Error(`expected one ready index on the copy, found ${ready.rows.length}`);
  await admin.query(`DROP INDEX txoutbox."${ready.rows[0]?.indexname}"`);
  for (let c = 0; c < PRODUCERS; c += 1) {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    clients.push(client);
  }

  // publishBatch's own statement and values, captured from the first client's query.
  const first = clients[0] as pg.Client;
  const query = first.query.bind(first) as (...args: unknown[]) => unknown;
  let captured: pg.QueryConfig | undefined;
  (first as unknown as { query: unknown }).query = (...args: unknown[]) => {
    const config = args[0] as pg.QueryConfig | string;
    if (typeof config === 'object' && config.text.includes('INSERT')) captured = config;
    return query(...args);
  };
  await first.query('BEGIN');
  await outbox.publishBatch(first, 'bench', bodies());
  await first.query('ROLLBACK');
  (first as unknown as { query: unknown }).query = query;
  if (captured === undefined) throw new Error('publishBatch sent no INSERT to capture');
  const { text } = captured;
  const values: unknown[] = (captured.values as unknown[] | undefined) ?? [];
  const edit = (from: string | RegExp, to: string): string => {
    const edited = typeof from === 'string' ? text.replaceAll(from, to) : text.replace(from, to);
    if (edited === text) throw new Error(`publishBatch's statement no longer contains ${String(from)}: update this probe`);
    return edited;
  };
  const lines = String(values[4]).split('\n');
  const contentTypeOnly = lines.map(() => '{"content-type":"application/json"}').join('\n');
  type Variant = { readonly text: string; readonly values: unknown[] } | 'raw';
  const VARIANTS: Record<string, Variant> = {
    shipped: { text, values },
    'no ORDER BY m.ord': { text: edit('ORDER BY m.ord', ''), values },
    'string_agg unordered': {
      text: edit("string_agg(inserted.id::text, ',' ORDER BY inserted.id)", "string_agg(inserted.id::text, ',')"),
      values,
    },
    'headers content-type only': { text, values: [...values.slice(0, 4), contentTypeOnly, ...values.slice(5)] },
    'headers {}': { text: edit('m.headers::jsonb', "'{}'::jsonb"), values },
    'no keyed next_attempt_at': {
      text: edit(/GREATEST\((COALESCE\([\s\S]*?\)), \(SELECT p\.next_attempt_at[\s\S]*?LIMIT 1\)\)/, '$1'),
      values,
    },
    'no ready_idx': { text: edit('"txoutbox"."outbox"', 'txoutbox.outbox_no_ready'), values },
    'raw SQL': 'raw',
  };

  const pids: number[] = [];
  for (const client of clients)
    pids.push((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0);
  const serverNs = () => pids.reduce((sum, pid) => sum + processCpuNs(pid), 0);
  const names = Object.keys(VARIANTS);
  const results = new Map<string, { rate: number[]; cpu: number[]; exec: number[] }>(
    names.map((n) => [n, { rate: [], cpu: [], exec: [] }]),
  );
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    for (const name of order) {
      const variant = VARIANTS[name] as Variant;
      await admin.query('TRUNCATE txoutbox.outbox, txoutbox.outbox_no_ready, raw_q');
      await admin.query('CHECKPOINT');
      await admin.query('SELECT pg_stat_statements_reset()');
      const statement = `variant_${names.indexOf(name)}`;
      const before = serverNs();
      const started = performance.now();
      let next = 0;
      await Promise.all(
        clients.map(async (client) => {
          while (next < PER_PHASE) {
            next += BATCH;
            await client.query('BEGIN');
            if (variant === 'raw')
              await client.query({ name: 'raw', text: RAW.INSERT_MANY, values: [bodies().map((b) => JSON.stringify(b))] });
            else await client.query({ name: statement, text: variant.text, values: variant.values });
            await client.query('COMMIT');
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const used = serverNs() - before;
      const { rows } = await admin.query<{ ms: number }>(
        `SELECT coalesce(sum(total_exec_time), 0)::float8 AS ms FROM pg_stat_statements WHERE query LIKE '%INSERT%'`,
      );
      if (round === 0) continue;
      const result = results.get(name);
      result?.rate.push(PER_PHASE / seconds);
      result?.cpu.push(used / 1000 / PER_PHASE);
      result?.exec.push(((rows[0]?.ms ?? 0) * 1000) / PER_PHASE);
    }
    console.error(`round ${round + 1}/${ROUNDS} done`);
  }
  const median = (xs: readonly number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  const of = (name: string, key: 'rate' | 'cpu' | 'exec') => median(results.get(name)?.[key] ?? []);
  console.log(
    `\npublishBatch's statement by part: ${PER_PHASE} messages per phase, ${BATCH} per transaction, ${PRODUCERS} producers, medians of rounds 2–${ROUNDS}`,
  );
  console.log('| variant | msgs/s | ÷ raw SQL | backend CPU µs/msg | ÷ shipped | execution µs/msg |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const name of names)
    console.log(
      `| ${name} | ${of(name, 'rate').toFixed(0)} | ${(of(name, 'rate') / of('raw SQL', 'rate')).toFixed(2)} | ${of(name, 'cpu').toFixed(2)} | ` +
        `${(of(name, 'cpu') / of('shipped', 'cpu')).toFixed(2)} | ${of(name, 'exec').toFixed(2)} |`,
    );
} finally {
  await close();
}
