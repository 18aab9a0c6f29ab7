/**
 * What one after-commit wake-up statement costs (issue 18, round five): the WakeNotifier's exact
 * statement (src/producer/wake-notifier.ts: pg_notify per queue, `synchronous_commit` off for its
 * own transaction) against `SELECT 1`, each sent `n` times from one connection, back to back or
 * one per `gap` ms (as the notifier sends under W2: at most one per ms). Per statement: Node CPU
 * (process.cpuUsage), the connection's backend CPU, and the WAL writer's CPU
 * (/proc/<pid>/schedstat), medians over rounds 2 and later, variants rotated. No one LISTENs.
 *
 *   node --import tsx bench/src/probes/notify-cost.ts [rounds, 5] [statements, 1000] [gap ms, 1]
 */

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { processCpuNs } from './server-cpu.js';

const rounds = Number(process.argv[2] ?? 5);
const n = Number(process.argv[3] ?? 1000);
const gap = Number(process.argv[4] ?? 1);
// The notifier's statement, as src/producer/wake-notifier.ts sends it.
const WAKE = `SELECT pg_notify($1::text, q) FROM unnest($2::text[]) AS q WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off'`;
const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

const server = await startEmbeddedPostgres();
const client = new pg.Client({ connectionString: server.connectionString });
try {
  await client.connect();
  const backend = (client as unknown as { processID: number }).processID;
  const { rows } = await client.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'`);
  const walwriter = rows[0]?.pid ?? 0;
  const variants: Record<string, () => Promise<unknown>> = {
    'wake statement': () => client.query({ name: 'wake', text: WAKE, values: ['txoutbox_wake', ['bench']] }),
    'SELECT 1': () => client.query({ name: 'one', text: 'SELECT 1' }),
  };
  const results = new Map<string, { node: number[]; backend: number[]; walwriter: number[] }>();
  for (const spaced of [false, true]) {
    for (let round = 0; round < rounds; round += 1) {
      const names = Object.keys(variants);
      for (const name of [...names.slice(round % names.length), ...names.slice(0, round % names.length)]) {
        const run = variants[name];
        if (run === undefined) continue;
        const nodeBefore = process.cpuUsage();
        const backendBefore = processCpuNs(backend);
        const walBefore = processCpuNs(walwriter);
        for (let i = 0; i < n; i += 1) {
          await run();
          if (spaced) await new Promise((resolve) => setTimeout(resolve, gap));
        }
        const node = process.cpuUsage(nodeBefore);
        if (round === 0) continue;
        const key = `${name}${spaced ? `, one per ${gap} ms` : ', back to back'}`;
        const entry = results.get(key) ?? { node: [], backend: [], walwriter: [] };
        entry.node.push((node.user + node.system) / n);
        entry.backend.push((processCpuNs(backend) - backendBefore) / 1000 / n);
        entry.walwriter.push((processCpuNs(walwriter) - walBefore) / 1000 / n);
        results.set(key, entry);
      }
    }
  }
  console.log(`${n} statements per phase, medians of rounds 2–${rounds}, µs per statement:`);
  for (const [key, entry] of results) {
    console.log(
      `  ${key.padEnd(32)} Node ${median(entry.node).toFixed(1).padStart(6)}  backend ${median(entry.backend).toFixed(1).padStart(6)}  WAL writer ${median(entry.walwriter).toFixed(1).padStart(6)}`,
    );
  }
} finally {
  await client.end();
  await server.stop();
}
