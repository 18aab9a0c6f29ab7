import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Hurry, transactionOutcome } from '../../src/subscriber/transaction-outcome.js';
import { statement } from '../../src/util/statement.js';
import type { StatementRunner } from '../../src/util/statement-runner.js';

// No database: a runner that answers every question 'in progress' and counts them, to see how often
// a hurried question asks (a real server cannot be held 'in progress' on demand this long).
function inProgress(): { readonly db: Pick<StatementRunner, 'run'>; readonly asked: () => number } {
  let asked = 0;
  const run = (() => {
    asked += 1;
    return Promise.resolve({ rows: [{ status: 'in progress' }] });
  }) as unknown as StatementRunner['run'];
  return { db: { run }, asked: () => asked };
}

const written = { unwritten: statement('unwritten', 'SELECT 0'), records: [] };

/** The pauses' timers are unref'd (a question never keeps a process alive): this test keeps it alive. */
async function alive<T>(work: () => Promise<T>): Promise<T> {
  const keep = setInterval(() => undefined, 1_000);
  try {
    return await work();
  } finally {
    clearInterval(keep);
  }
}

test('hurried, a question still in progress is asked again every 100 ms, not in a tight loop', async () => {
  // Review: once stop() hurried it, every pause raced a promise already resolved and returned at
  // once: thousands of questions a second for the whole graceful budget.
  const { db, asked } = inProgress();
  const hurry = new Hurry();
  hurry.hurry();
  const began = performance.now();
  const outcome = await alive(() =>
    transactionOutcome(db, '1', written, 60_000, { giveUp: () => performance.now() - began > 450, hurry }),
  );
  assert.equal(outcome, 'in progress');
  assert.ok(asked() >= 3 && asked() <= 10, `asked ${asked()} times in ~450 ms`);
});

test('a pause is cut short when the hurry comes, and the question is asked at once', async () => {
  const { db, asked } = inProgress();
  const hurry = new Hurry();
  let hurriedAt = Number.POSITIVE_INFINITY;
  setTimeout(() => {
    hurriedAt = asked();
    hurry.hurry();
  }, 350);
  // Pauses of 100, 200, 400 ms… : by 350 ms it asked twice or three times and sleeps until ~700 ms.
  const outcome = await alive(() => transactionOutcome(db, '1', written, 60_000, { giveUp: () => asked() > hurriedAt, hurry }));
  assert.equal(outcome, 'in progress');
  assert.equal(asked(), hurriedAt + 1, 'one question right after the hurry');
});
