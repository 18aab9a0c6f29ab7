/**
 * Workload c: W1 (one message per transaction) with 1, 8 and 64 producers, txoutbox next to raw
 * SQL (a bare INSERT, and the INSERT with pg_notify), through the main bench's systems and its
 * publish workload; a pool of as many connections as producers, opened before the clock starts.
 */
import pg from 'pg';

import { PhaseMeter, waitForQuiet } from '../measure.js';
import type { BenchServer } from '../server.js';
import { rawSystem } from '../systems/raw.js';
import type { System } from '../systems/system.js';
import { txoutboxSystem } from '../systems/txoutbox.js';
import { FULL, publishWorkload } from '../workloads.js';
import { round } from './drain.js';

export const PUBLISH_SYSTEMS: readonly System[] = [txoutboxSystem, rawSystem(false), rawSystem(true)];

export interface PublishRun {
  readonly system: string;
  readonly producers: number;
  readonly rep: number;
  readonly messages: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly statementsPerMsg: number | null;
  readonly nodeCpuUsPerMsg: number;
  readonly losses: number;
  readonly duplicates: number;
}

export async function runPublish(
  server: BenchServer,
  database: string,
  system: System,
  producers: number,
  rep: number,
  messages: number,
  quietMs: number,
): Promise<PublishRun> {
  const url = await server.createDatabase(database);
  const instance = system.create(url, {});
  const pool = new pg.Pool({ connectionString: url, max: producers });
  pool.on('error', () => undefined);
  try {
    await instance.setup();
    await server.admin.query('CHECKPOINT');
    if (quietMs > 0) await waitForQuiet(quietMs);
    const meter = new PhaseMeter(server.admin, database, server.statStatements);
    const sizes = { ...FULL, producers };
    const measured = await publishWorkload({ instance, producers: pool, sizes, meter, databaseUrl: url, database }, messages, 1);
    const cost = await meter.stop();
    return {
      system: system.id,
      producers,
      rep,
      messages,
      seconds: round(measured.seconds, 3),
      msgsPerSec: round(messages / measured.seconds, 0),
      statementsPerMsg: cost.statements === null ? null : round(cost.statements / messages, 3),
      nodeCpuUsPerMsg: round((cost.nodeCpu * measured.seconds * 1e6) / messages, 1),
      losses: measured.losses ?? 0,
      duplicates: measured.duplicates ?? 0,
    };
  } finally {
    await instance.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await server.dropDatabase(database).catch(() => undefined);
  }
}
