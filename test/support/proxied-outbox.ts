import type pg from 'pg';

import { type Middleware, Outbox, type OutboxOptions, type OutcomeWrite, type SubscribeOptions } from '../../src/index.js';
import type { TestDatabase } from './database.js';
import { EventLog } from './events.js';
import type { outboxFactory } from './outboxes.js';
import { publishCommitted } from './publish.js';
import { TcpProxy } from './tcp-proxy.js';

type NewOutbox = ReturnType<typeof outboxFactory>;

/** A TCP proxy in front of the test database (test/support/tcp-proxy.ts), closed with the file's cleanup. */
export async function proxyFor(db: TestDatabase): Promise<TcpProxy> {
  const started = await TcpProxy.start(Number(new URL(db.url).port));
  db.onCleanup(() => started.close());
  return started;
}

/** `table` migrated through the test's own pool (not through a proxy). */
export async function migratedThroughPool(db: TestDatabase, newOutbox: NewOutbox, table: string): Promise<void> {
  await new Outbox({ pool: db.pool, table, logger: newOutbox.logger }).migrate();
}

/** A consume middleware that keeps what each delivery's `ctx.written` settled with, in that order. */
export function writtenProbe(): { readonly middleware: Middleware; readonly writes: OutcomeWrite[] } {
  const writes: OutcomeWrite[] = [];
  return {
    writes,
    middleware: {
      name: 'written-probe',
      async consume(ctx, next) {
        await next();
        void ctx.written.then((write) => writes.push(write));
      },
    },
  };
}

/**
 * An Outbox on a migrated `table` whose connections all go through a proxy, with short statement
 * bounds (queryTimeoutMs 1 s), every event kept (`log`) and every `ctx.written` (`writes`): for
 * tests that cut or silence its connections and check what it reports.
 */
export async function proxiedOutbox(
  db: TestDatabase,
  newOutbox: NewOutbox,
  table: string,
): Promise<{ readonly outbox: Outbox; readonly link: TcpProxy; readonly log: EventLog; readonly writes: OutcomeWrite[] }> {
  await migratedThroughPool(db, newOutbox, table);
  const link = await proxyFor(db);
  return { ...observedOutbox(newOutbox, link.via(db.url), table), link };
}

/**
 * An Outbox on `connection` (a connection string, or a pool of the test's) and a migrated `table`,
 * with short statement bounds (queryTimeoutMs 1 s), every event kept (`log`) and every
 * `ctx.written` (`writes`); `options` on top.
 */
export function observedOutbox(
  newOutbox: NewOutbox,
  connection: string | pg.Pool,
  table: string,
  options: Partial<OutboxOptions> = {},
): { readonly outbox: Outbox; readonly log: EventLog; readonly writes: OutcomeWrite[] } {
  const log = new EventLog();
  const probe = writtenProbe();
  const outbox = newOutbox({
    ...(typeof connection === 'string' ? { connectionString: connection } : { pool: connection }),
    table,
    queryTimeoutMs: 1000,
    recorder: log.recorder,
    middlewares: [probe.middleware],
    ...options,
  } as OutboxOptions);
  return { outbox, log, writes: probe.writes };
}

/**
 * proxiedOutbox() with three rows published on a queue named after `table` (`_` → `-`) and one
 * subscription (`options`) whose handler counts the runs of each id (`handled`) and calls
 * `cut(link)` in the third row's first run: what that delivery (or its batch) sends next goes
 * through the cut link. Started.
 */
export async function threeRowsCut(
  db: TestDatabase,
  newOutbox: NewOutbox,
  table: string,
  options: SubscribeOptions,
  cut: (link: TcpProxy) => void,
) {
  const { outbox, link, log, writes } = await proxiedOutbox(db, newOutbox, table);
  const queue = table.replaceAll('_', '-');
  const handled = new Map<string, number>();
  outbox.subscribe(
    queue,
    (message) => {
      handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
      if (handled.size === 3 && handled.get(message.id) === 1) cut(link);
    },
    options,
  );
  const ids = await publishCommitted(outbox, db.pool, queue, [1, 2, 3]);
  outbox.start();
  return { outbox, queue, log, writes, ids, handled };
}
