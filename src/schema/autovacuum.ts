import type { DriftFinding } from '../errors.js';
import type { TableName } from './identifiers.js';

/**
 * Autovacuum storage parameters for the outbox table, a high-churn queue: every message is an
 * INSERT, a claim UPDATE and a DELETE, so it leaves about two dead tuples (the UPDATE is never HOT:
 * it changes `acquired_token`/`acquired_at`, which the partial indexes key on or filter by). With
 * the global defaults (`scale_factor = 0.2`) vacuum waits for 20 % of the table to be dead: after a
 * 1M-row backlog that is 200k dead tuples the ready-index scan has to step over on every claim,
 * and the bloat feeds itself (the PgQue xmin-horizon numbers in reference/ecosystem.md: 14x dead
 * tuples, -35 % throughput). Scale factors of 0 make the trigger a fixed count instead.
 *
 * - vacuum threshold 1000 ≈ 500 messages of dead tuples. Vacuuming a small table is cheap, and a
 *   busy one is visited at most once per `autovacuum_naptime` (60 s by default) anyway. Same value
 *   as faststream-outbox's `outbox_autovacuum_ddl` (reference/faststream-outbox.md §5.9).
 * - insert threshold 1000 (PostgreSQL 13+, the version floor): a backlog that only grows while the
 *   consumers are down still gets vacuumed (visibility map, freezing), so the drain afterwards does
 *   not start with one huge vacuum.
 * - analyze threshold 5000 ≈ 1,700 messages (three row changes each): the table swings from empty
 *   to a large backlog and back, and the planner needs the order of magnitude, not every row; with
 *   the default 10 % a drained table keeps planning as if it held the old backlog. Each ANALYZE
 *   samples up to 30,000 rows, so it is kept rarer than vacuum.
 *
 * Cost knobs (`autovacuum_vacuum_cost_delay`/`_limit`) are left to the DBA: they trade this table's
 * vacuum speed against the I/O of everything else on the server.
 */
export const AUTOVACUUM_SETTINGS = [
  ['autovacuum_vacuum_scale_factor', 0],
  ['autovacuum_vacuum_threshold', 1000],
  ['autovacuum_vacuum_insert_scale_factor', 0],
  ['autovacuum_vacuum_insert_threshold', 1000],
  ['autovacuum_analyze_scale_factor', 0],
  ['autovacuum_analyze_threshold', 5000],
] as const;

/** The `ALTER TABLE … SET (…)` a DBA applies (in a migration) to tune the outbox table. */
export function autovacuumDdl(table: TableName): string {
  const settings = AUTOVACUUM_SETTINGS.map(([name, value]) => `${name} = ${value}`).join(', ');
  return `ALTER TABLE ${table.sql} SET (${settings});`;
}

/**
 * Every way PostgreSQL reads a boolean as false (parse_bool: any prefix of `false`, `no` and `off`
 * that is not ambiguous, and `0`). A reloption is stored as written: `autovacuum_enabled = f`
 * reads back `f`, and was taken for on.
 */
const POSTGRES_FALSE = new Set(['f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0']);

/**
 * What is missing from the table's `reloptions` (`pg_class.reloptions`, `name=value` strings):
 * scale factors must be 0 (that is what prevents the bloat); thresholds must be set, to any value,
 * so a DBA's own tuning is respected; autovacuum must not be disabled on the table. Returns at most
 * one finding, listing every problem, with the DDL as the fix.
 */
export function autovacuumFindings(table: TableName, reloptions: readonly string[] | null): DriftFinding[] {
  const options = new Map<string, string>();
  for (const option of reloptions ?? []) {
    const at = option.indexOf('=');
    if (at > 0) options.set(option.slice(0, at), option.slice(at + 1));
  }
  const problems: string[] = [];
  const enabled = options.get('autovacuum_enabled');
  if (enabled !== undefined && POSTGRES_FALSE.has(enabled.trim().toLowerCase())) {
    problems.push('autovacuum_enabled is off, so dead tuples are only removed by manual VACUUM');
  }
  for (const [name, value] of AUTOVACUUM_SETTINGS) {
    const actual = options.get(name);
    if (actual === undefined) {
      problems.push(`${name} is unset (the server default applies; want ${value})`);
    } else if (name.endsWith('_scale_factor') && Number(actual) !== 0) {
      problems.push(`${name} is ${actual} (want 0: a fraction of the table lets a queue table bloat before vacuum runs)`);
    }
  }
  if (problems.length === 0) return [];
  return [
    {
      table: table.display,
      kind: 'autovacuum_not_tuned',
      message: `autovacuum is not tuned for a queue table: ${problems.join('; ')}. Each message leaves about two dead tuples.`,
      fix: autovacuumDdl(table),
    },
  ];
}
