/** What a scenario found besides the accounting: findings, notes, timed stops, recoveries, faults. */
import { FaultLog } from './faults.js';
import type { Recovery, TimedStop } from './scenario.js';

/** What a scenario's steps and the stops it times write to: the record, or its view for the run. */
export interface Recorder {
  readonly faults: FaultLog;
  /** A failure the accounting cannot see. */
  finding(text: string): void;
  note(text: string): void;
  stop(entry: TimedStop): void;
  /** How long claiming took to resume after a fault was lifted (null: not within the wait). */
  recovery(what: string, ms: number | null, boundMs: number): void;
}

export class ScenarioRecord implements Recorder {
  readonly findings: string[] = [];
  readonly notes: string[] = [];
  readonly stops: TimedStop[] = [];
  readonly recoveries: Recovery[] = [];
  readonly faults = new FaultLog();

  finding(text: string): void {
    this.findings.push(text);
  }

  note(text: string): void {
    this.notes.push(text);
  }

  stop(entry: TimedStop): void {
    this.stops.push(entry);
  }

  recovery(what: string, ms: number | null, boundMs: number): void {
    this.recoveries.push({ what, ms, boundMs });
    if (ms === null) this.finding(`${what}: claiming had not resumed ${String(boundMs / 1000)} s after the fault was lifted`);
    else if (ms > boundMs)
      this.finding(`${what}: claiming resumed after ${(ms / 1000).toFixed(1)} s (bound ${String(boundMs / 1000)} s)`);
  }

  /**
   * The record as the scenario's run writes to it, with `faults` (the scenario's guarded log):
   * once `over()`, what it writes is dropped. A run abandoned at its bound is reported hung; what
   * its steps say after that, while the harness kills their processes, is no result.
   */
  view(faults: FaultLog, over: () => boolean): Recorder {
    return {
      faults,
      finding: (text) => {
        if (!over()) this.finding(text);
      },
      note: (text) => {
        if (!over()) this.note(text);
      },
      stop: (entry) => {
        if (!over()) this.stop(entry);
      },
      recovery: (what, ms, boundMs) => {
        if (!over()) this.recovery(what, ms, boundMs);
      },
    };
  }
}
