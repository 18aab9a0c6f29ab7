/**
 * What opening one node-postgres connection to the embedded server costs the Node process (issue
 * 18, round five): W2's after-commit runs open the WakeNotifier's connection inside the measured
 * window (a new Outbox per repetition, the connection opened on the first wake-up), and the
 * in-transaction ones do not. Node CPU (process.cpuUsage: the JS thread and libuv's pool, where
 * SCRAM's PBKDF2 runs) and the new backend's CPU up to its first answer, median over `n` connects.
 *
 *   node --import tsx bench/src/probes/connect-cost.ts [connects, 21]
 */

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { processCpuNs } from './server-cpu.js';

const n = Number(process.argv[2] ?? 21);
const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const server = await startEmbeddedPostgres();
try {
  const node: number[] = [];
  const backend: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < n; i += 1) {
    const before = process.cpuUsage();
    const started = performance.now();
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    await client.query('SELECT 1');
    wall.push(performance.now() - started);
    const used = process.cpuUsage(before);
    const pid = (client as unknown as { processID: number }).processID;
    backend.push(processCpuNs(pid) / 1e6);
    await client.end();
    if (i > 0) node.push((used.user + used.system) / 1000);
  }
  console.log(
    `one connect + SELECT 1, median of ${n - 1}: Node CPU ${median(node).toFixed(2)} ms (min ${Math.min(...node).toFixed(2)}), its backend ${median(backend).toFixed(2)} ms CPU, wall ${median(wall).toFixed(2)} ms`,
  );
} finally {
  await server.stop();
}
