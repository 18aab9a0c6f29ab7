/**
 * Where W2's gap to raw SQL comes from (issue 18): publishBatch of 100 messages against raw SQL's
 * multi-row INSERT, split by cause, on the same data, in interleaved rounds (each round starts one
 * variant later, so none always follows the same one).
 *
 * Server side: the statement publishBatch sends (captured from outbox.publishBatch itself, with its
 * exact values) and variants of it by hand with plain `pg`, each one thing changed:
 * - the statement before issue 18 (json_array_elements, base64 payloads, headers per row);
 * - payload as JSON text instead of base64, headers from one parameter instead of per row, no
 *   ORDER BY and no outer sort, no RETURNING, no key-lock / keyed-time expressions;
 * - the shipped statement on scratch copies of the outbox table with one index dropped each
 *   (PK, ready_idx, key_idx, timer_uq, lease_idx), and with every secondary index dropped;
 * - raw SQL's INSERT (`unnest($1::jsonb[])` into a table with a primary key only);
 * - the shipped statement with a result row per message (as before round four) and with no
 *   RETURNING at all.
 * Per message: pg_stat_statements' execution time (the statement's executor only: raw SQL's
 * jsonb[] parameter is parsed at Bind, outside it) and the backend's CPU time from
 * /proc/<pid>/schedstat (parse, bind, execute, protocol: everything the server spends).
 *
 * Node side: CPU µs per message (process.cpuUsage over many batches) of outbox.publishBatch's path
 * up to the query (the compiled library, against an executor that answers at once) against
 * building raw SQL's values; both include pg's parameter serialization (prepareValue).
 *
 * `synchronous_commit = off`: the numbers are CPU, not the WAL flush. BENCHMARKS.md ("Issue 18:
 * batch publish") quotes the output.
 *
 *   npm run bench:batch-publish -- [rounds, default 5] [statements per variant and round, default 100] [clients, default 1] [label regex]
 *
 * Round 1 includes warm-up (JIT, plans): medians are over rounds 2 and later.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { txoutbox } from '../library.js';
import * as RAW from '../systems/raw.js';
import { body } from '../systems/system.js';

const rounds = Number(process.argv[2] ?? 5);
const perVariant = Number(process.argv[3] ?? 100);
const clients = Number(process.argv[4] ?? 1);
/** Only the variants whose label matches (raw SQL's INSERT is always run). */
const only = process.argv[5] === undefined ? undefined : new RegExp(process.argv[5]);
const BATCH = 100;
const NODE_BATCHES = 3000;

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};
/** node-postgres' own parameter serialization (not in its typings): what a query pays before it writes. */
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (value: unknown) => unknown };

/** What publishBatch sends, captured by an executor that answers at once (no round trip). */
interface Captured {
  text: string;
  values: unknown[];
}
const captured: Captured[] = [];
/** publishBatch's one result row: the ids joined by commas, whether any is due (src/producer/sql.ts). */
const ROWS = [{ ids: Array.from({ length: BATCH }, (_, i) => String(i + 1)).join(','), due: false }];
/**
 * A client in a transaction whose COMMIT could be watched (status 'T', protocol events), as pg's
 * is: publishBatch then sends the after-commit statement, as in W2. Its rows are not due, so no
 * COMMIT watch starts (W2's rows are: the watch is Node work this side leaves out).
 */
const answering = (capture: boolean) => ({
  getTransactionStatus: () => 'T',
  connection: { on: () => undefined, removeListener: () => undefined },
  query: (config: { text: string; values?: unknown[] }) => {
    // pg serializes every parameter before it writes; raw SQL's side pays the same below.
    for (const value of config.values ?? []) prepareValue(value);
    if (capture) captured.push({ text: config.text, values: config.values ?? [] });
    return Promise.resolve({ rows: ROWS, rowCount: ROWS.length });
  },
});

const server = await startEmbeddedPostgres({
  settings: { shared_preload_libraries: 'pg_stat_statements', synchronous_commit: 'off' },
});
const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
// An idle connection the server closes at shutdown must not crash the probe after its results.
admin.on('error', () => undefined);
const connections: pg.Client[] = [];
try {
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const outbox = new txoutbox.Outbox({ connectionString: server.connectionString, dlqTable: false });
  await outbox.migrate();

  // ---- Node side: CPU per message up to the query.
  const bodies = (round: number) => Array.from({ length: BATCH }, (_, i) => body(round * BATCH + i));
  const nodeWays: Record<string, () => Promise<void>> = {
    'outbox.publishBatch (to the query)': async () => {
      const executor = answering(false);
      for (let i = 0; i < NODE_BATCHES; i += 1) await outbox.publishBatch(executor, 'bench', bodies(i));
    },
    "raw SQL's values": async () => {
      for (let i = 0; i < NODE_BATCHES; i += 1) {
        const values = [bodies(i).map((b) => JSON.stringify(b))];
        for (const value of values) prepareValue(value);
        await Promise.resolve();
      }
    },
    'bodies only (both include it)': async () => {
      for (let i = 0; i < NODE_BATCHES; i += 1) {
        bodies(i);
        await Promise.resolve();
      }
    },
  };
  const nodeTimes = new Map<string, number[]>();
  for (let round = 0; round < rounds; round += 1) {
    const ways = Object.entries(nodeWays);
    const order = [...ways.slice(round % ways.length), ...ways.slice(0, round % ways.length)];
    for (const [name, run] of order) {
      const before = process.cpuUsage();
      await run();
      const used = process.cpuUsage(before);
      nodeTimes.set(name, [...(nodeTimes.get(name) ?? []), (used.user + used.system) / (NODE_BATCHES * BATCH)]);
    }
  }

  // ---- Server side. The shipped statement and values, as publishBatch sends them.
  await outbox.publishBatch(answering(true), 'bench', bodies(0));
  const shipped = captured[0];
  if (shipped === undefined) throw new Error('publishBatch sent no statement');
  await outbox.stop();

  const INDEXES = ['pkey', 'ready_idx', 'key_idx', 'timer_uq', 'lease_idx'] as const;
  const indexOf = async (table: string, which: string): Promise<string> => {
    const { rows } = await admin.query<{ name: string; def: string }>(
      `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1`,
      [table],
    );
    const match = (def: string): boolean =>
      ({
        pkey: / \(id\)$/.test(def),
        ready_idx: def.includes('next_attempt_at'),
        key_idx: def.includes('ordering_key'),
        timer_uq: def.includes('timer_id'),
        lease_idx: def.includes('acquired_at'),
      })[which] ?? false;
    const found = rows.find((row) => match(row.def));
    if (found === undefined) throw new Error(`no ${which} on ${table}`);
    return found.name;
  };
  const copies: { table: string; label: string }[] = [];
  for (const which of [...INDEXES, 'all secondary'] as const) {
    const table = `copy_no_${which.replace(' ', '_')}`;
    await admin.query(`CREATE TABLE ${table} (LIKE txoutbox.outbox INCLUDING ALL)`);
    const drop = which === 'all secondary' ? INDEXES.filter((i) => i !== 'pkey') : [which];
    for (const index of drop) {
      const name = await indexOf(table, index);
      if (index === 'pkey') await admin.query(`ALTER TABLE ${table} DROP CONSTRAINT ${name}`);
      else await admin.query(`DROP INDEX ${name}`);
    }
    copies.push({ table, label: which === 'all secondary' ? 'shipped, primary key only' : `shipped, without ${which}` });
  }
  await admin.query(RAW.CREATE_TABLE);

  // publishBatch's values: $1 queue, $2 the batch, $3 activateAt, $4 activateInMs, then the key.
  // W2's publishes: one queue, due now, no ordering key.
  const [queue, activateAt, activateInMs, key] = ['bench', null, 0, null];
  const sourceBodies = bodies(0);
  const payloads = sourceBodies.map((b) => JSON.stringify(b));
  const headerTexts = payloads.map(() =>
    JSON.stringify({ 'content-type': 'application/json', 'correlation-id': crypto.randomUUID() }),
  );
  const oldBatch = `[${payloads.map((p, i) => `{"p":"${Buffer.from(p).toString('base64')}","h":${headerTexts[i]}}`).join(',')}]`;
  const textBatch = `[${payloads.map((p, i) => `{"j":${p},"h":${headerTexts[i]}}`).join(',')}]`;
  const noHeadersBatch = `[${payloads.map((p) => `{"p":"${Buffer.from(p).toString('base64')}"}`).join(',')}]`;

  const next = `COALESCE($3::text::timestamptz, now() + $4::double precision * interval '1 millisecond')`;
  const keyedNext = (t: string) => `GREATEST(${next}, (SELECT p.next_attempt_at FROM ${t} AS p
    WHERE $5::text IS NOT NULL AND p.queue = $1::text AND p.ordering_key = $5::text ORDER BY p.id DESC LIMIT 1))`;
  const keyLock = `WHERE ($5::text IS NULL OR pg_advisory_xact_lock(hashtextextended('txoutbox' || chr(31) || $1::text || chr(31) || $5::text, 0)) IS NOT NULL)`;
  /** The statement before issue 18, with one thing changed at a time. */
  const old = (o: { payload?: string; headers?: string; order?: boolean; returning?: boolean; keyed?: boolean }): string => {
    const t = 'txoutbox.outbox';
    const insert = `INSERT INTO ${t} (queue, payload, headers, next_attempt_at, ordering_key)
  SELECT $1::text, ${o.payload ?? `decode(m.message ->> 'p', 'base64')`}, ${o.headers ?? `(m.message -> 'h')::jsonb`}, ${o.keyed === false ? next : keyedNext(t)}, $5::text
  FROM json_array_elements($2::text::json) WITH ORDINALITY AS m(message, ord)
  ${o.keyed === false ? '' : keyLock}
  ${o.order === false ? '' : 'ORDER BY m.ord'}`;
    if (o.returning === false) return insert;
    return `WITH inserted AS (${insert}
  RETURNING id, next_attempt_at)
SELECT id::text AS id, next_attempt_at <= now() AS due FROM inserted ${o.order === false ? '' : 'ORDER BY inserted.id'}`;
  };
  const b64List = payloads.map((p) => Buffer.from(p).toString('base64')).join(',');
  /** Candidate shapes: `from` yields rows in publish order (m), payload and headers expressions over them. */
  const arrays = (from: string, payload: string, headers: string): string => {
    const t = 'txoutbox.outbox';
    return `WITH inserted AS (INSERT INTO ${t} (queue, payload, headers, next_attempt_at, ordering_key)
  SELECT $1::text, ${payload}, ${headers}, ${keyedNext(t)}, $5::text
  FROM ${from}
  ${keyLock}
  ORDER BY m.ord
  RETURNING id, next_attempt_at)
SELECT id::text AS id, next_attempt_at <= now() AS due FROM inserted ORDER BY inserted.id`;
  };
  const allBytes = Buffer.concat(payloads.map((p) => Buffer.from(p)));
  const starts = payloads.map((_, i) => String(i * Buffer.byteLength(payloads[0] ?? '') + 1));
  const lens = payloads.map((p) => String(Buffer.byteLength(p)));
  const headerArray = `[${headerTexts.join(',')}]`;
  const oldValues = (batch: unknown, ...extra: unknown[]) => [queue, batch, activateAt, activateInMs, key, ...extra];
  /** The shipped batch statement with its one aggregated row replaced by a row per message. */
  const perRowResult = (text: string): string => {
    const at = text.lastIndexOf('SELECT string_agg(');
    if (at < 0) throw new Error('the shipped statement has no string_agg result');
    return `${text.slice(0, at)}SELECT id::text AS id, next_attempt_at <= now() AS due FROM inserted ORDER BY inserted.id`;
  };
  /** The shipped batch statement's INSERT alone. */
  const withoutReturning = (text: string): string => {
    const start = text.indexOf('INSERT INTO');
    const end = text.lastIndexOf('RETURNING id, next_attempt_at)');
    if (start < 0 || end < 0) throw new Error('unexpected shape of the shipped statement');
    return text.slice(start, end);
  };
  const onCopy = (table: string) => shipped.text.replaceAll('"txoutbox"."outbox"', table);
  if (!shipped.text.includes('"txoutbox"."outbox"')) throw new Error('the shipped statement does not name "txoutbox"."outbox"');

  interface Variant {
    readonly label: string;
    readonly text: string;
    readonly values: unknown[];
    readonly table: string;
  }
  const variants: Variant[] = [
    {
      label: "raw SQL's INSERT",
      text: 'INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])',
      values: [payloads],
      table: 'raw_q',
    },
    { label: 'shipped (as publishBatch sends it)', text: shipped.text, values: shipped.values, table: 'txoutbox.outbox' },
    {
      // Round four's change, undone: a result row per message (ids and due), as before it.
      label: '  a result row per message (before r4)',
      text: perRowResult(shipped.text),
      values: shipped.values,
      table: 'txoutbox.outbox',
    },
    {
      label: '  no RETURNING at all (no ids, no due)',
      text: withoutReturning(shipped.text),
      values: shipped.values,
      table: 'txoutbox.outbox',
    },
    { label: 'before issue 18', text: old({}), values: oldValues(oldBatch), table: 'txoutbox.outbox' },
    {
      label: '  payload as JSON text, not base64',
      text: old({ payload: `convert_to((m.message -> 'j')::text, 'UTF8')` }),
      values: oldValues(textBatch),
      table: 'txoutbox.outbox',
    },
    {
      label: '  headers one parameter, not per row',
      text: old({ headers: '$6::text::jsonb' }),
      values: oldValues(noHeadersBatch, headerTexts[0]),
      table: 'txoutbox.outbox',
    },
    { label: '  no ORDER BY, no outer sort', text: old({ order: false }), values: oldValues(oldBatch), table: 'txoutbox.outbox' },
    { label: '  no RETURNING', text: old({ returning: false }), values: oldValues(oldBatch), table: 'txoutbox.outbox' },
    { label: '  no key lock, no keyed time', text: old({ keyed: false }), values: oldValues(oldBatch), table: 'txoutbox.outbox' },
    {
      label: 'alt: base64 list + header lines',
      text: arrays(
        `unnest(string_to_array($2::text, ','), string_to_array($6::text, E'\n')) WITH ORDINALITY AS m(p, h, ord)`,
        `decode(m.p, 'base64')`,
        'm.h::jsonb',
      ),
      values: oldValues(b64List, headerTexts.join('\n')),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: base64 list, headers one param',
      text: arrays(
        `unnest(string_to_array($2::text, ',')) WITH ORDINALITY AS m(p, ord)`,
        `decode(m.p, 'base64')`,
        '$6::text::jsonb',
      ),
      values: oldValues(b64List, headerTexts[0]),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: json_to_recordset',
      text: arrays(
        `ROWS FROM (json_to_recordset($2::text::json) AS (p text, h jsonb)) WITH ORDINALITY AS m(p, h, ord)`,
        `decode(m.p, 'base64')`,
        'm.h',
      ),
      values: oldValues(oldBatch),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: jsonb_array_elements',
      text: arrays(
        `(SELECT e ->> 'p' AS p, e -> 'h' AS h, ord FROM jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS u(e, ord)) AS m`,
        `decode(m.p, 'base64')`,
        'm.h',
      ),
      values: oldValues(oldBatch),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: shipped, headers as a jsonb array',
      text: arrays(
        `ROWS FROM (unnest(string_to_array($6::text, ',')::int[]), unnest(string_to_array($7::text, ',')::int[]), jsonb_array_elements($8::text::jsonb)) WITH ORDINALITY AS m(s, l, h, ord)`,
        'substring($2::bytea FROM m.s FOR m.l)',
        'm.h',
      ),
      values: oldValues(allBytes, starts.join(','), lens.join(','), headerArray),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: shipped by hand',
      text: arrays(
        `ROWS FROM (unnest(string_to_array($6::text, ',')::int[]), unnest(string_to_array($7::text, ',')::int[]), unnest(string_to_array($8::text, E'\n'))) WITH ORDINALITY AS m(s, l, h, ord)`,
        'substring($2::bytea FROM m.s FOR m.l)',
        'm.h::jsonb',
      ),
      values: oldValues(allBytes, starts.join(','), lens.join(','), headerTexts.join('\n')),
      table: 'txoutbox.outbox',
    },
    {
      label: 'alt: shipped, headers one parameter',
      text: arrays(
        `ROWS FROM (unnest(string_to_array($6::text, ',')::int[]), unnest(string_to_array($7::text, ',')::int[])) WITH ORDINALITY AS m(s, l, ord)`,
        'substring($2::bytea FROM m.s FOR m.l)',
        '$8::text::jsonb',
      ),
      values: oldValues(allBytes, starts.join(','), lens.join(','), headerTexts[0]),
      table: 'txoutbox.outbox',
    },
    ...copies.map(({ table, label }) => ({ label, text: onCopy(table), values: shipped.values, table })),
  ];

  if (only !== undefined) {
    const kept = variants.filter((variant) => variant.table === 'raw_q' || only.test(variant.label));
    variants.splice(0, variants.length, ...kept);
  }
  for (let c = 0; c < clients; c += 1) {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    connections.push(client);
  }
  const pids = await Promise.all(
    connections.map(
      async (client) => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? NaN,
    ),
  );
  const backendCpuNs = (): number =>
    pids.reduce((sum, pid) => sum + Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]), 0);

  const exec = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  for (let round = 0; round < rounds; round += 1) {
    const order = [...variants.slice(round % variants.length), ...variants.slice(0, round % variants.length)];
    for (const variant of order) {
      const name = `probe_${variants.indexOf(variant)}`;
      await admin.query('SELECT pg_stat_statements_reset()');
      const before = backendCpuNs();
      await Promise.all(
        connections.map(async (client, c) => {
          for (let i = c; i < perVariant; i += clients) await client.query({ name, text: variant.text, values: variant.values });
        }),
      );
      const used = backendCpuNs() - before;
      const { rows } = await admin.query<{ ms: number; calls: string }>(
        `SELECT sum(total_exec_time) AS ms, sum(calls) AS calls FROM pg_stat_statements
         WHERE query ILIKE '%INSERT INTO%' AND query NOT ILIKE '%pg_stat_statements%'`,
      );
      const calls = Number(rows[0]?.calls ?? 0);
      if (calls !== perVariant) throw new Error(`${variant.label}: ${calls} statements counted, ${perVariant} run`);
      if (round > 0 || rounds === 1) {
        exec.set(variant.label, [...(exec.get(variant.label) ?? []), ((rows[0]?.ms ?? NaN) * 1000) / (perVariant * BATCH)]);
        cpu.set(variant.label, [...(cpu.get(variant.label) ?? []), used / 1000 / (perVariant * BATCH)]);
      }
    }
    await admin.query(`TRUNCATE txoutbox.outbox, raw_q, ${copies.map((c) => c.table).join(', ')}`);
  }

  // Every variant must have stored the same bytes as the shipped statement did (the comparison is fair).
  console.log(
    `W2's statement, batch of ${BATCH} (${Buffer.byteLength(payloads[0] ?? '')} B bodies), ${clients} client(s), ${perVariant} statements per variant and round, medians of rounds 2–${rounds}:`,
  );
  console.log(`  ${'variant'.padEnd(40)} ${'exec µs/msg'.padStart(12)} ${'backend CPU µs/msg'.padStart(19)}`);
  for (const { label } of variants) {
    console.log(
      `  ${label.padEnd(40)} ${median(exec.get(label) ?? [])
        .toFixed(2)
        .padStart(12)} ${median(cpu.get(label) ?? [])
        .toFixed(2)
        .padStart(19)}`,
    );
  }
  console.log(
    `Node CPU µs per message up to the query (${NODE_BATCHES} batches of ${BATCH} per round, medians of all ${rounds} rounds):`,
  );
  for (const [name, times] of nodeTimes) console.log(`  ${name.padEnd(40)} ${median(times).toFixed(2)}`);
  console.log(`shipped statement:\n${shipped.text}`);
} finally {
  for (const client of connections) await client.end();
  await admin.end();
  await server.stop();
}
