import type pg from 'pg';

import type { DeliverDeps } from '../subscriber/deliver.js';
import type { DeliveryTransactions } from '../subscriber/delivery-transaction.js';
import type { TestTransaction } from './test-transaction.js';

/**
 * The transactions of a `transactional: true` subscription in the test outbox: each delivery gets
 * a TestTransaction, its `ctx.publish` follow-ups go into it, and it commits with the ack inside
 * the consume chain, as the real delivery's COMMIT does (subscriber/delivery-transaction.ts
 * runInTransaction drives both). So what committed stays committed whatever a middleware does
 * after next(), as on PostgreSQL; a retry or a terminal outcome rolls it back first.
 *
 * `ctx.client` is that TestTransaction: it runs no SQL (its query() rejects with
 * NotInTransactionError), and `outbox.publish(ctx.client, …)` puts a row in the delivery's
 * transaction, as with the real Outbox.
 */
export function memoryDeliveryTransactions(open: () => TestTransaction, writer: DeliverDeps['writer']): DeliveryTransactions {
  return {
    begin: () => {
      const tx = open();
      const rollback = async (): Promise<void> => {
        if (tx.state === 'open') await tx.rollback();
      };
      return Promise.resolve({
        // The real one is a node-postgres PoolClient; this one only carries the transaction.
        client: tx as unknown as pg.PoolClient,
        // The row is deleted by settled() (the writer's ack), right after: nothing runs between.
        commitAck: async () => {
          await tx.commit();
          return 'deleted' as const;
        },
        rollback,
        destroy: () => {
          void rollback();
        },
      });
    },
    settled: (lease, durationSeconds, result, written) => {
      // 'deleted' is all the memory commit returns: there is no lease to lose here.
      if (result === 'deleted') writer.ack(lease, durationSeconds, written);
    },
  };
}
