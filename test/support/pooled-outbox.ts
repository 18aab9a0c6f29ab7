import type { Outbox, OutboxOptions } from '../../src/index.js';
import { EventLog } from './events.js';
import type { PgBouncer } from './pgbouncer.js';

/**
 * An Outbox whose own pool goes through PgBouncer (`transactionPooling`), migrated through it too
 * (migrate() holds a transaction-scoped lock), with its events in `log`. `newOutbox`: the test
 * file's outboxFactory, which stops it after the file.
 */
export async function pooledOutbox(
  newOutbox: (options: OutboxOptions) => Outbox,
  bouncer: PgBouncer,
  databaseUrl: string,
  table: string,
  extra: Record<string, unknown> = {},
): Promise<{ outbox: Outbox; log: EventLog }> {
  const log = new EventLog();
  const outbox = newOutbox({
    connectionString: bouncer.urlFor(databaseUrl),
    transactionPooling: true,
    poolSize: 4,
    table,
    recorder: log.recorder,
    ...extra,
  });
  await outbox.migrate();
  return { outbox, log };
}
