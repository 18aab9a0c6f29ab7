/**
 * The settings under which txoutbox reuses one generic plan of a statement instead of planning it
 * per execution, each scoped to the current transaction (they end with it, so a pool's connection
 * goes back as it came). Why each one:
 * - `plan_cache_mode = force_generic_plan`: the pools txoutbox owns plan every execution
 *   (force_custom_plan, architecture/subscriber.md "Prepared statements and plans"); a statement
 *   whose planning costs as much as its execution is planned once per connection under this.
 * - `enable_seqscan = off`, `enable_bitmapscan = off`: why the owned pools refuse generic plans in
 *   the first place is that a generic plan made while the table is tiny is a sequential scan, kept
 *   when a backlog arrives. With these off, the generic plan is made of index scans whatever the
 *   table's size when it is planned (row-lock-plan-cache.test.ts, subscriber-claim-many-plan.test.ts),
 *   which is the plan a claim wants on a queue table (it walks an index for its LIMIT).
 * A plan cached under them stays generic: Postgres does not replan a cached statement when a
 * planner setting changes, and a replan (after an ANALYZE or DDL invalidated it) happens at the next
 * execution, which runs under them again. Only statements always run under them may be planned so.
 */
const SETTINGS = [
  ['plan_cache_mode', 'force_generic_plan'],
  ['enable_seqscan', 'off'],
  ['enable_bitmapscan', 'off'],
] as const;

/** The settings as SET LOCAL commands, for a simple query inside a transaction block (a row-lock batch's BEGIN). */
export const GENERIC_PLAN_SET_LOCAL = SETTINGS.map(([name, value]) => `SET LOCAL ${name} = ${value}`).join('; ');

/**
 * The settings as one SELECT of set_config(…, true), for a statement sent outside a transaction
 * block: run just before it, in the same extended-protocol message sequence (before one Sync: one
 * implicit transaction, one round trip), the plan of the statement after it is chosen under them
 * (DecodedQuery's prelude). Not `SET LOCAL`: outside a block it logs a WARNING on every use.
 */
export const GENERIC_PLAN_PRELUDE = setConfigs(SETTINGS);

/**
 * `settings` as one SELECT of set_config(…, true): inside a transaction block, what SET LOCAL does,
 * as one statement that can be prepared (a row-lock batch's pipelined BEGIN: row-lock-sql.ts).
 * Names and values are constants of this package, never input.
 */
export function setConfigs(settings: readonly (readonly [string, string])[]): string {
  return `SELECT ${settings.map(([name, value]) => `set_config('${name}', '${value}', true)`).join(', ')}`;
}

/** The generic-plan settings and `more`, as setConfigs. */
export function genericPlanSettings(...more: (readonly [string, string])[]): string {
  return setConfigs([...SETTINGS, ...more]);
}
