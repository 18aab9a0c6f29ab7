/**
 * What publish's transaction checks cost, the same INSERT inside one transaction, in rotating
 * rounds; medians over rounds 2 and later (round 1 warms up):
 * - `guarded`: the dispatch-time check (src/producer/in-transaction-query.ts), a prepared pg.Query
 *   whose submit first reads the client's transaction status, against `plain` client.query(config);
 * - `savepoint`: the server's check (src/producer/savepoint-guarded-query.ts, Kysely and pipeline
 *   mode), SAVEPOINT and RELEASE pipelined before the unnamed statement, against `plain unnamed`.
 * Node CPU per statement, and wall time per statement (one at a time, so it holds the server's).
 *
 *   npm run bench:publish-guard -- [statements per round, default 20000] [rounds, default 7]
 */
import { performance } from 'node:perf_hooks';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { queryInTransaction, watchCallTransaction } from '../../../src/producer/in-transaction-query.js';
import { SavepointGuardedQuery } from '../../../src/producer/savepoint-guarded-query.js';

const N = Number(process.argv[2] ?? 20000);
const ROUNDS = Number(process.argv[3] ?? 7);
const server = await startEmbeddedPostgres({});
try {
  const url = await server.createDatabase('g');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)');
  const config = (i: number) => ({ name: 'ins', text: 'INSERT INTO t (v) VALUES ($1) RETURNING id', values: [String(i)] });
  const ways: Record<string, (i: number) => PromiseLike<unknown>> = {
    plain: (i) => client.query(config(i)),
    // As publish sends it: the dispatch check and the call's transaction watch.
    guarded: (i) => {
      const call = watchCallTransaction(client);
      return queryInTransaction(client, pg.Query, 'publish', config(i), call).finally(() => call?.release());
    },
    'plain unnamed': (i) => client.query({ text: config(i).text, values: config(i).values }),
    savepoint: (i) => {
      const query = new SavepointGuardedQuery(config(i).text, config(i).values, 'publish');
      client.query(query as unknown as pg.Query);
      return query;
    },
  };
  const names = Object.keys(ways);
  const results: Record<string, number[]> = Object.fromEntries(names.map((way) => [way, []]));
  const walls: Record<string, number[]> = Object.fromEntries(names.map((way) => [way, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = names.map((_, k) => names[(k + r) % names.length] as string);
    for (const way of order) {
      await client.query('BEGIN');
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const run = ways[way] as (i: number) => PromiseLike<unknown>;
      for (let i = 0; i < N; i++) await run(i);
      const used = process.cpuUsage(cpu);
      const wall = performance.now() - t0;
      await client.query('ROLLBACK');
      (results[way] as number[]).push((used.user + used.system) / N);
      (walls[way] as number[]).push((wall * 1000) / N);
      console.log(
        `round ${r} ${way}: ${((used.user + used.system) / N).toFixed(2)} µs CPU/stmt, ${((wall * 1000) / N).toFixed(1)} µs wall/stmt`,
      );
    }
  }
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? Number.NaN;
  const of = (from: Record<string, number[]>, way: string): string => median((from[way] ?? []).slice(1)).toFixed(2);
  for (const way of names)
    console.log(`median ${way}: Node CPU ${of(results, way)} µs/statement, wall ${of(walls, way)} µs/statement`);
  await client.end();
} finally {
  await server.stop();
}
