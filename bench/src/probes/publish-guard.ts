/**
 * What publish's dispatch-time transaction check costs (src/producer/in-transaction-query.ts): Node
 * CPU per statement of queryInTransaction — a pg.Query whose submit first reads the client's
 * transaction status — against a plain client.query(config), the same prepared INSERT inside one
 * transaction, in alternating rounds. Medians over rounds 2 and later (round 1 warms up).
 *
 *   npm run bench:publish-guard -- [statements per round, default 20000] [rounds, default 7]
 */
import { performance } from 'node:perf_hooks';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { queryInTransaction } from '../../../src/producer/in-transaction-query.js';

const N = Number(process.argv[2] ?? 20000);
const ROUNDS = Number(process.argv[3] ?? 7);
const server = await startEmbeddedPostgres({});
try {
  const url = await server.createDatabase('g');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)');
  const config = (i: number) => ({ name: 'ins', text: 'INSERT INTO t (v) VALUES ($1) RETURNING id', values: [String(i)] });
  const ways: Record<string, (i: number) => Promise<unknown>> = {
    plain: (i) => client.query(config(i)),
    guarded: (i) => queryInTransaction(client, 'publish', config(i)),
  };
  const results: Record<string, number[]> = { plain: [], guarded: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['plain', 'guarded'] : ['guarded', 'plain'];
    for (const way of order) {
      await client.query('BEGIN');
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const run = ways[way] as (i: number) => Promise<unknown>;
      for (let i = 0; i < N; i++) await run(i);
      const used = process.cpuUsage(cpu);
      const wall = performance.now() - t0;
      await client.query('ROLLBACK');
      (results[way] as number[]).push((used.user + used.system) / N);
      console.log(
        `round ${r} ${way}: ${((used.user + used.system) / N).toFixed(2)} µs CPU/stmt, ${((wall * 1000) / N).toFixed(1)} µs wall/stmt`,
      );
    }
  }
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? Number.NaN;
  const of = (way: string): string => median((results[way] ?? []).slice(1)).toFixed(2);
  console.log(`median Node CPU µs/statement: plain ${of('plain')}, guarded ${of('guarded')}`);
  await client.end();
} finally {
  await server.stop();
}
