/**
 * Why txoutbox's sessions run with plan_cache_mode = force_custom_plan (src/util/owned-pool.ts),
 * and what it costs. Two measurements on one connection:
 *
 * 1. Sudden growth: the claim and the ack are prepared and run 12 times on a tiny, analyzed
 *    outbox (Postgres then caches a generic plan), then 1,000,000 rows arrive. Times the next
 *    claims and acks with the cached plan ('auto') and with custom plans.
 * 2. Steady state: after ANALYZE on the big table, the same statements with 'auto' (a generic plan
 *    that is now good) and with custom plans, interleaved: the planning cost per execution.
 *
 *   node --import tsx bench/src/probes/plan-cache.ts [rounds, default 10]
 */
import { randomUUID } from 'node:crypto';

import { buildSubscriberSql, pairValues } from '../../../src/subscriber/sql.js';
import { startProbeTable } from './probe-table.js';

const rounds = Number(process.argv[2] ?? 10);
const PER_ROUND = 50;
type Mode = 'auto' | 'force_custom_plan';

const probe = await startProbeTable(1);
const { client } = probe;
try {
  const sql = buildSubscriberSql(probe.names);

  /** One claim of up to 100 rows and the ack of what it claimed; their latencies. */
  const claimAndAck = async (mode: Mode): Promise<{ claim: number; ack: number }> => {
    await client.query(`SET plan_cache_mode = ${mode}`);
    const token = randomUUID();
    let started = performance.now();
    const { rows } = await client.query<{ id: string }>({
      name: sql.claimOne.name,
      text: sql.claimOne.text,
      values: ['q', 60_000, 100, token, []],
    });
    const claim = performance.now() - started;
    started = performance.now();
    await client.query({
      name: sql.ackBatch.name,
      text: sql.ackBatch.text,
      values: pairValues(rows.map((r) => ({ record: { id: r.id }, token }))),
    });
    return { claim, ack: performance.now() - started };
  };
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

  await client.query(`INSERT INTO probe.outbox (queue, payload) SELECT 'q', '\\x00'::bytea FROM generate_series(1, 3)`);
  await client.query('ANALYZE probe.outbox');
  for (let i = 0; i < 12; i += 1) {
    await client.query(`INSERT INTO probe.outbox (queue, payload) VALUES ('q', '\\x00'::bytea)`);
    await claimAndAck('auto');
  }
  await client.query(`INSERT INTO probe.outbox (queue, payload) SELECT 'q', '\\x00'::bytea FROM generate_series(1, 1000000)`);
  console.log('1. after 1,000,000 rows arrived on a table analyzed when tiny (5 claims of 100 + acks each):');
  for (const mode of ['auto', 'force_custom_plan'] as const) {
    const runs = [];
    for (let i = 0; i < 5; i += 1) runs.push(await claimAndAck(mode));
    console.log(
      `  ${mode.padEnd(18)} claim ${median(runs.map((r) => r.claim)).toFixed(1)} ms, ack ${median(runs.map((r) => r.ack)).toFixed(1)} ms`,
    );
  }

  await client.query('ANALYZE probe.outbox');
  const times: Record<Mode, { claim: number[]; ack: number[] }> = {
    auto: { claim: [], ack: [] },
    force_custom_plan: { claim: [], ack: [] },
  };
  for (let round = 0; round < rounds; round += 1) {
    for (const mode of (round % 2 === 0 ? ['auto', 'force_custom_plan'] : ['force_custom_plan', 'auto']) as Mode[]) {
      const runs = [];
      for (let i = 0; i < PER_ROUND; i += 1) runs.push(await claimAndAck(mode));
      times[mode].claim.push(median(runs.map((r) => r.claim)));
      times[mode].ack.push(median(runs.map((r) => r.ack)));
    }
  }
  console.log(`2. steady state, analyzed, ${rounds} interleaved rounds × ${PER_ROUND}: median of round medians`);
  for (const mode of ['auto', 'force_custom_plan'] as const) {
    console.log(
      `  ${mode.padEnd(18)} claim ${median(times[mode].claim).toFixed(2)} ms, ack ${median(times[mode].ack).toFixed(2)} ms`,
    );
  }
} finally {
  await probe.close();
}
