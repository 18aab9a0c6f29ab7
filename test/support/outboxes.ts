import { after } from 'node:test';

import { Outbox, type OutboxOptions } from '../../src/index.js';

/**
 * Creates Outboxes for a test file and guarantees they are stopped after it (a leak guard: an
 * Outbox left running would keep connections and timers alive and hide shutdown bugs).
 */
export function outboxFactory(): (options: OutboxOptions) => Outbox {
  const created: Outbox[] = [];
  after(async () => {
    await Promise.all(created.map((outbox) => outbox.stop()));
  });
  return (options) => {
    const outbox = new Outbox(options);
    created.push(outbox);
    return outbox;
  };
}
