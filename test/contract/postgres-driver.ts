import type pg from 'pg';

import type { Outbox, OutboxEvent, OutboxOptions } from '../../src/index.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';
import { type ContractDriver, type ContractOutbox, settledCount } from './driver.js';

/**
 * The real outbox on PostgreSQL, one table per scenario. Time is real here: scenarios use short
 * delays (tens of ms) and FAST_POLL, and runUntilSettled waits for recorder events, never a sleep.
 */
let tables = 0;

export function postgresDriver(newOutbox: (options: OutboxOptions) => Outbox, pool: pg.Pool): ContractDriver {
  return {
    name: 'postgres',
    async create(options) {
      tables += 1;
      const events: OutboxEvent[] = [];
      const outbox = newOutbox({
        pool,
        table: `contract_${tables}`,
        recorder: (event) => events.push(event),
        middlewares: options.middlewares ?? [],
        schemas: options.schemas,
      });
      await outbox.migrate();
      const contract: ContractOutbox = {
        publish: (messages) =>
          inTransaction(pool, async (client) => {
            const ids: (string | null)[] = [];
            for (const m of messages) ids.push(await outbox.publish(client, m.queue, m.body, m.options));
            return ids;
          }),
        async publishRolledBack(messages) {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            for (const m of messages) await outbox.publish(client, m.queue, m.body, m.options);
            await client.query('ROLLBACK');
          } finally {
            client.release();
          }
        },
        cancelTimer: (queue, timerId) => inTransaction(pool, (client) => outbox.cancelTimer(client, queue, timerId)),
        async transaction(steps, end) {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            const answers: (string | null | boolean)[] = [];
            for (const step of steps) {
              answers.push(
                'publish' in step
                  ? await outbox.publish(client, step.publish.queue, step.publish.body, step.publish.options)
                  : await outbox.cancelTimer(client, step.cancelTimer.queue, step.cancelTimer.timerId),
              );
            }
            await client.query(end === 'commit' ? 'COMMIT' : 'ROLLBACK');
            return answers;
          } catch (error) {
            await client.query('ROLLBACK');
            throw error;
          } finally {
            client.release();
          }
        },
        subscribe: (queue, handler, subscribeOptions) => {
          outbox.subscribe(queue, handler, { ...FAST_POLL, ...subscribeOptions });
        },
        start: () => {
          outbox.start();
        },
        async runUntilSettled(count) {
          await waitFor(() => settledCount(events) >= count, {
            timeoutMs: 20_000,
            what: `${count} messages ended (have ${settledCount(events)})`,
          });
        },
        events,
        async deadLetters() {
          const { rows } = await outbox.dlq.list({ limit: 1000 });
          return rows.sort((a, b) => Number(a.originalId) - Number(b.originalId));
        },
        remaining: () => outbox.fetchUnprocessed(),
        stop: () => outbox.stop(),
      };
      return contract;
    },
  };
}
