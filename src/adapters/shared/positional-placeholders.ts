/**
 * txoutbox's statements number their parameters (`$1`…`$n`, as PostgreSQL does); Knex's `raw`
 * and MikroORM's `execute` bind positionally with `?` instead, one value per `?` in order of
 * appearance. This rewrites the one into the other:
 *
 * - each `$n` becomes `?` and `values[n - 1]` is appended to the new values, so a parameter used
 *   twice is bound twice and out-of-order uses (`$2 … $1`) come out in text order;
 * - a `?` already in the text (a jsonb operator such as `?|`, a `?` inside a literal or a comment:
 *   both libraries scan the text without knowing SQL quoting) is escaped as `\?`, which both
 *   read as a literal `?`;
 * - `$n` inside a string literal, a quoted identifier, a dollar-quoted string or a comment is text,
 *   not a parameter, and is left as it is, as PostgreSQL would.
 *
 * Known limit: Knex drops backslashes written right before a `?` (its `positionBindings`), so text
 * with a backslash followed by `?` cannot be carried through Knex at all; no txoutbox statement
 * has one (they have no `?` either, today).
 */
export function toQuestionMarks(text: string, values: readonly unknown[]): { text: string; values: unknown[] } {
  const bound: unknown[] = [];
  const rewritten = text.replace(SQL_TOKENS, (token: string, _tag: string | undefined, parameter: string | undefined) => {
    if (parameter !== undefined) {
      const index = Number(parameter) - 1;
      if (index < 0 || index >= values.length) {
        throw new RangeError(`$${parameter} has no value: the statement was given ${values.length} parameter(s)`);
      }
      bound.push(values[index]);
      return '?';
    }
    return token.replaceAll('?', '\\?');
  });
  return { text: rewritten, values: bound };
}

/**
 * One alternation, tried left to right at each position: the quoted and commented spans first
 * (kept whole, their `?` escaped), then a `$n` parameter (group 2), then a bare `?`.
 * - `E'…'` escape strings may hide a quote behind a backslash; plain `'…'` and `"…"` double theirs;
 * - `$tag$…$tag$` dollar quoting (a tag never starts with a digit, so it is never a parameter);
 * - `-- …` line comments and non-nested block comments.
 */
const SQL_TOKENS =
  /(?<![\w$])[Ee]'(?:[^'\\]|\\[\s\S]|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$([A-Za-z_][A-Za-z_0-9]*)?\$[\s\S]*?\$\1\$|--[^\n]*|\/\*[\s\S]*?\*\/|\$(\d+)|\?/g;
