/**
 * What the pause check costs the claim (issue 15): both claim statements now leave out the queues
 * listed in <table>_paused. The probe times the shipped claim statements against the same text
 * without the check, on one connection, in interleaved rounds, each claim rolled back so every
 * round sees the same 100,000 ready rows. With a few paused queues in the table (not the claimed
 * ones), as in production during an incident.
 *
 *   node --import tsx bench/src/probes/pause-check.ts [rounds, default 15]
 */
import { randomUUID } from 'node:crypto';

import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { startProbeTable } from './probe-table.js';

const rounds = Number(process.argv[2] ?? 15);
const PER_ROUND = 200;
const BATCH = 100;

const probe = await startProbeTable();
const { client, names } = probe;
try {
  for (const queue of ['a', 'b', 'c']) {
    await client.query(`INSERT INTO probe.outbox (queue, payload) SELECT $1, '\\x00'::bytea FROM generate_series(1, 100000)`, [
      queue,
    ]);
  }
  await client.query(`INSERT INTO probe.outbox_paused (queue) SELECT 'other-' || n FROM generate_series(1, 5) n`);
  await client.query('VACUUM ANALYZE probe.outbox');
  await client.query('VACUUM ANALYZE probe.outbox_paused');

  const sql = buildSubscriberSql(names);
  const withoutCheck = (text: string) =>
    text
      .replace(/ AND NOT EXISTS \(SELECT 1 FROM "probe"\."outbox_paused" WHERE queue = \$1::text\)/g, '')
      .replace(/\n {2}WHERE NOT EXISTS \(SELECT 1 FROM "probe"\."outbox_paused" AS p WHERE p\.queue = q\.queue\)/g, '')
      // The queue report's own check (a paused queue reports nothing), added since issue 15.
      .replace(
        /CASE WHEN EXISTS \(SELECT 1 FROM "probe"\."outbox_paused" AS p WHERE p\.queue = q\.queue\) THEN NULL ELSE \(/g,
        'CASE WHEN false THEN NULL ELSE (',
      );
  const variants = [
    { name: 'claim one queue, shipped', text: sql.claimOne.text, queue: 'a' as unknown },
    { name: 'claim one queue, no check', text: withoutCheck(sql.claimOne.text), queue: 'a' as unknown },
    { name: 'claim 3 queues, shipped', text: sql.claimMany.text, queue: ['a', 'b', 'c'] as unknown },
    { name: 'claim 3 queues, no check', text: withoutCheck(sql.claimMany.text), queue: ['a', 'b', 'c'] as unknown },
  ].map((v, index) => ({ ...v, index, times: [] as number[] }));
  for (const v of variants) {
    if (v.name.endsWith('no check') && v.text.includes('outbox_paused')) throw new Error(`${v.name}: the check was not removed`);
  }
  // How the plans read the pause table: for one queue a one-time filter (InitPlan), evaluated once
  // per statement; for several, an anti-join on the queue list before the index walks.
  for (const v of [variants[0], variants[2]]) {
    if (v === undefined) continue;
    await client.query('BEGIN');
    const { rows } = await client.query<{ 'QUERY PLAN': string }>({
      text: `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${v.text}`,
      values: [v.queue, 60_000, BATCH, randomUUID(), []],
    });
    await client.query('ROLLBACK');
    console.log(`${v.name}: plan lines about the pause check`);
    for (const { 'QUERY PLAN': line } of rows) if (/paused|One-Time|Anti/.test(line)) console.log(`  ${line.trim()}`);
  }
  for (let round = 0; round < rounds; round += 1) {
    const order = [...variants.slice(round % variants.length), ...variants.slice(0, round % variants.length)];
    for (const v of order) {
      let total = 0;
      for (let i = 0; i < PER_ROUND; i += 1) {
        await client.query('BEGIN');
        const started = process.hrtime.bigint();
        const { rows } = await client.query<{ id: string | null }>({
          name: `probe_${v.index}`,
          text: v.text,
          values: [v.queue, 60_000, BATCH, randomUUID(), []],
        });
        total += Number(process.hrtime.bigint() - started) / 1e6;
        await client.query('ROLLBACK');
        // claimMany appends one report row per queue listed (id NULL: queue-schedule.ts).
        const claimed = rows.filter((row) => row.id !== null).length;
        if (claimed !== BATCH) throw new Error(`${v.name}: claimed ${claimed}, expected ${BATCH}`);
      }
      v.times.push(total / PER_ROUND);
    }
  }
  console.log(`claims of ${BATCH} rows from 100,000 ready per queue, ${rounds} rounds × ${PER_ROUND}, median (min) per claim:`);
  for (const { name, times } of variants) {
    const sorted = [...times].sort((a, b) => a - b);
    console.log(
      `  ${name.padEnd(28)} ${(sorted[Math.floor(sorted.length / 2)] ?? NaN).toFixed(3)} ms (${(sorted[0] ?? NaN).toFixed(3)})`,
    );
  }
} finally {
  await probe.close();
}
