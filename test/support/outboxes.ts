import { Outbox, type OutboxOptions } from '../../src/index.js';
import type { TestDatabase } from './database.js';
import { TestLogger } from './test-logger.js';

/**
 * Creates Outboxes for a test file and guarantees they are stopped after it, before the file's
 * pool closes (a leak guard: an Outbox left running keeps connections and timers alive and hides
 * shutdown bugs). They log into `logger` instead of stderr, so tests can assert on warnings.
 */
export function outboxFactory(db: TestDatabase): ((options: OutboxOptions) => Outbox) & { readonly logger: TestLogger } {
  const created: Outbox[] = [];
  const logger = new TestLogger();
  db.onCleanup(async () => {
    await Promise.all(created.map((outbox) => outbox.stop()));
  });
  const create = (options: OutboxOptions): Outbox => {
    const outbox = new Outbox({ logger, ...options });
    created.push(outbox);
    return outbox;
  };
  return Object.assign(create, { logger });
}
