/**
 * Every process the harness starts runs in a process group of its own (detached), and is recorded
 * here, so that the end of a scenario — passed, failed or timed out — and the harness's own exit
 * (even an uncaught error or Ctrl-C) can SIGKILL the whole group: a runner's children and tsx's
 * helpers included. Only these recorded groups are ever signalled.
 */
import { readdirSync, readFileSync } from 'node:fs';

const groups = new Set<number>();
let exitHookInstalled = false;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group is gone
  }
}

/** Records a detached child (its pid is its group id); SIGKILLed at the harness's exit at the latest. */
export function trackGroup(pgid: number): void {
  groups.add(pgid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const group of groups) killGroup(group, 'SIGKILL');
  });
}

/** SIGKILL to a recorded group and forget it. */
export function killTrackedGroup(pgid: number): void {
  if (!groups.has(pgid)) return;
  killGroup(pgid, 'SIGKILL');
  groups.delete(pgid);
}

export function killAllTracked(): void {
  for (const group of [...groups]) killTrackedGroup(group);
}

export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly state: string;
  readonly cmdline: string;
}

/** Live processes from /proc (Linux). Zombies are left out: they hold nothing but a pid. */
export function listProcesses(): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const state = fields[0] ?? '?';
      if (state === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      found.push({ pid: Number(entry), state, ppid: Number(fields[1]), pgid: Number(fields[2]), cmdline });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
