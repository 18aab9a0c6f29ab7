import type { NotifyMode } from '../../producer/wake-after-commit.js';
import { withApplicationName } from '../application-name.js';
import type { Section } from './config-issues.js';
import type { RunnerConfig } from './runner-config.js';

/**
 * The `database:` keys that say how the processes reach PostgreSQL — through PgBouncer in
 * transaction mode, for one (architecture/pgbouncer.md). They are Outbox options under the same
 * names, judged by `new Outbox()`'s resolver with the others (validate-config.ts), except
 * `listenUrl`, which is the Outbox's listenConnectionString.
 */
export const CONNECTION_KEYS = ['transactionPooling', 'preparedStatements', 'listen', 'notify', 'listenUrl'];

/** The Outbox options the `database:` section's connection keys set (listenUrl only once it is a valid URL). */
export function connectionOptions(database: Section, listenUrl: string | undefined): Record<string, unknown> {
  return {
    transactionPooling: database.transactionPooling,
    preparedStatements: database.preparedStatements,
    listen: database.listen,
    notify: database.notify,
    // An invalid listenUrl was reported already: a stand-in keeps listen judged against it, not against its absence.
    listenConnectionString: database.listenUrl === undefined ? undefined : (listenUrl ?? 'postgres://localhost/listen'),
  };
}

/** The config path of an Outbox option of this section; undefined for the others. */
export function connectionOptionPath(option: string): string | undefined {
  if (option === 'listenConnectionString') return 'database.listenUrl';
  return CONNECTION_KEYS.includes(option) ? `database.${option}` : undefined;
}

/** The validated section's connection keys, for RunnerConfig.database. */
export function connectionConfig(
  database: Section,
  listenUrl: string | undefined,
): Pick<RunnerConfig['database'], 'transactionPooling' | 'preparedStatements' | 'listen' | 'notify' | 'listenUrl'> {
  return {
    transactionPooling: database.transactionPooling === true,
    preparedStatements: typeof database.preparedStatements === 'boolean' ? database.preparedStatements : undefined,
    listen: typeof database.listen === 'boolean' ? database.listen : undefined,
    notify: database.notify === 'after-commit' || database.notify === 'in-transaction' ? database.notify : undefined,
    listenUrl,
  };
}

/**
 * The Outbox options every process of the runner passes (children and the supervisor's own); the
 * LISTEN connection's URL carries the process's application_name as its pool's does.
 */
export function outboxConnectionOptions(
  database: RunnerConfig['database'],
  applicationName: string,
): {
  transactionPooling: boolean;
  preparedStatements?: boolean;
  listen?: boolean;
  notify?: NotifyMode;
  listenConnectionString?: string;
} {
  return {
    transactionPooling: database.transactionPooling,
    ...(database.preparedStatements === undefined ? {} : { preparedStatements: database.preparedStatements }),
    ...(database.listen === undefined ? {} : { listen: database.listen }),
    ...(database.notify === undefined ? {} : { notify: database.notify }),
    ...(database.listenUrl === undefined
      ? {}
      : { listenConnectionString: withApplicationName(database.listenUrl, applicationName) }),
  };
}
