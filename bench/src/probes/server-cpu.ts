/**
 * CPU time of PostgreSQL's processes, for the probes that split a workload's cost between Node and
 * the server: the first field of /proc/<pid>/schedstat (ns on the CPU, everything the process ran:
 * parse, bind, execute, protocol). Linux only, as the bench is.
 */
import { readFileSync } from 'node:fs';

import type pg from 'pg';

/** Nanoseconds process `pid` has spent on a CPU. */
export function processCpuNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

/** Nanoseconds summed over every server process pg_stat_activity lists now (backends and the server's own workers). */
export async function serverCpuNs(admin: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity');
  let sum = 0;
  for (const { pid } of rows) {
    try {
      sum += processCpuNs(pid);
    } catch {
      // a process that ended between the two reads
    }
  }
  return sum;
}
