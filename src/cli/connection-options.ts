import { DEFAULT_TABLE } from '../schema/schema-names.js';
import { UsageError } from './usage.js';

/** The parseArgs options every command that talks to a database takes (migrate, dlq). */
export const CONNECTION_OPTIONS = {
  'database-url': { type: 'string' },
  table: { type: 'string', default: DEFAULT_TABLE },
  'dlq-table': { type: 'string' },
} as const;

/** `--database-url`, else $DATABASE_URL; neither is bad usage (exit 2), naming both. */
export function connectionString(databaseUrl: string | undefined, env: NodeJS.ProcessEnv, hint = ''): string {
  const url = databaseUrl ?? env.DATABASE_URL;
  if (url === undefined || url === '') {
    throw new UsageError(`no database: pass --database-url or set DATABASE_URL${hint}`);
  }
  return url;
}
