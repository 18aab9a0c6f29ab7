/**
 * What each part of the row-lock claim costs the server in a drain (issue 18, round nine): a
 * 20,000-row backlog drained by two connections that take turns as a row-lock subscription's two
 * loops do — the acks' prepared DELETE, COMMIT, BEGIN with the batch's settings, the claim with the
 * other connection's open batch as its id range — with no handler time in between, so the server's
 * cost is measured without Node's work competing for the two cores. The claim's text varies:
 *
 * - `shipped`: row-lock-sql.ts claimOne as it is;
 * - `id only`: the same walk and locks, returning `id` and `queue` (what the columns cost);
 * - `no payload or headers text`: constants instead of `encode(payload, 'base64')` and `headers::text`;
 * - `no epochs`: constants instead of the two epoch-millisecond expressions;
 * - `no keyTurn`: without the per-key ordering test;
 * - `no expired branch`: the ready branch alone.
 *
 * Each round runs every variant once in a rotated order, on a fresh backlog (publishBatch, ANALYZE,
 * CHECKPOINT); figures are medians over rounds: the two backends' CPU per message
 * (/proc/<pid>/schedstat) and the claim's execution per message (pg_stat_statements).
 *
 *   node --import tsx bench/src/probes/row-lock-claim-parts.ts [rounds, 5] [rows, 20000]
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { DEFAULT_TABLE, resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildRowLockSql, rowLockBegin } from '../../../src/subscriber/row-lock-sql.js';
import { quietLogger } from '../systems/system.js';
import { refillBacklog } from './refill-backlog.js';
import { processCpuNs } from './server-cpu.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const ROWS = Number(process.argv[3] ?? 20_000);
const LIMIT = 100;

const sql = buildRowLockSql(resolveSchemaNames(DEFAULT_TABLE, undefined));
const begin = rowLockBegin(60_000);
const shipped = sql.claimOne.text;

/** `text` with every `from` replaced, or a throw when there is none (the claim's text changed). */
function edit(text: string, from: string | RegExp, to: string): string {
  const edited = typeof from === 'string' ? text.replaceAll(from, to) : text.replace(from, to);
  if (edited === text) throw new Error(`the claim no longer contains ${String(from)}: update this probe`);
  return edited;
}

const returned = /SELECT id::text AS id, ([\s\S]*?) FROM ready/.exec(shipped)?.[1];
if (returned === undefined) throw new Error('the claim no longer selects `id::text AS id, … FROM ready`: update this probe');
const epoch = (column: string) => new RegExp(`CASE WHEN isfinite\\(${column}\\)[\\s\\S]*? END AS ${column}`, 'g');
const VARIANTS: Record<string, string> = {
  shipped,
  'id only': shipped.replaceAll(returned, 'queue'),
  'no payload or headers text': edit(
    shipped,
    "encode(payload, 'base64') AS payload, headers::text AS headers",
    "'' AS payload, '{}' AS headers",
  ),
  'no epochs': edit(edit(shipped, epoch('created_at'), '0 AS created_at'), epoch('first_attempt_at'), 'NULL AS first_attempt_at'),
  'no keyTurn': edit(shipped, /AND \(o\.ordering_key IS NULL OR NOT EXISTS \([\s\S]*?k\.id < o\.id\)\)/, ''),
  // $2 (the lease TTL) only appears in the expired branch; it stays typed in the ready one.
  'no expired branch': edit(
    edit(
      edit(shipped, /, expired AS \([\s\S]*?FOR UPDATE SKIP LOCKED\n\)/, ''),
      /UNION ALL\nSELECT id::text AS id, [\s\S]*? FROM expired/,
      '',
    ),
    'WHERE o.acquired_token IS NULL',
    'WHERE $2::double precision IS NOT NULL AND o.acquired_token IS NULL',
  ),
};

interface Open {
  ids: string[];
  low: string | null;
  high: string | null;
}

const server = await startEmbeddedPostgres({});
let pool: pg.Pool | undefined;
const held: pg.PoolClient[] = [];
try {
  const url = await server.createDatabase('probe');
  pool = new pg.Pool({ connectionString: url, max: 3 });
  // server.stop() may terminate a backend whose client pool.end() is still closing: heard, not fatal.
  pool.on('error', () => undefined);
  const outbox = new Outbox({ pool, logger: quietLogger });
  await outbox.migrate();
  for (let i = 0; i < 3; i += 1) held.push(await pool.connect());
  const [a, b, admin] = held as [pg.PoolClient, pg.PoolClient, pg.PoolClient];
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const loops = [a, b];
  const pids: number[] = [];
  for (const client of loops)
    pids.push((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0);
  const serverNs = () => pids.reduce((sum, pid) => sum + processCpuNs(pid), 0);

  const load = (): Promise<void> => refillBacklog(admin, outbox, 'txoutbox.outbox', ROWS);

  /** One drain with `text` as the claim: µs per message of server CPU and of claim execution. */
  const drain = async (name: string, text: string): Promise<{ server: number; claim: number }> => {
    await load();
    await admin.query('SELECT pg_stat_statements_reset()');
    const statement = `claim_${Object.keys(VARIANTS).indexOf(name)}`;
    const open: Open[] = [
      { ids: [], low: null, high: null },
      { ids: [], low: null, high: null },
    ];
    const claim = async (i: number): Promise<number> => {
      const other = open[1 - i] as Open;
      const { rows } = await (loops[i] as pg.PoolClient).query<{ id: string }>({
        name: statement,
        text,
        values: ['bench', 60_000, LIMIT, other.low, other.high],
      });
      open[i] = { ids: rows.map((row) => row.id), low: rows[0]?.id ?? null, high: rows.at(-1)?.id ?? null };
      return rows.length;
    };
    const before = serverNs();
    let claimed = 0;
    for (const client of loops) await client.query(begin);
    claimed += (await claim(0)) + (await claim(1));
    let empty = 0;
    for (let i = 0; empty < 2; i = 1 - i) {
      const client = loops[i] as pg.PoolClient;
      const { ids } = open[i] as Open;
      if (ids.length > 0) await client.query({ name: 'ack', text: sql.ack.text, values: [`{${ids.join(',')}}`] });
      await client.query(`COMMIT; ${begin}`);
      const got = await claim(i);
      claimed += got;
      empty = got === 0 ? empty + 1 : 0;
    }
    for (const client of loops) await client.query('COMMIT');
    const used = serverNs() - before;
    if (claimed !== ROWS) throw new Error(`${name}: claimed ${claimed} of ${ROWS} rows`);
    const { rows } = await admin.query<{ ms: number }>(
      `SELECT coalesce(sum(total_exec_time), 0)::float8 AS ms FROM pg_stat_statements WHERE query LIKE 'WITH ready%'`,
    );
    return { server: used / 1000 / ROWS, claim: ((rows[0]?.ms ?? 0) * 1000) / ROWS };
  };

  const names = Object.keys(VARIANTS);
  const results = new Map<string, { server: number[]; claim: number[] }>(names.map((n) => [n, { server: [], claim: [] }]));
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    for (const name of order) {
      const measured = await drain(name, VARIANTS[name] as string);
      results.get(name)?.server.push(measured.server);
      results.get(name)?.claim.push(measured.claim);
      console.error(
        `round ${round + 1}/${ROUNDS} ${name}: server ${measured.server.toFixed(2)} µs/msg, claim ${measured.claim.toFixed(2)}`,
      );
    }
  }
  const median = (values: readonly number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? NaN;
  const base = median(results.get('shipped')?.server ?? []);
  console.log(`\nrow-lock claim parts: ${ROWS} rows, two loops without handler time, medians of ${ROUNDS} rounds`);
  console.log('| claim | server CPU µs/msg | ÷ shipped | claim execution µs/msg |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const name of names) {
    const { server: cpu, claim } = results.get(name) ?? { server: [], claim: [] };
    console.log(`| ${name} | ${median(cpu).toFixed(2)} | ${(median(cpu) / base).toFixed(2)} | ${median(claim).toFixed(2)} |`);
  }
} finally {
  for (const client of held) client.release();
  await pool?.end();
  await server.stop();
}
