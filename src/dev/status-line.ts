import type pg from 'pg';
import type { Registry } from 'prom-client';

import { errorMessage } from '../errors.js';

/** Rows still in the outbox and how long the oldest has waited. */
const PENDING = (table: string) =>
  `SELECT count(*)::bigint AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest FROM ${table}`;

export interface StatusSources {
  readonly pool: pg.Pool;
  /** The quoted outbox table. */
  readonly table: string;
  readonly prefix: string;
  readonly published: () => number;
  readonly registry: () => Registry;
}

/** Sums a counter's samples whose labels match `where` (all samples when it is empty). */
async function counterTotal(registry: Registry, name: string, where: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values
    .filter((sample) => Object.entries(where).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/**
 * The live one-line status of `txoutbox dev`: published, handled (from the runner's aggregated
 * metrics, the same numbers /metrics serves), pending and the oldest pending age (from the table),
 * and the handled rate over the last interval.
 */
export class StatusLine {
  readonly #sources: StatusSources;
  #lastHandled = 0;
  #lastAt = performance.now();

  constructor(sources: StatusSources) {
    this.#sources = sources;
  }

  async render(): Promise<string> {
    const { pool, table, prefix, published, registry } = this.#sources;
    const merged = registry();
    const processed = `${prefix}_received_processed_messages_total`;
    const [handled, failed] = await Promise.all([
      counterTotal(merged, processed, { status: 'acked' }),
      counterTotal(merged, processed, { status: 'error' }),
    ]);
    const now = performance.now();
    const rate = ((handled - this.#lastHandled) * 1000) / Math.max(1, now - this.#lastAt);
    this.#lastHandled = handled;
    this.#lastAt = now;
    let backlog: string;
    try {
      const { rows } = await pool.query<{ pending: string; oldest: number }>(PENDING(table));
      backlog = `pending ${rows[0]?.pending ?? '?'}  oldest ${(rows[0]?.oldest ?? 0).toFixed(2)}s`;
    } catch (error) {
      backlog = `pending ? (${errorMessage(error)})`;
    }
    return `published ${published()}  handled ${handled}  failed-attempts ${failed}  ${backlog}  ${rate.toFixed(0)} msgs/s`;
  }
}
