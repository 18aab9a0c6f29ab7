/**
 * What the driver-neutral batch costs (issue 14): publishBatch's messages used to travel as
 * node-postgres arrays (`unnest($2::bytea[], $3::jsonb[])`, which other drivers cannot bind) and
 * now travel as one JSON text (`json_array_elements($2::text::json)`, base64 payloads). Four
 * encodings of the same INSERT, on one connection, in interleaved rounds, client encode included:
 *
 * - `unnest bytea[]/jsonb[] (0.1)`: node-postgres' array literals (bytea as `\\x` hex: 2× the bytes);
 * - `json_array_elements (shipped)`: the statement in src/producer/sql.ts (base64: 4/3 the bytes);
 * - `json_to_recordset`: the same JSON, split into columns by the server;
 * - `unnest text[]/text[] base64`: text arrays, neutral too except where a data layer expands arrays.
 *
 * synchronous_commit is off so the numbers are the statements' CPU, not the WAL flush.
 * BENCHMARKS.md ("Issue 14: driver-neutral statements") quotes its output.
 *
 *   node --import tsx bench/src/probes/batch-encoding.ts [batch size, default 100] [rounds, default 15]
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { body } from '../systems/system.js';

const size = Number(process.argv[2] ?? 100);
const rounds = Number(process.argv[3] ?? 15);
const PER_ROUND = 40;

const server = await startEmbeddedPostgres();
const client = new pg.Client({ connectionString: server.connectionString });
try {
  await client.connect();
  await client.query(`CREATE TABLE probe_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, queue text NOT NULL, payload bytea NOT NULL,
    headers jsonb NOT NULL, next_attempt_at timestamptz NOT NULL)`);
  await client.query('SET synchronous_commit = off');

  const payloads = Array.from({ length: size }, (_, i) => Buffer.from(JSON.stringify(body(i))));
  const headers = payloads.map(() => JSON.stringify({ 'content-type': 'application/json', 'correlation-id': randomUUID() }));
  const next = (at: number) =>
    `COALESCE($${at}::text::timestamptz, now() + $${at + 1}::double precision * interval '1 millisecond')`;
  const insert = (select: string) =>
    `WITH ins AS (INSERT INTO probe_outbox (queue, payload, headers, next_attempt_at) ${select} RETURNING id, next_attempt_at)
     SELECT id::text AS id, next_attempt_at <= now() AS due FROM ins ORDER BY ins.id`;
  const json = () => `[${payloads.map((p, i) => `{"p":"${p.toString('base64')}","h":${headers[i]}}`).join(',')}]`;
  const variants: Record<string, () => { text: string; values: unknown[] }> = {
    'unnest bytea[]/jsonb[] (0.1)': () => ({
      text: insert(
        `SELECT $1::text, b.p, b.h, ${next(4)} FROM unnest($2::bytea[], $3::jsonb[]) WITH ORDINALITY AS b(p, h, ord) ORDER BY b.ord`,
      ),
      values: ['q', payloads, headers, null, 0],
    }),
    'json_array_elements (shipped)': () => ({
      text: insert(
        `SELECT $1::text, decode(m.message ->> 'p', 'base64'), (m.message -> 'h')::jsonb, ${next(3)} FROM json_array_elements($2::text::json) WITH ORDINALITY AS m(message, ord) ORDER BY m.ord`,
      ),
      values: ['q', json(), null, 0],
    }),
    json_to_recordset: () => ({
      text: insert(
        `SELECT $1::text, decode(m.p, 'base64'), m.h, ${next(3)} FROM ROWS FROM (json_to_recordset($2::text::json) AS (p text, h jsonb)) WITH ORDINALITY AS m(p, h, ord) ORDER BY m.ord`,
      ),
      values: ['q', json(), null, 0],
    }),
    'unnest text[]/text[] base64': () => ({
      text: insert(
        `SELECT $1::text, decode(b.p, 'base64'), b.h::jsonb, ${next(4)} FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS b(p, h, ord) ORDER BY b.ord`,
      ),
      values: ['q', payloads.map((p) => p.toString('base64')), headers, null, 0],
    }),
  };
  const entries = Object.entries(variants).map(([name, make], index) => ({ name, make, index, times: [] as number[] }));
  for (let round = 0; round < rounds; round += 1) {
    // Each round starts one variant later, so none always follows the same one.
    const order = [...entries.slice(round % entries.length), ...entries.slice(0, round % entries.length)];
    for (const variant of order) {
      const started = process.hrtime.bigint();
      for (let i = 0; i < PER_ROUND; i += 1) {
        const { text, values } = variant.make();
        await client.query({ name: `probe_${variant.index}`, text, values });
      }
      variant.times.push(Number(process.hrtime.bigint() - started) / 1e6 / PER_ROUND);
    }
    await client.query('TRUNCATE probe_outbox');
  }
  const bodyBytes = payloads[0]?.length ?? 0;
  console.log(
    `batch of ${size} (${bodyBytes} B bodies), ${rounds} rounds × ${PER_ROUND} statements, median (min) per statement:`,
  );
  for (const { name, times } of entries) {
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? NaN;
    console.log(`  ${name.padEnd(30)} ${median.toFixed(2)} ms (${(sorted[0] ?? NaN).toFixed(2)})`);
  }
} finally {
  await client.end();
  await server.stop();
}
