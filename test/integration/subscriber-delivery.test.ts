import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConstantRetry, ExponentialRetry, InvalidOptionError, type Message, NoRetry } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);

/** A failure with a class of its own, to check the class name is what gets recorded. */
class StockUnavailable extends Error {}
const newOutbox = outboxFactory(db);

describe('delivery', () => {
  test('a message is handled once, acked, deleted, and reported in order: fetched → dispatched → acked', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_basic');
    const seen: Message[] = [];
    outbox.subscribe(
      'orders',
      (message) => {
        seen.push(message);
      },
      { name: 'orders-handler', ...FAST_POLL },
    );
    outbox.start();
    const [id] = await inTransaction(db.pool, async (c) => [
      await outbox.publish(c, 'orders', { orderId: 7 }, { headers: { tenant: 'a' } }),
    ]);
    await log.waitFor('acked');
    assert.equal(seen.length, 1);
    const message = seen[0]!;
    assert.equal(message.id, id);
    assert.deepEqual(message.body, { orderId: 7 });
    assert.equal(message.headers.tenant, 'a');
    assert.equal(message.deliveriesCount, 1);
    assert.equal(message.attemptsCount, 0);
    assert.match(message.correlationId, /^[0-9a-f-]{36}$/);
    assert.equal(await remaining(db.pool, 'orders', 'd_basic'), 0);
    const [dispatched] = log.of('dispatched');
    assert.deepEqual(
      { ...dispatched, ageSeconds: 0 },
      {
        type: 'dispatched',
        queue: 'orders',
        subscriber: 'orders-handler',
        messageId: id,
        deliveriesCount: 1,
        sizeBytes: 13,
        ageSeconds: 0,
      },
    );
    const [acked] = log.of('acked');
    assert.equal(acked?.messageId, id);
    assert.ok(log.of('fetched').some((e) => e.count === 1 && e.queue === 'orders'));
    assert.ok(
      log.of('fetched').some((e) => e.count === 0),
      'empty fetches are reported too',
    );
  });

  test('NOTIFY wakes an idle subscriber long before its next poll', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_notify');
    outbox.subscribe('wake', () => undefined, { minPollIntervalMs: 60_000, maxPollIntervalMs: 60_000 });
    outbox.start();
    await log.waitFor('fetched'); // the first (empty) fetch: now the loop sleeps for a minute
    const started = Date.now();
    await publishCommitted(outbox, db.pool, 'wake', ['hello']);
    await log.waitFor('acked', 1, 5_000);
    assert.ok(Date.now() - started < 5_000);
  });

  test('5,000 messages, concurrency 16, two Outboxes competing: every message handled, none twice', async () => {
    const first = await migratedOutbox(newOutbox, db.pool, 'd_compete');
    const second = await migratedOutbox(newOutbox, db.pool, 'd_compete');
    const handled = new Map<number, number>();
    const handler = (message: Message) => {
      const n = (message.body as { n: number }).n;
      handled.set(n, (handled.get(n) ?? 0) + 1);
    };
    const bodies = Array.from({ length: 5000 }, (_, n) => ({ n }));
    await publishCommitted(first.outbox, db.pool, 'compete', bodies);
    for (const { outbox } of [first, second]) {
      outbox.subscribe('compete', handler, { concurrency: 16, fetchBatchSize: 50, ...FAST_POLL });
      outbox.start();
    }
    await waitFor(() => handled.size === 5000, { timeoutMs: 60_000, what: 'all 5000 handled' });
    await waitFor(async () => (await remaining(db.pool, 'compete', 'd_compete')) === 0, { what: 'table drained' });
    assert.deepEqual(
      [...handled.values()].filter((count) => count !== 1),
      [],
      'no message handled twice',
    );
    // The table can read empty before the last ack DELETE's answer reached its subscriber (the
    // server committed it; the client has not read the reply yet): wait for the events too.
    const acked = (): number => first.log.of('acked').length + second.log.of('acked').length;
    await waitFor(() => acked() >= 5000, { what: `every ack reported (have ${acked()})` });
    assert.ok(first.log.of('acked').length > 0 && second.log.of('acked').length > 0, 'both instances took part');
    assert.equal(acked(), 5000);
  });

  test('one subscription can serve several queues; others are left alone', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_multi');
    const queues: string[] = [];
    outbox.subscribe(
      ['a', 'b'],
      (message) => {
        queues.push(message.queue);
      },
      FAST_POLL,
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'a', [1, 2]);
    await publishCommitted(outbox, db.pool, 'b', [3]);
    await publishCommitted(outbox, db.pool, 'c', [4]);
    await log.waitFor('acked', 3);
    assert.deepEqual(queues.sort(), ['a', 'a', 'b']);
    assert.equal(await remaining(db.pool, 'c', 'd_multi'), 1);
  });
});

describe('failures, retries and the DLQ', () => {
  test('a throw retries by the strategy, with the delay applied by the database clock', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_retry');
    outbox.subscribe(
      'flaky',
      () => {
        throw new TypeError('downstream said no');
      },
      { retry: new ConstantRetry({ delayMs: 60_000 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'flaky', ['x']);
    const [retried] = await log.waitFor('nacked_retried');
    assert.equal(retried?.nextDelaySeconds, 60);
    assert.equal(retried?.exceptionType, 'TypeError');
    const { rows } = await db.pool.query<{
      delay_s: number;
      attempts_count: number;
      acquired_token: string | null;
      first_attempt_at: Date;
      last_attempt_at: Date;
    }>(
      `SELECT extract(epoch FROM next_attempt_at - now()) AS delay_s, attempts_count, acquired_token, first_attempt_at, last_attempt_at FROM d_retry`,
    );
    const row = rows[0]!;
    assert.ok(row.delay_s > 55 && row.delay_s <= 60, `next_attempt_at ≈ now() + 60 s, got ${row.delay_s}`);
    assert.equal(row.attempts_count, 1);
    assert.equal(row.acquired_token, null, 'the lease is released');
    assert.equal(row.first_attempt_at.getTime(), row.last_attempt_at.getTime());
  });

  test('ctx.nack({ delayMs }) with NaN, ±Infinity, a negative or a non-number throws InvalidOptionError at the call; uncaught, it fails the delivery by the policy', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_nack_delay');
    const thrown: unknown[] = [];
    outbox.subscribe(
      'bad-delay',
      (message, ctx) => {
        if (message.deliveriesCount > 1) return;
        for (const delayMs of [Infinity, -Infinity, -1, '5' as unknown as number]) {
          try {
            ctx.nack({ delayMs });
          } catch (error) {
            thrown.push(error);
          }
        }
        try {
          ctx.nack({ delayMs: NaN });
        } catch (error) {
          thrown.push(error);
          throw error; // the handler throws it: the normal failure path
        }
      },
      // A lease far longer than the test: the retry must come from the failure path, not from an expiry.
      { retry: new ConstantRetry({ delayMs: 50 }), leaseTtlMs: 600_000, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'bad-delay', ['x']);
    const [retried] = await log.waitFor('nacked_retried', 1, 5_000);
    assert.equal(retried?.exceptionType, 'InvalidOptionError');
    assert.equal(retried?.nextDelaySeconds, 0.05, 'the strategy decided the delay');
    await log.waitFor('acked', 1, 5_000);
    assert.equal(thrown.length, 5, 'every invalid delay threw');
    for (const [i, shown] of ['Infinity', '-Infinity', '-1', '"5"', 'NaN'].entries()) {
      const error = thrown[i];
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, 'ctx.nack({ delayMs })');
      assert.match(error.message, /^ctx\.nack\(\{ delayMs \}\): expected a finite number of milliseconds >= 0/);
      assert.ok(error.message.includes(`got ${shown}.`), error.message);
    }
    assert.equal(await remaining(db.pool, 'bad-delay', 'd_nack_delay'), 0);
  });

  test('exponential schedule, then retry_terminal into the DLQ with the exception text', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_poison');
    outbox.subscribe(
      'poison',
      () => {
        throw new RangeError('cannot parse order 42');
      },
      { retry: new ExponentialRetry({ initialDelayMs: 20, multiplier: 3, maxAttempts: 3 }), ...FAST_POLL },
    );
    outbox.start();
    const [id] = await publishCommitted(outbox, db.pool, 'poison', [{ order: 42 }]);
    await log.waitFor('dlq_written');
    assert.deepEqual(
      log.of('nacked_retried').map((e) => e.nextDelaySeconds),
      [0.02, 0.06],
    );
    const [terminal] = log.of('nacked_terminal');
    assert.equal(terminal?.reason, 'retry_terminal');
    assert.equal(terminal?.exceptionType, 'RangeError');
    const { rows } = await db.pool.query<{
      original_id: string;
      failure_reason: string;
      last_exception: string;
      attempts_count: number;
      deliveries_count: number;
      payload: Buffer;
    }>('SELECT original_id::text, failure_reason, last_exception, attempts_count, deliveries_count, payload FROM d_poison_dlq');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.original_id, id);
    assert.equal(rows[0]?.failure_reason, 'retry_terminal');
    assert.match(rows[0]?.last_exception ?? '', /^RangeError: cannot parse order 42\n\s+at /);
    assert.equal(rows[0]?.attempts_count, 3);
    assert.equal(rows[0]?.deliveries_count, 3);
    assert.deepEqual(JSON.parse(rows[0].payload.toString()), { order: 42 });
    assert.equal(await remaining(db.pool, 'poison', 'd_poison'), 0);
  });

  test('renderError redacts last_exception and its output is bounded to 8 KB', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_render', {
      renderError: (error) => `redacted ${(error as Error).name} ${'x'.repeat(10_000)}`,
    });
    outbox.subscribe(
      'render',
      () => {
        throw new Error('card 4111-1111-1111-1111');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'render', ['x']);
    await log.waitFor('dlq_written');
    const { rows } = await db.pool.query<{ last_exception: string }>('SELECT last_exception FROM d_render_dlq');
    const text = rows[0]?.last_exception ?? '';
    assert.ok(text.startsWith('redacted Error xxx'));
    assert.ok(!text.includes('4111'));
    assert.equal(text.length, 8192);
    assert.ok(text.endsWith('…[truncated]'));
  });

  test('ctx.reject() and ackPolicy reject_on_error end the row as rejected', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_reject');
    outbox.subscribe(
      'explicit',
      (_message, ctx) => {
        ctx.reject('invalid order');
      },
      FAST_POLL,
    );
    outbox.subscribe(
      'policy',
      () => {
        throw new SyntaxError('bad');
      },
      { ackPolicy: 'reject_on_error', ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'explicit', ['x']);
    await publishCommitted(outbox, db.pool, 'policy', ['y']);
    await log.waitFor('dlq_written', 2);
    const { rows } = await db.pool.query<{
      queue: string;
      failure_reason: string;
      last_exception: string;
      attempts_count: number;
    }>('SELECT queue, failure_reason, last_exception, attempts_count FROM d_reject_dlq ORDER BY queue');
    assert.deepEqual(
      rows.map((r) => [r.queue, r.failure_reason, r.attempts_count]),
      [
        ['explicit', 'rejected', 1],
        ['policy', 'rejected', 1],
      ],
    );
    assert.match(rows[0]?.last_exception ?? '', /rejected: invalid order/);
    assert.match(rows[1]?.last_exception ?? '', /SyntaxError: bad/);
    assert.equal(log.of('nacked_retried').length, 0);
  });

  test('manual ack policy: explicit decisions are honoured; returning without one retries, never deletes', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_manual');
    outbox.subscribe(
      'manual',
      (message, ctx) => {
        const { ack } = ctx; // destructured: the controls are bound functions, not methods needing `this`
        if (message.body === 'ack') ack();
        if (message.body === 'nack') ctx.nack({ delayMs: 30_000 });
        // 'forget': returns without deciding
      },
      { ackPolicy: 'manual', retry: new ConstantRetry({ delayMs: 45_000 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'manual', ['ack', 'nack', 'forget']);
    await log.waitFor('acked');
    await log.waitFor('nacked_retried', 2);
    const delays = log
      .of('nacked_retried')
      .map((e) => e.nextDelaySeconds)
      .sort();
    assert.deepEqual(delays, [30, 45], 'nack({ delayMs }) uses its delay; a forgotten decision uses the strategy');
    assert.equal(await remaining(db.pool, 'manual', 'd_manual'), 2, 'nothing was deleted silently');
  });

  test('maxDeliveries ends a row that keeps coming back without running the handler; the DLQ keeps the last real exception', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_maxdel');
    let runs = 0;
    outbox.subscribe(
      'md',
      () => {
        runs += 1;
        throw new StockUnavailable(`again ${runs}`);
      },
      { maxDeliveries: 2, retry: new ConstantRetry({ delayMs: 1 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'md', ['x']);
    const [terminal] = await log.waitFor('nacked_terminal');
    assert.equal(terminal?.reason, 'max_deliveries');
    assert.equal(terminal?.durationSeconds, undefined, 'no handler ran');
    assert.equal(runs, 2);
    const { rows } = await db.pool.query<{ failure_reason: string; deliveries_count: number; attempts_count: number }>(
      'SELECT failure_reason, deliveries_count, attempts_count FROM d_maxdel_dlq',
    );
    assert.deepEqual(rows, [{ failure_reason: 'max_deliveries', deliveries_count: 3, attempts_count: 2 }]);
    assert.equal(terminal?.exceptionType, 'StockUnavailable', 'the class the handler last threw, not a made-up Error');
    const [dlq] = log.of('dlq_written');
    assert.equal(dlq?.exceptionType, 'StockUnavailable');
    const stored = await db.pool.query<{ last_exception: string; last_exception_type: string }>(
      'SELECT last_exception, last_exception_type FROM d_maxdel_dlq',
    );
    assert.equal(stored.rows[0]?.last_exception_type, 'StockUnavailable');
    const text = stored.rows[0]?.last_exception ?? '';
    assert.match(text, /: again 2\n {4}at /, "the last run's error, with its stack");
    assert.doesNotMatch(text, /delivered \d+ times/, 'not the error txoutbox used to make up');
  });

  test('maxDeliveries of a row whose handler never failed (lease expiries): the DLQ says so, with no exception type', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_maxdel_hang');
    // Two deliveries that never finished (a process that died mid-run, twice): counted, no failure recorded.
    await publishCommitted(outbox, db.pool, 'mdh', ['x']);
    await db.pool.query(
      `UPDATE d_maxdel_hang SET deliveries_count = 2, acquired_token = gen_random_uuid(), acquired_at = now() - interval '1 hour'`,
    );
    outbox.subscribe('mdh', () => undefined, { maxDeliveries: 2, ...FAST_POLL });
    outbox.start();
    const [terminal] = await log.waitFor('nacked_terminal');
    assert.equal(terminal?.reason, 'max_deliveries');
    assert.equal(terminal?.exceptionType, undefined);
    const stored = await db.pool.query<{ last_exception: string; last_exception_type: string | null }>(
      'SELECT last_exception, last_exception_type FROM d_maxdel_hang_dlq',
    );
    assert.equal(stored.rows[0]?.last_exception_type, null);
    assert.match(stored.rows[0]?.last_exception ?? '', /no handler run recorded a failure/);
  });

  test('a retry strategy that throws ends the row as retry_terminal; the loop keeps running', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_badstrategy');
    outbox.subscribe(
      'bs',
      (message) => {
        if (message.body === 'fail') throw new Error('handler failed');
      },
      {
        retry: {
          nextDelayMs: () => {
            throw new Error('strategy bug');
          },
        },
        ...FAST_POLL,
      },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'bs', ['fail']);
    const [terminal] = await log.waitFor('nacked_terminal');
    assert.equal(terminal?.reason, 'retry_terminal');
    await publishCommitted(outbox, db.pool, 'bs', ['ok']);
    await log.waitFor('acked');
    assert.equal(await outbox.ping(), true);
  });

  test('without a DLQ a terminal row is deleted and reported (no dlq_written)', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_nodlq', { dlqTable: false });
    outbox.subscribe(
      'nd',
      (_m, ctx) => {
        ctx.reject();
      },
      FAST_POLL,
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'nd', ['x']);
    await log.waitFor('nacked_terminal');
    assert.equal(log.of('dlq_written').length, 0);
    assert.equal(await remaining(db.pool, 'nd', 'd_nodlq'), 0);
  });

  test('a DLQ insert that fails rolls the delete back: the row stays', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'd_dlqfail');
    // Break the DLQ the way a misconfiguration would.
    await db.pool.query('ALTER TABLE d_dlqfail_dlq ADD COLUMN must_be_set text NOT NULL');
    outbox.subscribe(
      'df',
      (_m, ctx) => {
        ctx.reject();
      },
      FAST_POLL,
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'df', ['x']);
    await log.waitFor('fetched'); // dispatch happened
    await waitFor(async () => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM d_dlqfail WHERE acquired_token IS NOT NULL');
      return rows[0]?.n === '1';
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await remaining(db.pool, 'df', 'd_dlqfail'), 1, 'the row is still there, leased, for redelivery after expiry');
    assert.equal(log.of('nacked_terminal').length, 0, 'no terminal decision is reported that did not land');
  });
});
