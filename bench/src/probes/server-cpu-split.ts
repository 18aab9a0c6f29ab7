/**
 * PostgreSQL's CPU during a stretch of work, split by the kind of process that spent it (client
 * backends, autovacuum, the WAL writer, the checkpointer, …): where a drain's server CPU per message
 * goes beyond its statements. Linux only (/proc). Every child of the postmaster is sampled every
 * 20 ms, so a short-lived autovacuum worker is counted from its first sample: what it ran before
 * that (at most 20 ms) is missed, which makes autovacuum's share a lower bound. The sampling reads
 * /proc from this process: its own CPU is measured (`samplerUs`) for the caller to take out of the
 * process's (it was ~4 µs per drained message in a 50,000-row drain).
 */
import { readdirSync, readFileSync } from 'node:fs';

import type pg from 'pg';

import { processCpuNs } from './server-cpu.js';

/** The process kind from its title (`postgres: autovacuum worker`, `postgres: user db 127.0.0.1(…) idle`, …). */
function kindOf(pid: number): string | undefined {
  try {
    const title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    const rest = /^postgres: (.*)$/.exec(title)?.[1];
    if (rest === undefined) return undefined;
    const known = [
      'autovacuum worker',
      'autovacuum launcher',
      'walwriter',
      'checkpointer',
      'background writer',
      'logical replication launcher',
      'io worker',
      'walsummarizer',
    ];
    return known.find((kind) => rest.startsWith(kind)) ?? 'backend';
  } catch {
    return undefined;
  }
}

function childrenOf(parent: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command, which may contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

export interface CpuSplit {
  /** Nanoseconds on a CPU per process kind over the stretch. */
  readonly byKind: ReadonlyMap<string, number>;
  readonly totalNs: number;
  /** This process's CPU (user + system, µs) spent sampling: not the workload's. */
  readonly samplerUs: number;
}

/** Starts sampling the server `admin` is connected to; `stop()` returns the split since the start. */
export async function startServerCpuSplit(admin: pg.Pool): Promise<{ stop(): CpuSplit }> {
  const { rows } = await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = rows[0]?.pid as number;
  const stat = readFileSync(`/proc/${backend}/stat`, 'utf8');
  const postmaster = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  const first = new Map<number, { kind: string; ns: number }>();
  const last = new Map<number, number>();
  let samplerUs = 0;
  const sample = (initial: boolean): void => {
    const started = process.cpuUsage();
    try {
      sampleOnce(initial);
    } finally {
      const spent = process.cpuUsage(started);
      samplerUs += spent.user + spent.system;
    }
  };
  const sampleOnce = (initial: boolean): void => {
    for (const pid of childrenOf(postmaster)) {
      let ns: number;
      try {
        ns = processCpuNs(pid);
      } catch {
        continue;
      }
      if (!first.has(pid)) {
        const kind = kindOf(pid);
        if (kind === undefined) continue;
        // A process born after the start counts from 0: its whole life is inside the stretch.
        first.set(pid, { kind, ns: initial ? ns : 0 });
      }
      last.set(pid, ns);
    }
  };
  sample(true);
  const timer = setInterval(() => {
    sample(false);
  }, 20);
  return {
    stop(): CpuSplit {
      clearInterval(timer);
      sample(false);
      const byKind = new Map<string, number>();
      let totalNs = 0;
      for (const [pid, { kind, ns }] of first) {
        const spent = (last.get(pid) ?? ns) - ns;
        byKind.set(kind, (byKind.get(kind) ?? 0) + spent);
        totalNs += spent;
      }
      return { byKind, totalNs, samplerUs };
    },
  };
}
