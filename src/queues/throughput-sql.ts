import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

/** How long <table>_stats keeps a minute: the most `status({ minutes })` shows is this. */
export const STATS_RETENTION_MINUTES = 60;

export interface ThroughputSql {
  /**
   * $1 queues (text[]), $2 ages in ms (float8[]), $3 handled, $4 retried, $5 dead_lettered
   * (bigint[]): adds one process's counts to the minute of each entry's outcomes, the database's
   * minute of now() - age. An age, not the process's minute: the minute is the database's, as
   * status() reads it, whatever the process's clock says. Entries of one queue and minute are
   * summed first (one upsert cannot touch a row twice); rows are upserted in (queue, minute)
   * order, so two processes flushing the same queues lock them in the same order and never
   * deadlock.
   */
  readonly add: Statement;
  /** Drops minutes older than the retention. Touches only old rows: never the ones `add` locks. */
  readonly prune: Statement;
  /**
   * $1 minutes of history, $2 queues (text[], NULL = all). The window's rows and the database's
   * clock: `now` and `current_minute` come back on every row, and alone (queue NULL) when none is.
   */
  readonly window: string;
}

export function buildThroughputSql(names: SchemaNames): ThroughputSql {
  const stats = names.stats.sql;
  return {
    add: statement(
      'stats_add',
      `INSERT INTO ${stats} AS s (queue, minute, handled, retried, dead_lettered)
SELECT u.queue, date_trunc('minute', now() - u.age_ms * interval '1 millisecond') AS minute,
  sum(u.handled), sum(u.retried), sum(u.dead_lettered)
FROM unnest($1::text[], $2::float8[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(queue, age_ms, handled, retried, dead_lettered)
GROUP BY 1, 2
ORDER BY 1, 2
ON CONFLICT (queue, minute) DO UPDATE SET handled = s.handled + excluded.handled,
  retried = s.retried + excluded.retried, dead_lettered = s.dead_lettered + excluded.dead_lettered`,
    ),
    prune: statement(
      'stats_prune',
      `DELETE FROM ${stats} WHERE minute < date_trunc('minute', now()) - ${STATS_RETENTION_MINUTES} * interval '1 minute'`,
    ),
    window: `WITH clock AS (SELECT now() AS now, date_trunc('minute', now()) AS current_minute)
SELECT s.queue, s.minute, s.handled::float8 AS handled, s.retried::float8 AS retried,
  s.dead_lettered::float8 AS dead_lettered, c.now, c.current_minute
FROM clock c LEFT JOIN ${stats} s
  ON s.minute >= c.current_minute - $1::int * interval '1 minute' AND ($2::text[] IS NULL OR s.queue = ANY($2::text[]))
ORDER BY s.queue, s.minute`,
  };
}
