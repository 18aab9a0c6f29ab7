/**
 * The rows of a raw query's result, as data layers on node-postgres or postgres.js resolve it:
 * pg's Result (`{ rows }`), or the rows themselves (postgres.js, a `postProcessResponse` hook that
 * returns `result.rows`). Anything else is an error, never an empty result: a publish that read
 * no row would report a timer conflict (null) for a row it did insert.
 */
export function resultRows(result: unknown, library: string, call: string): readonly Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[];
  const rows = (result as { rows?: unknown } | null | undefined)?.rows;
  if (Array.isArray(rows)) return rows as Record<string, unknown>[];
  throw new TypeError(
    `${call} resolved to neither a node-postgres result nor an array of rows: txoutbox/${library} supports ${library} on node-postgres and postgres.js, with hooks that keep the rows.`,
  );
}
