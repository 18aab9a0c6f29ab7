/** What a scenario found besides the accounting: findings, notes, timed stops, recoveries, faults. */
import { FaultLog } from './faults.js';
import type { Recovery, TimedStop } from './scenario.js';

export class ScenarioRecord {
  readonly findings: string[] = [];
  readonly notes: string[] = [];
  readonly stops: TimedStop[] = [];
  readonly recoveries: Recovery[] = [];
  readonly faults = new FaultLog();

  /** A failure the accounting cannot see. */
  finding(text: string): void {
    this.findings.push(text);
  }

  note(text: string): void {
    this.notes.push(text);
  }

  /** How long claiming took to resume after a fault was lifted (null: not within the wait). */
  recovery(what: string, ms: number | null, boundMs: number): void {
    this.recoveries.push({ what, ms, boundMs });
    if (ms === null) this.finding(`${what}: claiming had not resumed ${String(boundMs / 1000)} s after the fault was lifted`);
    else if (ms > boundMs)
      this.finding(`${what}: claiming resumed after ${(ms / 1000).toFixed(1)} s (bound ${String(boundMs / 1000)} s)`);
  }
}
