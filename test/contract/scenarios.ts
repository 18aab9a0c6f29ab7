import assert from 'node:assert/strict';

import { z } from 'zod';

import {
  ConstantRetry,
  type DeadLetter,
  ExponentialRetry,
  InvalidBodyError,
  type Middleware,
  NoRetry,
  type OutboxEvent,
} from '../../src/index.js';
import type { ContractDriver, ContractOptions, ContractOutbox } from './driver.js';

/**
 * The contract between the in-memory outbox (txoutbox/testing) and the real one: each scenario
 * drives an outbox through the driver's words and returns what it observed, in a form both can
 * produce (no times, no durations: the real side runs on wall time, the in-memory one on its
 * clock). test/integration/testing-contract.test.ts runs every scenario against both drivers;
 * the observations must be equal, and `check` pins what they must be, so the two cannot drift
 * together either.
 */
export interface Scenario {
  readonly name: string;
  run(driver: ContractDriver): Promise<unknown>;
  check(observation: never): void;
}

/**
 * Per message, its events in order: the type, then what both sides must agree on (deliveries,
 * reasons, exception classes, delays); times and durations left out. fetched and published name
 * no message.
 */
function eventsPerMessage(events: readonly OutboxEvent[]): Record<string, string[]> {
  const perMessage: Record<string, string[]> = {};
  for (const event of events) {
    if (!('messageId' in event)) continue;
    const fields = [event.type, `d${event.deliveriesCount}`];
    if (event.type === 'nacked_retried') fields.push(`+${event.nextDelaySeconds}s`, event.exceptionType ?? '-');
    if (event.type === 'nacked_terminal')
      fields.push(event.reason, event.exceptionType ?? '-', 'durationSeconds' in event ? 'ran' : 'not run');
    if (event.type === 'dlq_written') fields.push(event.failureReason, event.exceptionType ?? '-');
    (perMessage[event.messageId] ??= []).push(fields.join(' '));
  }
  return perMessage;
}

/** A DLQ row as both sides can show it: no times, the exception's first line only (the stack differs). */
function deadLetterView(row: DeadLetter) {
  return {
    originalId: row.originalId,
    queue: row.queue,
    failureReason: row.failureReason,
    lastException: row.lastException?.split('\n')[0] ?? null,
    lastExceptionType: row.lastExceptionType,
    attemptsCount: row.attemptsCount,
    deliveriesCount: row.deliveriesCount,
    body: row.body,
    tenant: row.headers.tenant ?? null,
    timerId: row.timerId,
    orderingKey: row.orderingKey,
    firstAttemptSet: row.firstAttemptAt !== null,
    lastAttemptSet: row.lastAttemptAt !== null,
  };
}

async function withOutbox<T>(
  driver: ContractDriver,
  options: ContractOptions,
  fn: (outbox: ContractOutbox) => Promise<T>,
): Promise<T> {
  const outbox = await driver.create(options);
  try {
    return await fn(outbox);
  } finally {
    await outbox.stop();
  }
}

const rollback: Scenario = {
  name: 'a rolled-back publish is never delivered; a committed one is',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const handled: unknown[] = [];
      outbox.subscribe('orders', (m) => {
        handled.push(m.body);
      });
      outbox.start();
      await outbox.publishRolledBack([{ queue: 'orders', body: 'ghost' }]);
      const ids = await outbox.publish([{ queue: 'orders', body: 'real' }]);
      await outbox.runUntilSettled(1);
      const published = outbox.events.filter((e) => e.type === 'published').map((e) => [e.queue, e.status, e.count]);
      return { ids, handled, published, remaining: (await outbox.remaining()).length };
    }),
  check(observation: { ids: unknown[]; handled: unknown[]; published: unknown[]; remaining: number }) {
    assert.deepEqual(observation.handled, ['real']);
    assert.deepEqual(observation.ids, ['2'], 'the rolled-back insert drew id 1 and left a gap');
    assert.equal(observation.remaining, 0);
    assert.deepEqual(observation.published, [
      ['orders', 'ok', 1],
      ['orders', 'ok', 1],
    ]);
  },
};

const ordering: Scenario = {
  name: 'per-key ordering: one row of a key at a time, in publish order; a retried row keeps its place',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const runs: Record<string, string[]> = {};
      const failed = new Set<string>();
      outbox.subscribe(
        'accounts',
        (m) => {
          const body = m.body as string;
          (runs[m.orderingKey ?? 'none'] ??= []).push(body);
          if (body === 'a1' && !failed.has(body)) {
            failed.add(body);
            throw new Error('a1 fails once');
          }
        },
        { concurrency: 4, retry: new ConstantRetry({ delayMs: 50 }) },
      );
      outbox.start();
      const keyed = (body: string, key: string) => ({ queue: 'accounts', body, options: { orderingKey: key } });
      await outbox.publish([keyed('a1', 'a'), keyed('b1', 'b'), keyed('a2', 'a'), keyed('b2', 'b'), keyed('a3', 'a')]);
      await outbox.runUntilSettled(5);
      return runs;
    }),
  check(observation: Record<string, string[]>) {
    assert.deepEqual(observation, { a: ['a1', 'a1', 'a2', 'a3'], b: ['b1', 'b2'] });
  },
};

const retrySchedule: Scenario = {
  name: "retries: the strategy's attempts and delays, then retry_terminal into the DLQ",
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const seen: [number, number][] = [];
      outbox.subscribe(
        'payments',
        (m) => {
          seen.push([m.attemptsCount, m.deliveriesCount]);
          throw new TypeError(`card declined (run ${m.attemptsCount + 1})`);
        },
        { retry: new ExponentialRetry({ initialDelayMs: 20, multiplier: 2, maxAttempts: 4 }) },
      );
      outbox.start();
      await outbox.publish([{ queue: 'payments', body: { amount: 5 }, options: { headers: { tenant: 't1' } } }]);
      await outbox.runUntilSettled(1);
      const retries = outbox.events.flatMap((e) =>
        e.type === 'nacked_retried' ? [[e.nextDelaySeconds, e.exceptionType, e.deliveriesCount]] : [],
      );
      const terminal = outbox.events.flatMap((e) => (e.type === 'nacked_terminal' ? [[e.reason, e.exceptionType]] : []));
      return { seen, retries, terminal, dlq: (await outbox.deadLetters()).map(deadLetterView) };
    }),
  check(observation: { seen: unknown; retries: unknown; terminal: unknown; dlq: unknown[] }) {
    assert.deepEqual(observation.seen, [
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ]);
    assert.deepEqual(observation.retries, [
      [0.02, 'TypeError', 1],
      [0.04, 'TypeError', 2],
      [0.08, 'TypeError', 3],
    ]);
    assert.deepEqual(observation.terminal, [['retry_terminal', 'TypeError']]);
    assert.deepEqual(observation.dlq, [
      {
        originalId: '1',
        queue: 'payments',
        failureReason: 'retry_terminal',
        lastException: 'TypeError: card declined (run 4)',
        lastExceptionType: 'TypeError',
        attemptsCount: 4,
        deliveriesCount: 4,
        body: { amount: 5 },
        tenant: 't1',
        timerId: null,
        orderingKey: null,
        firstAttemptSet: true,
        lastAttemptSet: true,
      },
    ]);
  },
};

const maxDeliveries: Scenario = {
  name: 'maxDeliveries: the row past the cap ends as max_deliveries without running',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      let runs = 0;
      outbox.subscribe(
        'emails',
        () => {
          runs += 1;
          throw new Error('smtp down');
        },
        { maxDeliveries: 2, retry: new ConstantRetry({ delayMs: 20 }) },
      );
      outbox.start();
      await outbox.publish([{ queue: 'emails', body: 'hello' }]);
      await outbox.runUntilSettled(1);
      return { runs, events: eventsPerMessage(outbox.events), dlq: (await outbox.deadLetters()).map(deadLetterView) };
    }),
  check(observation: { runs: number; events: Record<string, string[]>; dlq: { failureReason: string }[] }) {
    assert.equal(observation.runs, 2);
    assert.deepEqual(observation.events, {
      '1': [
        'dispatched d1',
        'nacked_retried d1 +0.02s Error',
        'dispatched d2',
        'nacked_retried d2 +0.02s Error',
        'nacked_terminal d3 max_deliveries Error not run',
        'dlq_written d3 max_deliveries Error',
      ],
    });
    assert.deepEqual(
      observation.dlq.map((d) => [d.failureReason, (d as never as { attemptsCount: number }).attemptsCount]),
      [['max_deliveries', 2]],
    );
    assert.equal((observation.dlq[0] as never as { deliveriesCount: number }).deliveriesCount, 3);
    assert.equal((observation.dlq[0] as never as { lastException: string }).lastException, 'Error: smtp down');
  },
};

const deadLetters: Scenario = {
  name: 'DLQ contents: reject with a reason, a throw under NoRetry, a reject without reason',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      outbox.subscribe(
        'imports',
        (m, ctx) => {
          const body = m.body as { kind: string };
          if (body.kind === 'reject') ctx.reject('bad input');
          else if (body.kind === 'silent') ctx.reject();
          else throw new RangeError('row 3 out of range');
        },
        { retry: new NoRetry() },
      );
      outbox.start();
      await outbox.publish([
        { queue: 'imports', body: { kind: 'reject' }, options: { headers: { tenant: 't1' }, orderingKey: 'k1' } },
        { queue: 'imports', body: { kind: 'throw' }, options: { timerId: 'import-2' } },
        { queue: 'imports', body: { kind: 'silent' } },
      ]);
      await outbox.runUntilSettled(3);
      return (await outbox.deadLetters()).map(deadLetterView);
    }),
  check(observation: ReturnType<typeof deadLetterView>[]) {
    assert.deepEqual(
      observation.map((d) => [d.originalId, d.failureReason, d.lastException, d.lastExceptionType, d.attemptsCount]),
      [
        ['1', 'rejected', 'Error: rejected: bad input', 'Error', 1],
        ['2', 'retry_terminal', 'RangeError: row 3 out of range', 'RangeError', 1],
        ['3', 'rejected', null, null, 1],
      ],
    );
    assert.deepEqual(
      observation.map((d) => [d.tenant, d.timerId, d.orderingKey]),
      [
        ['t1', null, 'k1'],
        [null, 'import-2', null],
        [null, null, null],
      ],
    );
  },
};

const timers: Scenario = {
  name: 'timers: one live row per timerId, cancelled before it runs, not cancellable once running',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const handled: unknown[] = [];
      let cancelWhileRunning: boolean | undefined;
      outbox.subscribe('reminders', async (m) => {
        handled.push(m.body);
        cancelWhileRunning = await outbox.cancelTimer('reminders', 'r2');
      });
      outbox.start();
      const [first] = await outbox.publish([{ queue: 'reminders', body: 'r1', options: { timerId: 'r1', activateInMs: 100 } }]);
      const [duplicate] = await outbox.publish([{ queue: 'reminders', body: 'r1 again', options: { timerId: 'r1' } }]);
      const cancelled = await outbox.cancelTimer('reminders', 'r1');
      const cancelledTwice = await outbox.cancelTimer('reminders', 'r1');
      const [second] = await outbox.publish([{ queue: 'reminders', body: 'r2', options: { timerId: 'r2', activateInMs: 100 } }]);
      await outbox.runUntilSettled(1);
      return { first, duplicate, cancelled, cancelledTwice, second, handled, cancelWhileRunning };
    }),
  check(observation: Record<string, unknown>) {
    assert.deepEqual(observation, {
      first: '1',
      duplicate: null,
      cancelled: true,
      cancelledTwice: false,
      // The conflicting insert drew id 2 before ON CONFLICT DO NOTHING dropped it.
      second: '3',
      handled: ['r2'],
      cancelWhileRunning: false,
    });
  },
};

const keyedTimerCancel: Scenario = {
  name: 'cancelling a keyed timer gives the rows behind it their own times back, not now()',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const key = { orderingKey: 'acct-1' };
      await outbox.publish([
        { queue: 'account', body: 'close', options: { ...key, timerId: 'close', activateInMs: 3_600_000 } },
        { queue: 'account', body: 'statement', options: { ...key, activateInMs: 600_000 } },
        { queue: 'account', body: 'notice', options: key },
      ]);
      const minutes = async (): Promise<Record<string, number>> =>
        Object.fromEntries(
          (await outbox.remaining()).map((row) => [
            String(row.body),
            Math.round((row.nextAttemptAt.getTime() - row.createdAt.getTime()) / 60_000),
          ]),
        );
      const before = await minutes();
      const cancelled = await outbox.cancelTimer('account', 'close');
      return { before, cancelled, after: await minutes() };
    }),
  check(observation: Record<string, unknown>) {
    assert.deepEqual(observation, {
      // Each keyed row is due no earlier than the one before it (it cannot run before it anyway).
      before: { close: 60, statement: 60, notice: 60 },
      cancelled: true,
      // Before, both were due now: the statement's own 10 minutes were lost. The notice, behind it,
      // keeps waiting for it.
      after: { statement: 10, notice: 10 },
    });
  },
};

const keyedTimerCancelInTransaction: Scenario = {
  name: 'a keyed timer cancel sees its own transaction: its inserts released, a new timer after it, nothing on rollback',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const timer = (orderingKey: string, body: string, activateInMs: number) => ({
        publish: { queue: 'orders', body, options: { orderingKey, timerId: orderingKey, activateInMs } },
      });
      const behind = (orderingKey: string, body: string) => ({ publish: { queue: 'orders', body, options: { orderingKey } } });
      const cancel = (timerId: string) => ({ cancelTimer: { queue: 'orders', timerId } });
      // Published and cancelled in one transaction: the row behind the timer is due now.
      const sameTransaction = await outbox.transaction(
        [timer('a', 'a timeout', 3_600_000), behind('a', 'a paid'), cancel('a')],
        'commit',
      );
      // Cancelled, then published again at 30 minutes: the new timer follows the released row.
      await outbox.transaction([timer('b', 'b timeout', 3_600_000), behind('b', 'b paid')], 'commit');
      const again = await outbox.transaction([cancel('b'), timer('b', 'b timeout again', 1_800_000)], 'commit');
      // A rolled-back cancel changes nothing.
      await outbox.transaction([timer('c', 'c timeout', 3_600_000), behind('c', 'c paid')], 'commit');
      const rolledBack = await outbox.transaction([cancel('c')], 'rollback');
      const minutes = Object.fromEntries(
        (await outbox.remaining()).map((row) => [
          String(row.body),
          Math.round((row.nextAttemptAt.getTime() - row.createdAt.getTime()) / 60_000),
        ]),
      );
      return { cancelled: [sameTransaction[2], again[0], rolledBack[0]], republished: again[1] !== null, minutes };
    }),
  check(observation: Record<string, unknown>) {
    assert.deepEqual(observation, {
      cancelled: [true, true, true],
      republished: true,
      minutes: {
        // Before, the in-memory outbox released only committed rows, at commit: 60 and 60.
        'a paid': 0,
        'b paid': 0,
        'b timeout again': 30,
        'c timeout': 60,
        'c paid': 60,
      },
    });
  },
};

const eventSequence: Scenario = {
  name: 'recorder events per message: ack, nack with a delay then ack, reject',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      const nacked = new Set<string>();
      outbox.subscribe('jobs', (m, ctx) => {
        if (m.body === 'reject') ctx.reject('no');
        else if (m.body === 'nack' && !nacked.has(m.id)) {
          nacked.add(m.id);
          ctx.nack({ delayMs: 30 });
        }
      });
      outbox.start();
      await outbox.publish(['ack', 'nack', 'reject'].map((body) => ({ queue: 'jobs', body })));
      await outbox.runUntilSettled(3);
      const delays = outbox.events.flatMap((e) =>
        e.type === 'nacked_retried' ? [[e.messageId, e.nextDelaySeconds, e.exceptionType ?? null]] : [],
      );
      return { events: eventsPerMessage(outbox.events), delays };
    }),
  check(observation: { events: Record<string, string[]>; delays: unknown }) {
    assert.deepEqual(observation.events, {
      '1': ['dispatched d1', 'acked d1'],
      '2': ['dispatched d1', 'nacked_retried d1 +0.03s -', 'dispatched d2', 'acked d2'],
      '3': ['dispatched d1', 'nacked_terminal d1 rejected Error ran', 'dlq_written d1 rejected Error'],
    });
    assert.deepEqual(observation.delays, [['2', 0.03, null]]);
  },
};

const ackPolicies: Scenario = {
  name: 'ack policies: reject_on_error ends a throw as rejected; manual retries a handler that forgot to decide',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      outbox.subscribe(
        'strict',
        () => {
          throw new SyntaxError('unparseable');
        },
        { ackPolicy: 'reject_on_error' },
      );
      outbox.subscribe('manual', () => undefined, {
        ackPolicy: 'manual',
        retry: new ConstantRetry({ delayMs: 20, maxAttempts: 2 }),
      });
      outbox.start();
      await outbox.publish([{ queue: 'strict', body: 's' }]);
      await outbox.publish([{ queue: 'manual', body: 'm' }]);
      await outbox.runUntilSettled(2);
      return { events: eventsPerMessage(outbox.events), dlq: (await outbox.deadLetters()).map(deadLetterView) };
    }),
  check(observation: { events: Record<string, string[]>; dlq: ReturnType<typeof deadLetterView>[] }) {
    assert.deepEqual(observation.events, {
      '1': ['dispatched d1', 'nacked_terminal d1 rejected SyntaxError ran', 'dlq_written d1 rejected SyntaxError'],
      '2': [
        'dispatched d1',
        'nacked_retried d1 +0.02s -',
        'dispatched d2',
        'nacked_terminal d2 retry_terminal - ran',
        'dlq_written d2 retry_terminal -',
      ],
    });
    assert.deepEqual(
      observation.dlq.map((d) => [d.failureReason, d.lastException, d.attemptsCount]),
      [
        ['rejected', 'SyntaxError: unparseable', 1],
        ['retry_terminal', null, 2],
      ],
    );
  },
};

const middlewareOrder: Scenario = {
  name: 'middlewares: [outer, inner] around publish and consume, the handler inside, the outcome written after',
  async run(driver) {
    const order: string[] = [];
    const named = (name: string): Middleware => ({
      name,
      async consume(ctx, next) {
        order.push(`${name}:consume:before`);
        if (name === 'outer') void ctx.written.then((written) => order.push(`written:${written}`));
        const result = await next();
        order.push(`${name}:consume:after:${result.status}:${result.outcome.kind}`);
      },
      async publish(ctx, next) {
        order.push(`${name}:publish:before:${ctx.messageCount}`);
        ctx.headers[`x-${name}`] = name;
        const result = await next();
        order.push(`${name}:publish:after:${result.inserted}`);
      },
    });
    return await withOutbox(driver, { middlewares: [named('outer'), named('inner')] }, async (outbox) => {
      outbox.subscribe('audit', (m) => {
        order.push(`handler:${m.headers['x-outer']}:${m.headers['x-inner']}`);
      });
      outbox.start();
      await outbox.publish([{ queue: 'audit', body: 1 }]);
      await outbox.runUntilSettled(1);
      return order;
    });
  },
  check(observation: string[]) {
    assert.deepEqual(observation, [
      'outer:publish:before:1',
      'inner:publish:before:1',
      'inner:publish:after:1',
      'outer:publish:after:1',
      'outer:consume:before',
      'inner:consume:before',
      'handler:outer:inner',
      'inner:consume:after:acked:ack',
      'outer:consume:after:acked:ack',
      'written:written',
    ]);
  },
};

const followUps: Scenario = {
  name: 'ctx.publish follow-ups carry correlation and causation; in a transactional subscription only the acked run publishes',
  run: (driver) =>
    withOutbox(driver, {}, async (outbox) => {
      let failFirst = true;
      outbox.subscribe(
        'order.placed',
        async (m, ctx) => {
          await ctx.publish('invoice.requested', { order: m.body, run: failFirst ? 1 : 2 });
          if (failFirst) {
            failFirst = false;
            throw new Error('after the follow-up');
          }
        },
        { transactional: true, retry: new ConstantRetry({ delayMs: 20 }) },
      );
      const invoices: unknown[] = [];
      outbox.subscribe('invoice.requested', (m) => {
        invoices.push([m.body, m.correlationId, m.headers['causation-id'] ?? null]);
      });
      outbox.start();
      const [id] = await outbox.publish([{ queue: 'order.placed', body: 'o-1', options: { correlationId: 'conversation-1' } }]);
      await outbox.runUntilSettled(2);
      return { id, invoices };
    }),
  check(observation: { id: unknown; invoices: unknown[] }) {
    assert.deepEqual(observation.invoices, [[{ order: 'o-1', run: 2 }, 'conversation-1', observation.id]]);
  },
};

const committedBeforeAMiddlewareThrows: Scenario = {
  name: 'transactional: a middleware that throws after next() cannot undo what the delivery committed (the ack and its follow-ups)',
  run: (driver) => {
    let throwOnce = true;
    const lateFailure: Middleware = {
      name: 'late-failure',
      async consume(_ctx, next) {
        await next();
        if (throwOnce) {
          throwOnce = false;
          throw new Error('after next()');
        }
      },
    };
    return withOutbox(driver, { middlewares: [lateFailure] }, async (outbox) => {
      const runs: number[] = [];
      outbox.subscribe(
        'order.placed',
        async (m, ctx) => {
          runs.push(m.deliveriesCount);
          await ctx.publish('invoice.requested', { run: m.deliveriesCount });
        },
        { transactional: true, retry: new ConstantRetry({ delayMs: 20 }) },
      );
      const invoices: unknown[] = [];
      outbox.subscribe('invoice.requested', (m) => {
        invoices.push(m.body);
      });
      outbox.start();
      await outbox.publish([{ queue: 'order.placed', body: 'o-1' }]);
      await outbox.runUntilSettled(2);
      return {
        runs,
        invoices,
        events: Object.values(eventsPerMessage(outbox.events)),
        remaining: (await outbox.remaining()).length,
      };
    });
  },
  check(observation: Record<string, unknown>) {
    assert.deepEqual(observation, {
      runs: [1],
      invoices: [{ run: 1 }],
      events: [
        ['dispatched d1', 'acked d1'],
        ['dispatched d1', 'acked d1'],
      ],
      remaining: 0,
    });
  },
};

const schemas: Scenario = {
  name: "schemas: an invalid body is refused before any insert; handlers get the schema's output",
  run: (driver) =>
    withOutbox(
      driver,
      { schemas: { orders: z.object({ orderId: z.string(), qty: z.number().int().positive().default(1) }) } },
      async (outbox) => {
        const handled: unknown[] = [];
        outbox.subscribe('orders', (m) => {
          handled.push(m.body);
        });
        outbox.start();
        const refused = await outbox.publish([{ queue: 'orders', body: { orderId: 7, qty: 0 } }]).then(
          () => null,
          (error: unknown) =>
            error instanceof InvalidBodyError ? [error.code, error.phase, error.issues.map((i) => i.path)] : String(error),
        );
        const ids = await outbox.publish([{ queue: 'orders', body: { orderId: 'o-1' } }]);
        await outbox.runUntilSettled(1);
        const published = outbox.events.flatMap((e) =>
          e.type === 'published' ? [[e.status, e.count, e.exceptionType ?? null]] : [],
        );
        return { refused, ids, handled, published };
      },
    ),
  check(observation: Record<string, unknown>) {
    assert.deepEqual(observation, {
      refused: ['INVALID_BODY', 'publish', ['orderId', 'qty']],
      ids: ['1'],
      handled: [{ orderId: 'o-1', qty: 1 }],
      published: [
        ['error', 0, 'InvalidBodyError'],
        ['ok', 1, null],
      ],
    });
  },
};

export const SCENARIOS: readonly Scenario[] = [
  rollback,
  ordering,
  retrySchedule,
  maxDeliveries,
  deadLetters,
  timers,
  keyedTimerCancel,
  keyedTimerCancelInTransaction,
  eventSequence,
  ackPolicies,
  middlewareOrder,
  followUps,
  committedBeforeAMiddlewareThrows,
  schemas,
];
