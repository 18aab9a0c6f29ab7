import { before } from 'node:test';

import type { Outbox } from '../../src/index.js';
import type { TestDatabase } from './database.js';
import { listen, type Listener } from './listen.js';
import { outboxFactory } from './outboxes.js';
import { inTransaction as pgTransaction } from './transaction.js';

/** An Outbox on a test file's database and a LISTEN on its channel, for tests of who is woken when. */
export interface WakeWatch {
  readonly outbox: Outbox;
  readonly listener: Listener;
  /** Commits a publish on a fresh sentinel queue and waits for its NOTIFY: every earlier commit's wake-up has arrived by then. */
  settle(): Promise<void>;
  /** Whether a wake-up for `queue` has arrived. */
  woken(queue: string): boolean;
}

/**
 * Sets up, before the file's tests, an Outbox on `db` (migrated and started) and a listener on its
 * channel; both are closed through the database's cleanup, which runs before the database is
 * dropped (an after() registered by a describe would run after the drop).
 */
export function useWakeWatch(db: TestDatabase): WakeWatch {
  const outboxes = outboxFactory(db);
  let outbox: Outbox | undefined;
  let listener: Listener | undefined;
  let sentinels = 0;
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useWakeWatch: the ${what} is set up in before(); use it inside a test`);
    return value;
  };
  before(async () => {
    outbox = outboxes({ pool: db.pool });
    await outbox.migrate();
    outbox.start();
    const opened = await listen(db.url, outbox.channel);
    listener = opened;
    db.onCleanup(() => opened.close());
  });
  const watch: WakeWatch = {
    get outbox() {
      return ready(outbox, 'Outbox');
    },
    get listener() {
      return ready(listener, 'listener');
    },
    async settle() {
      sentinels += 1;
      const queue = `sentinel-${sentinels}.q`;
      await pgTransaction(db.pool, (client) => watch.outbox.publish(client, queue, 'x'));
      await watch.listener.waitFor(queue);
    },
    woken: (queue) => watch.listener.payloads.includes(queue),
  };
  return watch;
}
