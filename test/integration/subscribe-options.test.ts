import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InvalidOptionError, NoRetry } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL } from '../support/subscriber-setup.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('subscribe() validates its options, naming each', () => {
  const cases: [string, unknown, unknown, string][] = [
    ['no queue', [], {}, 'queues'],
    ['empty queue name', '', {}, 'queues'],
    ['concurrency 0', 'q', { concurrency: 0 }, 'concurrency'],
    ['fractional fetchBatchSize', 'q', { fetchBatchSize: 2.5 }, 'fetchBatchSize'],
    ['leaseTtlMs as a string', 'q', { leaseTtlMs: '60s' }, 'leaseTtlMs'],
    ['max below min poll interval', 'q', { minPollIntervalMs: 500, maxPollIntervalMs: 100 }, 'maxPollIntervalMs'],
    ['maxDeliveries 0', 'q', { maxDeliveries: 0 }, 'maxDeliveries'],
    ['retry without nextDelayMs', 'q', { retry: { delay: 5 } }, 'retry'],
    ['unknown ack policy', 'q', { ackPolicy: 'ack_first' }, 'ackPolicy'],
    ['renewal not shorter than the lease', 'q', { leaseTtlMs: 1000, leaseRenewIntervalMs: 1000 }, 'leaseRenewIntervalMs'],
    ['handlerTimeoutMs 0', 'q', { handlerTimeoutMs: 0, leaseRenewIntervalMs: 1000 }, 'handlerTimeoutMs'],
    ['handlerTimeoutMs past the lease without renewal', 'q', { leaseTtlMs: 1000, handlerTimeoutMs: 1001 }, 'handlerTimeoutMs'],
    ['handlerTimeoutMs with row-lock', 'q', { lease: 'row-lock', handlerTimeoutMs: 100 }, 'handlerTimeoutMs'],
    ['handlerTimeoutMs past a day', 'q', { leaseRenewIntervalMs: 1000, handlerTimeoutMs: 86_400_001 }, 'handlerTimeoutMs'],
    ['unknown option', 'q', { concurency: 4 }, 'concurency'],
  ];
  for (const [name, queues, options, option] of cases) {
    test(name, () => {
      const outbox = newOutbox({ pool: db.pool });
      assert.throws(
        () => outbox.subscribe(queues as string, () => undefined, options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    });
  }

  test('a handler that is not a function; dlq: true without a DLQ table', () => {
    const outbox = newOutbox({ pool: db.pool, dlqTable: false });
    assert.throws(
      () => outbox.subscribe('q', 'handler' as never),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'handler',
    );
    assert.throws(
      () => outbox.subscribe('q', () => undefined, { dlq: true }),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'dlq',
    );
  });

  test('foot-guns are warned about once, with the recommended value; the defaults warn about nothing', () => {
    const outbox = newOutbox({ pool: db.pool });
    const before = newOutbox.logger.messages('warn').length;
    outbox.subscribe('fine', () => undefined);
    assert.equal(newOutbox.logger.messages('warn').length, before, 'defaults: no warning');
    outbox.subscribe('short', () => undefined, { leaseTtlMs: 5_000, maxPollIntervalMs: 10_000 });
    outbox.subscribe('fine', () => undefined);
    outbox.subscribe('capped', () => undefined, { retry: new NoRetry(), maxDeliveries: 3 });
    // Reported (review): a renewal interval over half the lease was accepted without a word.
    outbox.subscribe('renewed late', () => undefined, { leaseTtlMs: 1000, leaseRenewIntervalMs: 900, ...FAST_POLL });
    outbox.subscribe('renewed in time', () => undefined, { leaseTtlMs: 1000, leaseRenewIntervalMs: 300, ...FAST_POLL });
    const warnings = newOutbox.logger.messages('warn').slice(before);
    assert.equal(warnings.length, 5);
    assert.match(
      warnings[4]!,
      /leaseRenewIntervalMs \(900\) > leaseTtlMs \/ 2 \(500\).*at most every leaseTtlMs \/ 3 \(here 333\)/,
    );
    assert.match(warnings[0]!, /leaseTtlMs \(5000\) <= maxPollIntervalMs \(10000\).*recommended/);
    // 10 buffered rows at concurrency 1 and half of 5 s: each run must finish in 250 ms.
    assert.match(warnings[1]!, /leaseTtlMs \(5000\) leaves each handler run 250 ms/);
    assert.match(warnings[2]!, /already serves these queues/);
    assert.match(warnings[3]!, /NoRetry/);
  });
});
