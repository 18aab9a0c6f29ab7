/**
 * How late a delayed message runs when another process published it: one Outbox publishes
 * `messages` rows, one per transaction, each with `activateInMs` drawn from 200–3,000 ms, up to
 * `gap` ms apart; another Outbox, on its own pool and with default polling (backing off to
 * maxPollIntervalMs, 10 s, while nothing is claimed), consumes them. Lateness = the handler's
 * start − (the publish's call + its delay), on one Node clock. Before delayed publishes announced
 * their due time, only polling found these rows. With `start` = after, the consumer starts only
 * once every row is published (a deploy): it heard none of the announcements, and each delay is
 * moved past the publishing time so that every row comes due after the start; before the LISTEN
 * connection read the due times, polling found these rows.
 *
 *   node --import tsx bench/src/probes/delayed-lateness.ts [messages, 200] [notify, after-commit|in-transaction] [gap ms, 60] [start, before|after]
 */

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { latenessSummary, seededRandom } from '../stats.js';

const messages = Number(process.argv[2] ?? 200);
const notify = (process.argv[3] ?? 'after-commit') as 'after-commit' | 'in-transaction';
/** The longest pause between two publishes: a few tens of ms keep the consumer busy; seconds let it back off. */
const gapMs = Number(process.argv[4] ?? 60);
const startAfter = process.argv[5] === 'after';
/** With the consumer started after the publishes: every delay this much longer, so none is due before the start. */
const delayShiftMs = startAfter ? messages * gapMs + 1_000 : 0;
const TABLE = 'lateness';

const server = await startEmbeddedPostgres();
const consumer = new Outbox({ connectionString: server.connectionString, table: TABLE, poolSize: 4 });
const producerPool = new pg.Pool({ connectionString: server.connectionString, max: 2 });
const producer = new Outbox({ pool: producerPool, table: TABLE, notify });
try {
  await consumer.migrate();
  const dueAt = new Map<string, number>();
  const lateness: number[] = [];
  let done: () => void = () => undefined;
  const allHandled = new Promise<void>((resolve) => {
    done = resolve;
  });
  consumer.subscribe('later', (message) => {
    const n = String((message.body as { n: number }).n);
    const due = dueAt.get(n);
    if (due === undefined) return;
    dueAt.delete(n);
    lateness.push(Date.now() - due);
    if (lateness.length === messages) done();
  });
  if (!startAfter) {
    consumer.start();
    // The consumer's first claim found nothing: it is polling, as an idle consumer does.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  const draw = seededRandom(7);
  for (let n = 0; n < messages; n += 1) {
    const delayMs = delayShiftMs + Math.round(200 + draw() * 2_800);
    // Before the publish: the database's now() (the row's start) is not earlier, so a handler
    // before this due time would be early by the database's clock too.
    dueAt.set(String(n), Date.now() + delayMs);
    await producer.publish(producerPool, 'later', { n }, { activateInMs: delayMs, autocommit: true });
    await new Promise((resolve) => setTimeout(resolve, Math.round(draw() * gapMs)));
  }
  if (startAfter) consumer.start();
  await allHandled;
  console.log(
    JSON.stringify({
      messages,
      notify,
      gapMs,
      start: startAfter ? 'after the publishes' : 'before',
      ...latenessSummary(lateness),
    }),
  );
} finally {
  await producer.stop();
  await producerPool.end();
  await consumer.stop();
  await server.stop();
}
