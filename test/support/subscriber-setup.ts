import type pg from 'pg';

import type { Outbox, OutboxOptions } from '../../src/index.js';
import { EventLog } from './events.js';

/** Fast polling for tests: NOTIFY wakes subscribers at once, polls only back up timers and retries. */
export const FAST_POLL = { minPollIntervalMs: 20, maxPollIntervalMs: 100 } as const;

/** Polls every 30–60 s: a row that runs sooner was woken for, not found by the poll. */
export const SLOW_POLL = { minPollIntervalMs: 30_000, maxPollIntervalMs: 60_000 } as const;

/** Subscribes `queue` with SLOW_POLL; the returned array collects when each handler run started (Date.now()). */
export function handlerStartsOf(outbox: Outbox, queue: string): number[] {
  const startedAt: number[] = [];
  outbox.subscribe(
    queue,
    () => {
      startedAt.push(Date.now());
    },
    SLOW_POLL,
  );
  return startedAt;
}

/** Subscribes `queue` with SLOW_POLL; the returned array collects each handled body, as text, in order. */
export function handledBodiesOf(outbox: Outbox, queue: string): string[] {
  const bodies: string[] = [];
  outbox.subscribe(
    queue,
    (message) => {
      bodies.push(String(message.body));
    },
    SLOW_POLL,
  );
  return bodies;
}

export interface SubscriberFixture {
  readonly outbox: Outbox;
  readonly log: EventLog;
}

/** A migrated Outbox on its own table (tests in one file do not share rows) with an event log. */
export async function migratedOutbox(
  newOutbox: (options: OutboxOptions) => Outbox,
  pool: pg.Pool,
  table: string,
  options: Partial<Omit<OutboxOptions, 'pool' | 'connectionString' | 'poolSize'>> = {},
): Promise<SubscriberFixture> {
  const log = new EventLog();
  const outbox = newOutbox({ pool, table, recorder: log.recorder, ...options });
  await outbox.migrate();
  return { outbox, log };
}
