/**
 * What every measured phase records besides its own numbers: statements (pg_stat_statements call
 * deltas of the run's database), WAL bytes (pg_current_wal_lsn difference), CPU split (machine
 * from /proc/stat, this Node process from process.cpuUsage) and sampled wait events of the run's
 * backends (the poor man's ASH: what Postgres sessions were doing, every 10 ms), and this process's
 * garbage: bytes allocated on the JavaScript heap and the main thread's collection time.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

import type pg from 'pg';

export interface StatementLine {
  readonly query: string;
  readonly calls: number;
  readonly totalMs: number;
}

export interface PhaseCost {
  readonly statements: number | null;
  readonly walBytes: number;
  /** Busy share of all cores over the phase, 0..1 (1 = both cores busy). */
  readonly machineCpu: number | null;
  /** This Node process's CPU, in cores (1 = one core busy). */
  readonly nodeCpu: number;
  /** PostgreSQL processes' CPU, in cores (backends alive at both ends of the phase). */
  readonly postgresCpu: number | null;
  /**
   * CPU used by neither this process nor PostgreSQL, in cores: the kernel (loopback softirq, fsync
   * journal threads), backends that exited during the phase, the peers' child processes, or another
   * tenant of the host. A large value next to a slow run points at the machine, not the system.
   */
  readonly otherCpu: number | null;
  /**
   * Bytes this process allocated on the JavaScript heap over the phase (the used heap's growth
   * between collections, from V8's GC profiler): what a drain's garbage is made of, steadier than
   * the CPU it costs. Null where the profiler is missing.
   */
  readonly heapAllocatedBytes: number | null;
  /**
   * The main thread's time in garbage collection over the phase, ms (the profiler's `cost`: each
   * collection's pause, prologue to epilogue). Not the collector's whole CPU: incremental marking
   * steps and the helper threads' parallel and concurrent work, which process.cpuUsage counts, are
   * outside it.
   */
  readonly gcPauseMs: number | null;
  /** The most expensive statements by execution time. */
  readonly topStatements: readonly StatementLine[];
  /** Share of samples per wait event of active backends (`CPU` = running, no wait). */
  readonly waits: Readonly<Record<string, number>>;
}

interface StatementRow {
  queryid: string;
  query: string;
  calls: string;
  total_exec_time: number;
}

function availableCores(): number {
  try {
    return Math.max(
      1,
      readFileSync('/proc/stat', 'utf8')
        .split('\n')
        .filter((line) => /^cpu\d+ /.test(line)).length,
    );
  } catch {
    return 1;
  }
}

function readMachineTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** utime+stime ticks of every process named `postgres`, by pid. */
function readPostgresTicks(): Map<number, number> {
  const ticks = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return ticks;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('postgres')) continue;
      const fields = stat.slice(close + 2).split(' ');
      ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // exited meanwhile
    }
  }
  return ticks;
}

/** Machine CPU busy share (0..1 of all cores) over `ms`. */
export async function machineBusy(ms: number): Promise<number | null> {
  const before = readMachineTicks();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = readMachineTicks();
  if (before === null || after === null || after.total === before.total) return null;
  return (after.busy - before.busy) / (after.total - before.total);
}

export interface HeapUse {
  readonly allocatedBytes: number;
  readonly gcMs: number;
}

/**
 * This process's JavaScript heap over a phase, from V8's GC profiler (node:v8 GCProfiler, Node
 * 18.15+): allocation is the used heap's growth between collections (a collection frees, it never
 * allocates; a scavenge that promotes moves bytes within the used heap), and the collections'
 * main-thread pauses. Null where the profiler fails.
 */
export class HeapMeter {
  readonly #profiler: GCProfiler;
  readonly #usedAtStart: number;

  private constructor(profiler: GCProfiler) {
    this.#profiler = profiler;
    this.#usedAtStart = getHeapStatistics().used_heap_size;
  }

  static start(): HeapMeter | undefined {
    try {
      const profiler = new GCProfiler();
      profiler.start();
      return new HeapMeter(profiler);
    } catch {
      return undefined;
    }
  }

  stop(): HeapUse | null {
    const usedAtEnd = getHeapStatistics().used_heap_size;
    let result: ReturnType<GCProfiler['stop']>;
    try {
      result = this.#profiler.stop();
    } catch {
      return null;
    }
    let allocatedBytes = 0;
    let gcMicros = 0;
    let used = this.#usedAtStart;
    for (const gc of result.statistics) {
      allocatedBytes += Math.max(0, gc.beforeGC.heapStatistics.usedHeapSize - used);
      used = gc.afterGC.heapStatistics.usedHeapSize;
      gcMicros += gc.cost;
    }
    allocatedBytes += Math.max(0, usedAtEnd - used);
    return { allocatedBytes, gcMs: gcMicros / 1000 };
  }
}

/**
 * Waits (up to `maxMs`) until the machine is quiet before a run: on a shared 2-core box another
 * process's burst halves a run's throughput. Returns the busy share last seen.
 */
export async function waitForQuiet(maxMs: number, threshold = 0.15): Promise<number | null> {
  const deadline = performance.now() + maxMs;
  let busy = await machineBusy(250);
  while (busy !== null && busy > threshold && performance.now() < deadline) busy = await machineBusy(250);
  return busy;
}

export class PhaseMeter {
  readonly #admin: pg.Pool;
  readonly #database: string;
  readonly #statStatements: boolean;
  #dbid = 0;
  #lsn = '0/0';
  #statements = new Map<string, StatementRow>();
  #ticks: { busy: number; total: number } | null = null;
  #pgTicks = new Map<number, number>();
  #end:
    | {
        seconds: number;
        cpu: NodeJS.CpuUsage;
        ticks: { busy: number; total: number } | null;
        pgTicks: Map<number, number>;
        heap: HeapUse | null;
      }
    | undefined;
  #heap: HeapMeter | undefined;
  #cpu: NodeJS.CpuUsage = process.cpuUsage();
  #started = 0;
  #sampler: NodeJS.Timeout | undefined;
  #sampling: Promise<void> = Promise.resolve();
  readonly #waits = new Map<string, number>();

  constructor(admin: pg.Pool, database: string, statStatements: boolean) {
    this.#admin = admin;
    this.#database = database;
    this.#statStatements = statStatements;
  }

  async #snapshot(): Promise<Map<string, StatementRow>> {
    if (!this.#statStatements) return new Map();
    const { rows } = await this.#admin.query<StatementRow>(
      `SELECT queryid::text || ':' || toplevel::text || ':' || userid::text AS queryid, query, calls::text, total_exec_time
       FROM pg_stat_statements WHERE dbid = $1`,
      [this.#dbid],
    );
    return new Map(rows.map((row) => [row.queryid, row]));
  }

  async start(): Promise<void> {
    const { rows } = await this.#admin.query<{ oid: number }>('SELECT oid FROM pg_database WHERE datname = $1', [this.#database]);
    this.#dbid = rows[0]?.oid ?? 0;
    this.#statements = await this.#snapshot();
    this.#lsn = (await this.#admin.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn ?? '0/0';
    this.#ticks = readMachineTicks();
    this.#pgTicks = readPostgresTicks();
    this.#end = undefined;
    this.#heap = HeapMeter.start();
    this.#cpu = process.cpuUsage();
    this.#started = performance.now();
    this.#sampler = setInterval(() => {
      this.#sampling = this.#sample();
    }, 10);
  }

  async #sample(): Promise<void> {
    try {
      const { rows } = await this.#admin.query<{ w: string; n: number }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w, count(*)::int AS n FROM pg_stat_activity
         WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
           AND query NOT ILIKE 'LISTEN%' GROUP BY 1`,
        [this.#database],
      );
      for (const row of rows) this.#waits.set(row.w, (this.#waits.get(row.w) ?? 0) + row.n);
    } catch {
      // a missed sample
    }
  }

  /** Ends the CPU accounting (call when the measured work ends, before connections close). */
  markEnd(): void {
    this.#end ??= {
      seconds: (performance.now() - this.#started) / 1000,
      cpu: process.cpuUsage(this.#cpu),
      ticks: readMachineTicks(),
      pgTicks: readPostgresTicks(),
      heap: this.#heap?.stop() ?? null,
    };
  }

  async stop(): Promise<PhaseCost> {
    this.markEnd();
    const end = this.#end ?? {
      seconds: 0,
      cpu: { user: 0, system: 0 },
      ticks: null,
      pgTicks: new Map<number, number>(),
      heap: null,
    };
    const { seconds, cpu, ticks, heap } = end;
    clearInterval(this.#sampler);
    await this.#sampling;
    const lsn = (
      await this.#admin.query<{ bytes: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text AS bytes', [
        this.#lsn,
      ])
    ).rows[0]?.bytes;
    const after = await this.#snapshot();
    let statements = 0;
    const lines: StatementLine[] = [];
    for (const [key, row] of after) {
      const before = this.#statements.get(key);
      const calls = Number(row.calls) - Number(before?.calls ?? 0);
      if (calls <= 0) continue;
      statements += calls;
      lines.push({
        query: row.query.replace(/\s+/g, ' ').slice(0, 160),
        calls,
        totalMs: row.total_exec_time - (before?.total_exec_time ?? 0),
      });
    }
    lines.sort((a, b) => b.totalMs - a.totalMs);
    const waits: Record<string, number> = {};
    const sampled = [...this.#waits.values()].reduce((sum, n) => sum + n, 0);
    for (const [wait, n] of [...this.#waits].sort((a, b) => b[1] - a[1])) {
      if (sampled > 0) waits[wait] = Number((n / sampled).toFixed(3));
    }
    const cores = availableCores();
    let pgTicks = 0;
    for (const [pid, after] of end.pgTicks) pgTicks += after - (this.#pgTicks.get(pid) ?? 0);
    const totalTicks = ticks === null || this.#ticks === null ? 0 : ticks.total - this.#ticks.total;
    const machineCores =
      totalTicks === 0 || ticks === null || this.#ticks === null ? null : ((ticks.busy - this.#ticks.busy) / totalTicks) * cores;
    const postgresCpu = totalTicks === 0 ? null : (pgTicks / totalTicks) * cores;
    const nodeCpu = (cpu.user + cpu.system) / 1e6 / Math.max(seconds, 1e-9);
    return {
      statements: this.#statStatements ? statements : null,
      walBytes: Number(lsn ?? 0),
      machineCpu:
        this.#ticks === null || ticks === null || ticks.total === this.#ticks.total
          ? null
          : Number(((ticks.busy - this.#ticks.busy) / (ticks.total - this.#ticks.total)).toFixed(3)),
      nodeCpu: Number(nodeCpu.toFixed(3)),
      postgresCpu: postgresCpu === null ? null : Number(postgresCpu.toFixed(3)),
      otherCpu:
        machineCores === null || postgresCpu === null
          ? null
          : Number(Math.max(0, machineCores - nodeCpu - postgresCpu).toFixed(3)),
      heapAllocatedBytes: heap?.allocatedBytes ?? null,
      gcPauseMs: heap === null ? null : Number(heap.gcMs.toFixed(1)),
      topStatements: lines.slice(0, 6),
      waits,
    };
  }
}
