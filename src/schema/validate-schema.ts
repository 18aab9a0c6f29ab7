import type pg from 'pg';

import { type DriftFinding, InvalidOptionError, SchemaDriftError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { autovacuumFindings } from './autovacuum.js';
import {
  type ExpectedCheck,
  type ExpectedColumn,
  type ExpectedIndex,
  expectedSchema,
  type ExpectedTable,
} from './expected-schema.js';
import { quoteIdent } from './identifiers.js';
import { assertNotInLegacyLocation } from './legacy-location.js';
import type { SchemaNames } from './schema-names.js';
import { findStrandedRows } from './stranded-rows.js';

export interface ValidateSchemaOptions {
  /**
   * Also report an outbox table whose autovacuum settings are not those of `autovacuumDdl()`
   * (scale factors 0, thresholds set). @default false
   */
  readonly checkAutovacuum?: boolean;
}

/**
 * Catalog reads. Read-only, bound parameters only, no privilege beyond CONNECT needed.
 *
 * $1 = the table's quoted, possibly qualified name (`"app"."outbox"`): `to_regclass` resolves it
 * exactly as txoutbox's own statements do (search_path when unqualified). One row, or none when
 * there is no such relation. Index key columns come from `pg_get_indexdef(…, k, true)`, so an
 * expression key shows as its expression and never matches a column; INCLUDE columns are left out.
 */
const CATALOG_SQL = `SELECT c.relkind, c.reloptions,
  coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
      'notNull', a.attnotnull, 'filled', a.atthasdef OR a.attidentity <> '') ORDER BY a.attnum)
    FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
  coalesce((SELECT json_agg(json_build_object('name', quote_ident(n.nspname) || '.' || quote_ident(i.relname),
      'unique', x.indisunique, 'valid', x.indisvalid AND x.indisready, 'predicate', pg_get_expr(x.indpred, x.indrelid),
      'columns', (SELECT array_agg(pg_get_indexdef(x.indexrelid, k, true) ORDER BY k)
                  FROM generate_series(1, x.indnkeyatts::int) AS k)) ORDER BY i.relname)
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), '[]') AS indexes,
  coalesce((SELECT json_agg(json_build_object('name', k.conname, 'expression', pg_get_expr(k.conbin, k.conrelid))
      ORDER BY k.conname)
    FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c'), '[]') AS checks
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`;

/** $1 = type names as the migrations spell them; returns Postgres' canonical spelling (format_type). */
const CANONICAL_TYPES_SQL = `SELECT coalesce(format_type(to_regtype(u.t), NULL), u.t) AS canonical
FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY u.i`;

interface LiveColumn {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  /** Has a DEFAULT or is an identity column: an INSERT may leave it out. */
  readonly filled: boolean;
}
interface LiveIndex {
  /** Quoted, schema-qualified. */
  readonly name: string;
  readonly unique: boolean;
  readonly valid: boolean;
  readonly predicate: string | null;
  readonly columns: readonly string[];
}
interface LiveCheck {
  readonly name: string;
  readonly expression: string;
}
interface LiveTable {
  readonly relkind: string;
  readonly reloptions: string[] | null;
  readonly columns: LiveColumn[];
  readonly indexes: LiveIndex[];
  readonly checks: LiveCheck[];
}

const RELKIND_NAMES: Record<string, string> = { v: 'a view', m: 'a materialized view', f: 'a foreign table', S: 'a sequence' };

/**
 * Compares the live catalog with the shape the migrations define (expected-schema.ts) for the
 * outbox table and, when on, the DLQ table; throws one SchemaDriftError listing every finding, or
 * returns when there is none. An outbox missing from `txoutbox` while 0.1's sits in `public` is
 * TableInOtherSchemaError instead: "missing table, run migrate()" would lead to the empty second
 * outbox that error exists to prevent. Once the outbox exists, 0.1's twin still holding rows is a
 * `stranded_rows` finding (stranded-rows.ts).
 */
export async function validateSchema(pool: pg.Pool, names: SchemaNames, options: ValidateSchemaOptions = {}): Promise<void> {
  // Typed as an object, called from JavaScript with anything.
  if (typeof options !== 'object' || (options as ValidateSchemaOptions | null) === null) {
    throw new InvalidOptionError({
      option: 'validateSchema options',
      value: options,
      expected: 'an object such as { checkAutovacuum: true }',
    });
  }
  // A misspelt key (`checkAutoVacuum`) skipped the check it asked for, and the schema passed.
  rejectUnknownOptions(options, 'validateSchema', ['checkAutovacuum']);
  const checkAutovacuum = options.checkAutovacuum ?? false;
  if (typeof checkAutovacuum !== 'boolean') {
    throw new InvalidOptionError({ option: 'checkAutovacuum', value: checkAutovacuum, expected: 'a boolean' });
  }
  await assertNotInLegacyLocation(pool, names);
  const tables = expectedSchema(names);
  const types = await canonicalTypes(pool, tables);
  const findings: DriftFinding[] = [];
  for (const expected of tables) {
    const { rows } = await pool.query<LiveTable>(CATALOG_SQL, [expected.table.sql]);
    const live = rows[0];
    findings.push(...compareTable(expected, live, types));
    if (checkAutovacuum && expected.placeholder === 'outbox' && live !== undefined && isTable(live)) {
      findings.push(...autovacuumFindings(expected.table, live.reloptions));
    }
  }
  // A finding, not a warning: validateSchema() has no channel for warnings (it returns void or
  // throws), and a check that passes while rows sit where nothing reads them is the failure.
  const stranded = await findStrandedRows(pool, names);
  if (stranded !== undefined) findings.push(stranded);
  if (findings.length > 0) throw new SchemaDriftError(findings);
}

/** Expected type spelling -> Postgres' canonical spelling (`timestamptz` -> `timestamp with time zone`). */
async function canonicalTypes(pool: pg.Pool, tables: readonly ExpectedTable[]): Promise<Map<string, string>> {
  const spelled = [...new Set(tables.flatMap((t) => t.columns.map((c) => c.type)))];
  const { rows } = await pool.query<{ canonical: string }>(CANONICAL_TYPES_SQL, [spelled]);
  return new Map(spelled.map((type, i) => [type, rows[i]?.canonical ?? type]));
}

function isTable(live: LiveTable): boolean {
  return live.relkind === 'r' || live.relkind === 'p';
}

function compareTable(expected: ExpectedTable, live: LiveTable | undefined, types: Map<string, string>): DriftFinding[] {
  const { table } = expected;
  const finding = (kind: DriftFinding['kind'], message: string, fix: string): DriftFinding => ({
    table: table.display,
    kind,
    message,
    fix,
  });
  const migrateFix = 'run outbox.migrate() (or `txoutbox migrate`), or apply the script printed by `txoutbox migrate --print`.';
  if (live === undefined) {
    const where = table.schema === undefined ? 'on the search_path of this connection' : `in schema ${table.schema}`;
    return [finding('missing_table', `table ${table.display} does not exist ${where}.`, migrateFix)];
  }
  if (!isTable(live)) {
    const what = RELKIND_NAMES[live.relkind] ?? `a relation of kind '${live.relkind}'`;
    return [finding('missing_table', `${table.display} is ${what}, not a table.`, `rename or drop it, then ${migrateFix}`)];
  }

  const findings: DriftFinding[] = [];
  const liveColumns = new Map(live.columns.map((c) => [c.name, c]));
  for (const column of expected.columns) {
    const actual = liveColumns.get(column.name);
    const why = column.why === undefined ? '' : ` (${column.why.replace(/\.$/, '')})`;
    if (actual === undefined) {
      const backfill =
        column.notNull && column.filledBy === undefined
          ? ' On a table with rows, add it without NOT NULL, fill it, then SET NOT NULL.'
          : '';
      findings.push(
        finding(
          'missing_column',
          `column ${column.name} is missing; txoutbox expects ${column.definition}${why}.${backfill}`,
          `ALTER TABLE ${table.sql} ADD COLUMN ${column.definition};`,
        ),
      );
      continue;
    }
    const type = types.get(column.type) ?? column.type;
    if (actual.type !== type) {
      findings.push(
        finding(
          'wrong_type',
          `column ${column.name} is ${actual.type}; txoutbox expects ${type}${why}. Changing it rewrites the table under an ACCESS EXCLUSIVE lock.`,
          `ALTER TABLE ${table.sql} ALTER COLUMN ${column.name} TYPE ${type} USING ${column.name}::${type};`,
        ),
      );
    }
    if (actual.notNull !== column.notNull) {
      findings.push(
        column.notNull
          ? finding(
              'wrong_nullability',
              `column ${column.name} allows NULL; txoutbox expects NOT NULL${why}. Fill the rows where it is NULL before the fix.`,
              `ALTER TABLE ${table.sql} ALTER COLUMN ${column.name} SET NOT NULL;`,
            )
          : finding(
              'wrong_nullability',
              `column ${column.name} is NOT NULL; txoutbox expects it to allow NULL (it writes NULL there)${why}.`,
              `ALTER TABLE ${table.sql} ALTER COLUMN ${column.name} DROP NOT NULL;`,
            ),
      );
    }
    if (column.filledBy !== undefined && !actual.filled) findings.push(missingDefault(table.sql, column, why, finding));
  }
  for (const index of expected.indexes) findings.push(...compareIndex(index, live.indexes, finding));
  for (const check of expected.checks) findings.push(...compareCheck(check, live.checks, table.sql, finding));
  return findings;
}

type MakeFinding = (kind: DriftFinding['kind'], message: string, fix: string) => DriftFinding;

/**
 * A column txoutbox's INSERTs leave out, without the default or identity the migration gives it (a
 * schema made by another tool): every publish (or DLQ move) fails on it. An identity is added past
 * the table's largest id, so the rows already there keep theirs.
 */
function missingDefault(table: string, column: ExpectedColumn, why: string, finding: MakeFinding): DriftFinding {
  const fix =
    column.filledBy?.identity === true
      ? `ALTER TABLE ${table} ALTER COLUMN ${column.name} ADD GENERATED ALWAYS AS IDENTITY; ` +
        `SELECT setval(pg_get_serial_sequence('${table.replaceAll("'", "''")}', '${column.name}'), coalesce(max(${column.name}), 0) + 1, false) FROM ${table};`
      : `ALTER TABLE ${table} ALTER COLUMN ${column.name} SET DEFAULT ${column.filledBy?.expression ?? ''};`;
  const what = column.filledBy?.identity === true ? 'is not an identity column' : 'has no default';
  return finding(
    'missing_default',
    `column ${column.name} ${what}; txoutbox expects ${column.definition}${why}: its INSERTs leave the column out, and each one fails.`,
    fix,
  );
}

/** `primary key on (id)`, `unique index on (queue, timer_id) WHERE timer_id IS NOT NULL`. */
function describeIndex(index: ExpectedIndex): string {
  const what = index.primaryKey ? 'primary key' : index.unique ? 'unique index' : 'index';
  const where = index.predicate === undefined ? '' : ` WHERE ${index.predicate}`;
  return `${what} on (${index.columns.join(', ')})${where}`;
}

/**
 * Matches by key columns (in order), not by name: a DBA may have renamed it. Any valid index with
 * the columns, uniqueness and predicate satisfies it; otherwise the closest one is reported with
 * everything that is wrong with it.
 */
function compareIndex(expected: ExpectedIndex, live: readonly LiveIndex[], finding: MakeFinding): DriftFinding[] {
  const sameColumns = live.filter(
    (index) => index.columns.length === expected.columns.length && index.columns.every((c, i) => c === expected.columns[i]),
  );
  const why = expected.why === undefined ? '' : ` Purpose: ${expected.why}`;
  const valid = sameColumns.filter((index) => index.valid);
  if (valid.length === 0) {
    const invalid = sameColumns[0];
    const message =
      invalid === undefined
        ? `there is no ${describeIndex(expected)}.${why}`
        : `index ${invalid.name} on (${expected.columns.join(', ')}) is INVALID (a failed CREATE INDEX CONCURRENTLY?), so the planner cannot use it; txoutbox needs a valid ${describeIndex(expected)}.${why}`;
    const drop = invalid === undefined ? '' : `DROP INDEX CONCURRENTLY ${invalid.name}; `;
    return [finding('missing_index', message, `${drop}${expected.createSql}`)];
  }
  const problems = valid.map((index) => indexProblems(expected, index));
  if (problems.some((p) => p.length === 0)) return [];
  // The closest candidate: fewest problems.
  let best = 0;
  for (let i = 1; i < problems.length; i++) if ((problems[i]?.length ?? 0) < (problems[best]?.length ?? 0)) best = i;
  const index = valid[best];
  if (index === undefined) return [];
  const fix = expected.primaryKey ? expected.createSql : `DROP INDEX CONCURRENTLY ${index.name}; ${expected.createSql}`;
  return (problems[best] ?? []).map(([kind, problem]) =>
    finding(kind, `index ${index.name} on (${expected.columns.join(', ')}) ${problem}.${why}`, fix),
  );
}

function indexProblems(expected: ExpectedIndex, index: LiveIndex): [DriftFinding['kind'], string][] {
  const problems: [DriftFinding['kind'], string][] = [];
  if (expected.predicate !== undefined) {
    if (index.predicate === null) {
      problems.push([
        'index_not_partial',
        `is not partial; txoutbox expects WHERE ${expected.predicate} (its statements spell that predicate so the planner picks this index, and a full index also carries every other row)`,
      ]);
    } else if (normalizeExpression(index.predicate) !== normalizeExpression(expected.predicate)) {
      problems.push([
        'index_wrong_predicate',
        `has the predicate WHERE ${index.predicate}; txoutbox expects WHERE ${expected.predicate}`,
      ]);
    }
  } else if (index.predicate !== null) {
    problems.push(['index_wrong_predicate', `is partial (WHERE ${index.predicate}); txoutbox expects it to cover every row`]);
  }
  if (expected.unique && !index.unique) problems.push(['index_not_unique', 'is not UNIQUE']);
  return problems;
}

/** Matches by expression, not by name: naming conventions differ, the invariant does not. */
function compareCheck(
  expected: ExpectedCheck,
  live: readonly LiveCheck[],
  tableSql: string,
  finding: MakeFinding,
): DriftFinding[] {
  const wanted = normalizeExpression(expected.expression);
  if (live.some((check) => normalizeExpression(check.expression) === wanted)) return [];
  const why = expected.why === undefined ? '' : ` Purpose: ${expected.why}`;
  const name = quoteIdent(expected.name);
  return [
    finding(
      'missing_check',
      `no CHECK constraint enforces ${expected.expression} (matched by expression, under any name).${why} The fix adds it NOT VALID first, which keeps the lock short; VALIDATE then fails if a row breaks it.`,
      `ALTER TABLE ${tableSql} ADD CONSTRAINT ${name} CHECK (${expected.expression}) NOT VALID; ALTER TABLE ${tableSql} VALIDATE CONSTRAINT ${name};`,
    ),
  ];
}

/**
 * Brings an expression as the migration writes it and as Postgres deparses it (`pg_get_expr`) to
 * one form: `(acquired_token IS NULL)` and `acquired_token IS NULL` compare equal, and so do
 * `r IN ('a', 'b')` and `(r = ANY (ARRAY['a'::text, 'b'::text]))`. Parentheses are dropped
 * (Postgres adds them freely), keywords are lowercased and `::type` casts removed outside string
 * literals, which are kept verbatim. Our predicates are plain enough that this is exact; the "fresh
 * schema validates clean" test holds it to that.
 */
export function normalizeExpression(expression: string): string {
  const rewritten = expression.replace(/\bIN\s*\(([^()]*)\)/gi, '= ANY (ARRAY[$1])');
  // Odd indexes are string literals (quotes included).
  const parts = rewritten.split(/('(?:[^']|'')*')/);
  return parts
    .map((part, i) =>
      i % 2 === 1
        ? part
        : part
            .toLowerCase()
            .replace(/::[a-z_]+(\[\])?/g, '')
            .replace(/[()]/g, ' ')
            .replace(/\s+/g, ' ')
            .replace(/\s*([,[\]=<>])\s*/g, '$1'),
    )
    .join('')
    .trim();
}
