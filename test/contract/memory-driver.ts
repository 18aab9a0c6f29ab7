import { createTestOutbox } from '../../src/testing/index.js';
import { TestLogger } from '../support/test-logger.js';
import { type ContractDriver, type ContractOutbox, settledCount } from './driver.js';

/** The in-memory outbox: its clock is moved to each retry and delay by drain({ advanceClock }). */
export const memoryDriver: ContractDriver = {
  name: 'memory',
  create(options) {
    const outbox = createTestOutbox({
      logger: new TestLogger(),
      middlewares: options.middlewares ?? [],
      schemas: options.schemas,
    });
    const contract: ContractOutbox = {
      publish: (messages) =>
        outbox.transaction(async (tx) => {
          const ids: (string | null)[] = [];
          for (const m of messages) ids.push(await outbox.publish(tx, m.queue, m.body, m.options));
          return ids;
        }),
      async publishRolledBack(messages) {
        const tx = outbox.transaction();
        for (const m of messages) await outbox.publish(tx, m.queue, m.body, m.options);
        await tx.rollback();
      },
      cancelTimer: (queue, timerId) => outbox.transaction((tx) => outbox.cancelTimer(tx, queue, timerId)),
      async transaction(steps, end) {
        const tx = outbox.transaction();
        const answers: (string | null | boolean)[] = [];
        for (const step of steps) {
          answers.push(
            'publish' in step
              ? await outbox.publish(tx, step.publish.queue, step.publish.body, step.publish.options)
              : await outbox.cancelTimer(tx, step.cancelTimer.queue, step.cancelTimer.timerId),
          );
        }
        await (end === 'commit' ? tx.commit() : tx.rollback());
        return answers;
      },
      subscribe: (queue, handler, subscribeOptions) => {
        outbox.subscribe(queue, handler, subscribeOptions);
      },
      start: () => {
        outbox.start();
      },
      async runUntilSettled(count) {
        await outbox.drain({ advanceClock: true });
        const settled = settledCount(outbox.events);
        if (settled < count) throw new Error(`the in-memory outbox went idle with ${settled} of ${count} messages ended`);
      },
      get events() {
        return outbox.events;
      },
      deadLetters: () => Promise.resolve([...outbox.deadLetters].sort((a, b) => Number(a.originalId) - Number(b.originalId))),
      remaining: () => outbox.fetchUnprocessed(),
      stop: () => outbox.stop(),
    };
    return Promise.resolve(contract);
  },
};
