import { Counter, Gauge, Registry } from 'prom-client';

import type { MetricsLedger } from './metrics/metrics-ledger.js';
import type { Supervisor } from './supervisor.js';

/**
 * The supervisor's own series, and the one registry a scrape of `txoutbox run` sees: these merged
 * with every child's (MetricsLedger). Process counts are read at scrape time, so they are right at
 * each moment rather than as of the last child report.
 */
export class ParentMetrics {
  readonly #own = new Registry();
  readonly #ledger: MetricsLedger;
  readonly #restarts: Counter;

  constructor(prefix: string, supervisor: () => Supervisor | undefined, ledger: MetricsLedger) {
    this.#ledger = ledger;
    new Gauge({
      name: `${prefix}_consumer_processes`,
      help: 'Consumer processes alive (starting, running or draining), by consumer.',
      labelNames: ['consumer'],
      registers: [this.#own],
      collect() {
        this.reset();
        for (const [consumer, counts] of supervisor()?.processCounts() ?? []) this.set({ consumer }, counts.alive);
      },
    });
    this.#restarts = new Counter({
      name: `${prefix}_consumer_restarts_total`,
      help: 'Consumer processes restarted after an unexpected exit, by consumer.',
      labelNames: ['consumer'],
      registers: [this.#own],
      // Every consumer's series from its start, at 0: a series born at its first restart has 1 as
      // its first sample, which increase() cannot see, and the dashboard's panel would be empty.
      collect() {
        for (const consumer of supervisor()?.processCounts().keys() ?? []) this.inc({ consumer }, 0);
      },
    });
  }

  /** The supervisor's own registry, where parent-side collectors (queue state) register. */
  get own(): Registry {
    return this.#own;
  }

  restarted(consumer: string): void {
    this.#restarts.inc({ consumer });
  }

  /**
   * A fresh registry with the supervisor's series and every child's, merged. A child's metric
   * named like one of the supervisor's (only a handler's own IPC message can make one) is left
   * out: Registry.merge throws on a shared name, and every scrape would fail.
   */
  registry(): Registry {
    const children = this.#ledger.merged();
    for (const metric of this.#own.getMetricsAsArray()) children.removeSingleMetric(metric.name);
    return Registry.merge([this.#own, children]);
  }
}
