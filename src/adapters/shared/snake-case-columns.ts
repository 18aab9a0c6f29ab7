/**
 * Undoes a driver's column-name transform on txoutbox's result rows.
 *
 * postgres.js renames result columns when its `sql` was created with `transform: postgres.camel`
 * (or `pascal`, `kebab`), for every query on it, `unsafe` included, and its transaction `sql`
 * does not expose the option to switch it off. txoutbox reads its rows by name
 * (`next_attempt_at`, …), so a renamed row would read as undefined (fetchUnprocessed's dates
 * became Invalid Date, measured on postgres.js 3.4.9). Every column txoutbox's statements return
 * is lower snake_case (src/producer/sql.ts), which makes camelCase, PascalCase and kebab-case
 * names reversible: `nextAttemptAt`, `NextAttemptAt` and `next-attempt-at` all map back to
 * `next_attempt_at`. Rows whose names are already lower snake_case, the usual case, are returned
 * as they are, after one look at the first row's names.
 */
const SNAKE = /^[a-z0-9_]*$/;

function toSnake(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/-/g, '_')
    .toLowerCase();
}

export function snakeCaseColumns(rows: readonly Record<string, unknown>[]): readonly Record<string, unknown>[] {
  const first = rows[0];
  if (first === undefined || Object.keys(first).every((name) => SNAKE.test(name))) return rows;
  return rows.map((row) => {
    const renamed: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(row)) renamed[toSnake(name)] = value;
    return renamed;
  });
}
