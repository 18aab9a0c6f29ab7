import { errorMessage, TableInOtherSchemaError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { assertNotInLegacyLocation, type Queryable } from './legacy-location.js';
import type { SchemaNames } from './schema-names.js';
import {
  ADDED_COLUMNS,
  type AddedColumns,
  UNDEFINED_COLUMN,
  UNDEFINED_TABLE,
  unmigratedSchemaError,
} from './unmigrated-schema.js';

/** The added columns this version reads in every claim (the producer writes the others of ADDED_COLUMNS). */
const CLAIMED_COLUMNS: AddedColumns = { ordering_key: ADDED_COLUMNS.ordering_key };

/**
 * For consumers started without migrate() (a `txoutbox run` process, an app that migrates
 * elsewhere): when a claim fails because the outbox table does not exist, say once, at error
 * level, why and what to do — the 0.1 tables found in `public` (TableInOtherSchemaError's message,
 * with both fixes), or migrations not run — instead of only repeating "relation does not exist"
 * at every retry. Returns the function a subscription calls with each claim error.
 */
export function missingTableExplainer(db: Queryable, names: SchemaNames, logger: Logger): (error: unknown) => void {
  let explained = false;
  const table = names.outbox.display;
  return (error) => {
    const code = (error as { code?: unknown } | null)?.code;
    if (explained || (code !== UNDEFINED_TABLE && code !== UNDEFINED_COLUMN)) return;
    if (code === UNDEFINED_COLUMN) {
      // The same matching as a publish's SchemaNotMigratedError (names, not wording; not a trigger's).
      const missing = unmigratedSchemaError(error, names.outbox, 'claim', CLAIMED_COLUMNS);
      const added = missing === undefined ? undefined : CLAIMED_COLUMNS[missing.missing];
      if (missing === undefined || added === undefined) return;
      explained = true;
      logger.error(
        { table, missing: missing.missing },
        `${table} has no column ${missing.missing}: this version of txoutbox reads it in every claim (migration ${added.name}), and the schema was not upgraded. Run \`txoutbox migrate\` or outbox.migrate(), or apply \`txoutbox migrate --print --since ${String(added.since)}\` with your own migration tool; until then no row of ${table} is claimed`,
      );
      return;
    }
    explained = true;
    const companion = missingCompanion(names, errorMessage(error));
    if (companion !== undefined) {
      // The outbox is there; this version's companion tables are not: code upgraded, schema not.
      logger.error(
        { table, missing: companion },
        `${companion} does not exist: this version of txoutbox reads it in every claim (pause/resume, migration outbox/0003), and the schema was not upgraded. Run \`txoutbox migrate\` or outbox.migrate(), or apply \`txoutbox migrate --print --since 2\` with your own migration tool; until then no row of ${table} is claimed`,
      );
      return;
    }
    assertNotInLegacyLocation(db, names).then(
      () => {
        logger.error(
          { table },
          `${table} does not exist: run the migrations first (outbox.migrate(), \`txoutbox migrate\`, or the script of \`txoutbox migrate --print\` in your own migration tool)`,
        );
      },
      (cause: unknown) => {
        logger.error(
          { table },
          cause instanceof TableInOtherSchemaError
            ? cause.message
            : `${table} does not exist; looking for why failed: ${errorMessage(cause)}`,
        );
      },
    );
  };
}

/** The companion table an undefined_table error names (Postgres quotes the name as written), if any. */
function missingCompanion(names: SchemaNames, message: string): string | undefined {
  return [names.paused, names.stats].find((t) => message.includes(`"${t.name}"`) || message.includes(`${t.name}"`))?.display;
}
