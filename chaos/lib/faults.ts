/**
 * What the harness did and when (epoch ms, the same clock as the database's timestamps: one
 * machine). A fault that `explains` duplicates is one after which at-least-once delivery may run a
 * handler twice: a process killed, a connection cut, a server stopped or frozen. A SIGTERM, a
 * SIGHUP or a worker's stop() does not: a graceful drain must not redeliver (when one overruns its budget, the forced
 * kill that follows is recorded as a fault of its own).
 */

export interface Fault {
  readonly kind: string;
  readonly detail: string;
  readonly start: number;
  end: number;
  readonly explains: boolean;
}

export class FaultLog {
  readonly faults: Fault[] = [];

  /** An instant (a signal, a kill). */
  add(kind: string, detail: string, explains: boolean): Fault {
    const now = Date.now();
    const fault: Fault = { kind, detail, start: now, end: now, explains };
    this.faults.push(fault);
    return fault;
  }

  /** A fault that lasts: call `end()` when it is lifted. */
  begin(kind: string, detail: string, explains: boolean): { readonly fault: Fault; end(): number } {
    const fault = this.add(kind, detail, explains);
    fault.end = Number.POSITIVE_INFINITY;
    return {
      fault,
      end() {
        fault.end = Date.now();
        return fault.end;
      },
    };
  }

  /** Faults still open at the end of a scenario end there. */
  close(): void {
    const now = Date.now();
    for (const fault of this.faults) if (fault.end === Number.POSITIVE_INFINITY) fault.end = now;
  }

  /** A fault that explains a redelivery and overlaps [from, to]. */
  explaining(from: number, to: number): Fault | undefined {
    return this.faults.find((f) => f.explains && f.start <= to && f.end >= from);
  }
}
