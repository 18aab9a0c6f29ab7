/**
 * What fusing the acks into the next claim would buy the token lease (issue 18, "fusing the
 * previous batch's ack DELETE into the next claim statement"). A 20,000-row backlog drained batch by
 * batch on one connection, no handler time, the subscription's own statements:
 *
 * - `separate` (as shipped, one loop): the claim, then the batch's ack DELETE (sql.ts ackMissed),
 *   each its own autocommit statement: two round trips and two commits per batch;
 * - `fused`: the previous batch's DELETE (the same fence, its count read from the command tag) and
 *   the claim in one message with one Sync: one implicit transaction, one round trip, one commit.
 *
 * Each round runs both ways once in a rotated order on a fresh backlog (publishBatch, ANALYZE,
 * CHECKPOINT); figures are medians over rounds: msgs/s, the backend's CPU per message
 * (/proc/<pid>/schedstat), and Node's CPU per message.
 *
 *   node --import tsx bench/src/probes/token-ack-fusion.ts [rounds, 5] [rows, 20000]
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

import type pgTypes from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { DEFAULT_TABLE, resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { decodeClaimedRow } from '../../../src/subscriber/claimed-row.js';
import { buildSubscriberSql, pairValues } from '../../../src/subscriber/sql.js';
import type { Prelude } from '../../../src/util/decoded-query.js';
import { GENERIC_PLAN_PRELUDE } from '../../../src/util/generic-plan.js';
import { StatementRunner } from '../../../src/util/statement-runner.js';
import { quietLogger } from '../systems/system.js';
import { refillBacklog } from './refill-backlog.js';
import { processCpuNs } from './server-cpu.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const ROWS = Number(process.argv[3] ?? 20_000);
const LIMIT = 100;
const LEASE_MS = 60_000;

// The library's own node-postgres copy (the bench has another): DecodedQuery runs only on its clients.
const pg = createRequire(new URL('../../../src/index.ts', import.meta.url))('pg') as typeof pgTypes;
const names = resolveSchemaNames(DEFAULT_TABLE, undefined);
const sql = buildSubscriberSql(names);
const t = names.outbox.sql;
/** The acks' DELETE as a prelude: ackMissed's fence, its count from the command tag (a prelude's rows are not read). */
const fusedAck = {
  name: 'ack_fused',
  text: `DELETE FROM ${t} AS t USING unnest($1::bigint[], $2::uuid[]) AS l(id, token)
WHERE t.id = ANY($1::bigint[]) AND t.id = l.id AND t.acquired_token = l.token`,
};

type Lease = { record: { id: string }; token: string };

const server = await startEmbeddedPostgres({});
let pool: pgTypes.Pool | undefined;
const held: pgTypes.PoolClient[] = [];
try {
  const url = await server.createDatabase('probe');
  pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  const outbox = new Outbox({ pool, logger: quietLogger });
  await outbox.migrate();
  for (let i = 0; i < 2; i += 1) held.push(await pool.connect());
  const [client, admin] = held as [pgTypes.PoolClient, pgTypes.PoolClient];
  const runner = new StatementRunner(pool, true, 30_000);
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0;

  const load = (): Promise<void> => refillBacklog(admin, outbox, t, ROWS);

  const claimValues = (token: string): unknown[] => ['bench', LEASE_MS, LIMIT, token, '{}'];
  const leasesOf = (rows: readonly { id: string }[], token: string): Lease[] =>
    rows.map((row) => ({ record: { id: row.id }, token }));

  const separate = async (): Promise<number> => {
    let handled = 0;
    for (;;) {
      const token = randomUUID();
      const rows = await runner.decodedOn(client, sql.claimOne, claimValues(token), decodeClaimedRow);
      if (rows.length === 0) return handled;
      for (const row of rows) row.payload.toString();
      const missed = await client.query({
        name: sql.ackMissed.name,
        text: sql.ackMissed.text,
        values: pairValues(leasesOf(rows, token)),
      });
      handled += rows.length - missed.rows.length;
    }
  };

  const fused = async (): Promise<number> => {
    let handled = 0;
    let acks: Lease[] = [];
    for (;;) {
      const token = randomUUID();
      const preludes: Prelude[] = [{ text: GENERIC_PLAN_PRELUDE }];
      if (acks.length > 0) preludes.push({ ...fusedAck, values: pairValues(acks) });
      const answer = await runner.pipelineOn(client, preludes, sql.claimOne, claimValues(token), decodeClaimedRow);
      if (answer === undefined) throw new Error('fused: this client cannot pipeline');
      if (acks.length > 0) handled += Number(answer.tags[1]?.split(' ')[1] ?? 0);
      for (const row of answer.rows) row.payload.toString();
      acks = leasesOf(answer.rows, token);
      if (answer.rows.length === 0) return handled;
    }
  };

  const ways: Record<string, () => Promise<number>> = { separate, fused };
  const results = new Map<string, { rate: number[]; server: number[]; node: number[] }>(
    Object.keys(ways).map((n) => [n, { rate: [], server: [], node: [] }]),
  );
  const order = Object.keys(ways);
  // One untimed drain each first: a process's first drains compile the path and warm the server's caches.
  for (const name of order) {
    await load();
    await (ways[name] as () => Promise<number>)();
  }
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const name of round % 2 === 0 ? order : [...order].reverse()) {
      await load();
      const serverBefore = processCpuNs(pid);
      const nodeBefore = process.cpuUsage();
      const started = performance.now();
      const handled = await (ways[name] as () => Promise<number>)();
      const ms = performance.now() - started;
      const node = process.cpuUsage(nodeBefore);
      const server = processCpuNs(pid) - serverBefore;
      if (handled !== ROWS) throw new Error(`${name}: acked ${handled} of ${ROWS} rows`);
      const r = results.get(name);
      r?.rate.push((ROWS / ms) * 1000);
      r?.server.push(server / 1000 / ROWS);
      r?.node.push((node.user + node.system) / ROWS);
      console.error(
        `round ${round + 1}/${ROUNDS} ${name}: ${((ROWS / ms) * 1000).toFixed(0)} msgs/s, server ${(server / 1000 / ROWS).toFixed(2)} µs/msg`,
      );
    }
  }
  const median = (values: readonly number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? NaN;
  console.log(
    `\ntoken lease, acks fused into the next claim: ${ROWS} rows, one connection, no handler time, medians of ${ROUNDS} rounds`,
  );
  console.log('| way | msgs/s | server CPU µs/msg | Node CPU µs/msg |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, r] of results)
    console.log(
      `| ${name} | ${(median(r.rate) / 1000).toFixed(1)}k | ${median(r.server).toFixed(2)} | ${median(r.node).toFixed(2)} |`,
    );
} finally {
  for (const client of held) client.release();
  await pool?.end();
  await server.stop();
}
