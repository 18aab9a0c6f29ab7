/** What `npm run bench:scale` writes (bench/results/scale-*.json), and the medians its report and charts show. */
import { spread } from '../stats.js';
import type { DrainRun } from './drain.js';
import type { PublishRun } from './publish.js';
import type { ScaleSizes } from './sizes.js';
import type { SoakResult } from './soak.js';

export interface ScaleResults {
  readonly mode: 'full' | 'quick';
  readonly startedAt: string;
  finishedAt: string;
  readonly commit: string;
  readonly command: string;
  readonly machine: Readonly<Record<string, string | number>>;
  readonly postgres: {
    readonly version: string;
    readonly statStatements: boolean;
    readonly settings: Readonly<Record<string, string>>;
  };
  readonly sizes: ScaleSizes;
  readonly drains: DrainRun[];
  readonly publishes: PublishRun[];
  readonly soaks: SoakResult[];
  readonly failures: { workload: string; label: string; error: string }[];
}

export function median(values: readonly number[]): number {
  return spread(values.filter((v) => Number.isFinite(v)))?.median ?? Number.NaN;
}

export interface DrainGroup {
  readonly workload: 'a' | 'b';
  readonly label: string;
  readonly system: string;
  readonly queues: number;
  readonly backlogRows: number;
  readonly runs: readonly DrainRun[];
  readonly msgsPerSec: number;
  readonly claimMeanMs: number;
  readonly claimUsPerMessage: number;
  readonly statementsPerMsg: number;
  readonly nodeCpuUsPerMsg: number;
  readonly postgresCpuUsPerMsg: number;
}

/** Drain runs grouped by (workload, label, system), with medians over the repetitions, in run order. */
export function drainGroups(runs: readonly DrainRun[]): DrainGroup[] {
  const groups = new Map<string, DrainRun[]>();
  for (const run of runs) {
    const key = `${run.workload}|${run.label}|${run.system}`;
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as DrainRun;
    return {
      workload: first.workload,
      label: first.label,
      system: first.system,
      queues: first.queues,
      backlogRows: first.backlogRows,
      runs: group,
      msgsPerSec: median(group.map((r) => r.msgsPerSec)),
      claimMeanMs: median(group.map((r) => r.claimMeanMs)),
      claimUsPerMessage: median(group.map((r) => r.claimUsPerMessage)),
      statementsPerMsg: median(group.map((r) => r.statementsPerMsg ?? Number.NaN)),
      nodeCpuUsPerMsg: median(group.map((r) => r.nodeCpuUsPerMsg)),
      postgresCpuUsPerMsg: median(group.map((r) => r.postgresCpuUsPerMsg ?? Number.NaN)),
    };
  });
}

export interface PublishGroup {
  readonly system: string;
  readonly producers: number;
  readonly runs: readonly PublishRun[];
  readonly msgsPerSec: number;
  readonly statementsPerMsg: number;
  readonly nodeCpuUsPerMsg: number;
}

export function publishGroups(runs: readonly PublishRun[]): PublishGroup[] {
  const groups = new Map<string, PublishRun[]>();
  for (const run of runs)
    groups.set(`${run.system}|${run.producers}`, [...(groups.get(`${run.system}|${run.producers}`) ?? []), run]);
  return [...groups.values()].map((group) => {
    const first = group[0] as PublishRun;
    return {
      system: first.system,
      producers: first.producers,
      runs: group,
      msgsPerSec: median(group.map((r) => r.msgsPerSec)),
      statementsPerMsg: median(group.map((r) => r.statementsPerMsg ?? Number.NaN)),
      nodeCpuUsPerMsg: median(group.map((r) => r.nodeCpuUsPerMsg)),
    };
  });
}
