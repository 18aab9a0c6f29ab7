import { parseArgs } from 'node:util';

import { type DriftFinding, SchemaDriftError } from '../errors.js';
import { terminalSafe } from '../util/terminal-safe.js';
import type { CommandIo } from './command-io.js';
import { CONNECTION_OPTIONS, resolveConnection } from './connection-options.js';
import { jsonLine } from './json-output.js';
import { operands } from './option-values.js';
import { UsageError } from './usage.js';
import { withOutbox } from './with-outbox.js';

const OPTIONS = { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false } } as const;

/**
 * Findings that do not fail the check. A table without autovacuum tuning works correctly, it only
 * bloats sooner under churn (schema/autovacuum.ts), and the fix is the DBA's call (it touches how
 * vacuum competes with everything else on the server). Every other kind breaks or silently
 * misroutes txoutbox's statements (a missing column or index, rows stranded in 0.1's table): drift.
 */
const ADVISORY_KINDS: ReadonlySet<DriftFinding['kind']> = new Set(['autovacuum_not_tuned']);

export interface SchemaCheck {
  /** The outbox table checked (with the tables that go with it), as written in SQL. */
  readonly table: string;
  /** Its DLQ table, or null when the DLQ is off. */
  readonly dlqTable: string | null;
  /** Findings that fail the check (exit 1). */
  readonly drift: readonly DriftFinding[];
  /** Findings printed but not failing the check (exit 0). */
  readonly advisories: readonly DriftFinding[];
}

/**
 * `txoutbox schema check [--json]`: `outbox.validateSchema({ checkAutovacuum: true })` with its
 * findings split into drift (exit 1) and advisories (exit 0), printed as a list with each fix, or
 * with --json as `{ ok, table, dlqTable, drift, advisories }` (architecture/cli.md). Read-only.
 */
export async function schemaCommand(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
  const [sub, ...rest] = positionals;
  if (sub !== 'check') throw new UsageError(`schema takes check, got ${sub === undefined ? 'nothing' : `'${sub}'`}`);
  operands(rest, [], 'schema check');
  const check = await withOutbox(await resolveConnection(values, io), {}, async (outbox): Promise<SchemaCheck> => {
    const tables = { table: outbox.table, dlqTable: outbox.dlqTable ?? null };
    try {
      await outbox.validateSchema({ checkAutovacuum: true });
      return { ...tables, drift: [], advisories: [] };
    } catch (error) {
      if (!(error instanceof SchemaDriftError)) throw error;
      return {
        ...tables,
        drift: error.findings.filter((f) => !ADVISORY_KINDS.has(f.kind)),
        advisories: error.findings.filter((f) => ADVISORY_KINDS.has(f.kind)),
      };
    }
  });
  io.out(values.json ? jsonLine({ ok: check.drift.length === 0, ...check }) : renderSchemaCheck(check));
  return check.drift.length === 0 ? 0 : 1;
}

/** The human report (pure): a verdict line, then each finding with its fix. */
export function renderSchemaCheck(check: SchemaCheck): string {
  const schema = terminalSafe(`the schema of ${check.table} (${check.dlqTable === null ? 'no DLQ' : `DLQ ${check.dlqTable}`})`);
  const verdict =
    check.drift.length === 0
      ? `ok: ${schema} is what txoutbox expects${check.advisories.length === 0 ? ', autovacuum tuned' : ''}\n`
      : `drift: ${plural(check.drift.length, 'finding')} in ${schema} (exit 1)\n${check.drift.map(findingText).join('')}`;
  const advice =
    check.advisories.length === 0
      ? ''
      : `advisory: ${plural(check.advisories.length, 'finding')} (does not fail the check)\n${check.advisories.map(findingText).join('')}`;
  return `${verdict}${advice}`;
}

/** Findings name what the catalog holds (an index, a column): shown, never run by the terminal. */
function findingText(f: DriftFinding): string {
  const lines = { keepLines: true };
  return `- ${terminalSafe(f.table)} [${f.kind}]: ${terminalSafe(f.message, lines)}\n  fix: ${terminalSafe(f.fix, lines)}\n`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
