import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';
import { Registry } from 'prom-client';

import { InvalidOptionError, NoRetry, type Outbox } from '../../src/index.js';
import { queueStateCollector } from '../../src/prometheus/index.js';
import { buildThroughputSql } from '../../src/queues/throughput-sql.js';
import { ThroughputTally } from '../../src/queues/throughput-tally.js';
import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { StatementRunner } from '../../src/util/statement-runner.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { listenersOf, terminateListener } from '../support/listener-backend.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const HOUR = 3_600_000;

/** Empty fetches of `queue` seen by `log` so far. */
function emptyFetches(log: EventLog, queue: string): number {
  return log.of('fetched').filter((e) => e.queue === queue && e.count === 0).length;
}

/**
 * A consumer "process": an Outbox on its own pool (its own sessions), as another host would have,
 * consuming `queue` and counting what it handled.
 */
function consumer(table: string, queue: string, options: { pollMs?: number } = {}) {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  db.onCleanup(() => pool.end());
  const log = new EventLog();
  const outbox = newOutbox({ pool, table, recorder: log.recorder });
  const handled: unknown[] = [];
  const poll =
    options.pollMs === undefined ? FAST_POLL : { minPollIntervalMs: options.pollMs, maxPollIntervalMs: options.pollMs };
  outbox.subscribe(
    queue,
    (message) => {
      handled.push(message.body);
    },
    { concurrency: 2, fetchBatchSize: 10, ...poll },
  );
  return { outbox, log, handled };
}

/**
 * A consumer "process" (its own pool) with one slot and a batch of five on queue `q`, whose first
 * handler holds the slot until `release()`: five rows published, so one runs and four wait
 * buffered behind it once `leased()` says 5.
 */
async function oneRunningFourBuffered(operator: Outbox, table: string, options: { listenConnectionString?: string } = {}) {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  db.onCleanup(() => pool.end());
  const log = new EventLog();
  const outbox = newOutbox({ pool, table, recorder: log.recorder, ...options });
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => (release = resolve));
  const started: unknown[] = [];
  outbox.subscribe(
    'q',
    async (message) => {
      started.push(message.body);
      if (started.length === 1) await blocked;
    },
    { concurrency: 1, fetchBatchSize: 5, ...FAST_POLL },
  );
  await publishCommitted(
    operator,
    db.pool,
    'q',
    Array.from({ length: 5 }, (_, n) => ({ n })),
  );
  outbox.start();
  const leased = async () => (await operator.status({ queues: ['q'] })).queues[0]?.leased;
  return { log, started, release, leased };
}

describe('pause and resume', () => {
  test('a pause stops every process from claiming at its next claim; publishing goes on; resume delivers the backlog', async () => {
    const table = 'pause_everywhere';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    const a = consumer(table, 'orders');
    const b = consumer(table, 'orders');
    a.outbox.start();
    b.outbox.start();
    await publishCommitted(operator, db.pool, 'orders', [{ n: 'before' }]);
    await waitFor(() => a.handled.length + b.handled.length === 1, { what: 'the row published before the pause is handled' });

    const paused = await operator.pause('orders', { reason: 'INC-42: the payment provider is down' });
    assert.equal(paused.paused, true);
    assert.equal(paused.changed, true);
    assert.equal(paused.reason, 'INC-42: the payment provider is down');
    // Publishing is unaffected, and each publish's NOTIFY wakes both consumers: they claim, and
    // the claim takes nothing. Two empty fetches each after the publish committed prove it (the
    // first could have been in flight before the rows existed).
    const before = [emptyFetches(a.log, 'orders'), emptyFetches(b.log, 'orders')];
    await publishCommitted(
      operator,
      db.pool,
      'orders',
      Array.from({ length: 20 }, (_, n) => ({ n })),
    );
    await waitFor(() => emptyFetches(a.log, 'orders') >= before[0]! + 2 && emptyFetches(b.log, 'orders') >= before[1]! + 2, {
      what: 'both consumers claimed after the publish and got nothing',
    });
    assert.equal(a.handled.length + b.handled.length, 1, 'nothing was claimed while paused');
    const status = await operator.status({ queues: ['orders'] });
    assert.equal(status.queues[0]?.ready, 20);
    assert.equal(status.queues[0]?.paused, true);
    assert.equal(status.queues[0]?.pauseReason, 'INC-42: the payment provider is down');

    const resumed = await operator.resume('orders');
    assert.deepEqual(resumed, { queue: 'orders', paused: false, pausedAt: null, reason: null, changed: true });
    await waitFor(() => a.handled.length + b.handled.length === 21, { what: 'the backlog is handled after resume' });
  });

  test('resume wakes sleeping subscribers through NOTIFY: they claim at once, not at their next poll', async () => {
    const table = 'pause_wake';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    await operator.pause('q');
    // Polls once an hour: only a notification can make it claim within the test's timeout.
    const sleeper = consumer(table, 'q', { pollMs: HOUR });
    sleeper.outbox.start();
    await publishCommitted(operator, db.pool, 'q', [{ n: 1 }, { n: 2 }]);
    await waitFor(() => emptyFetches(sleeper.log, 'q') >= 2, {
      what: 'the publish woke it, and the claim found the queue paused',
    });
    await operator.resume('q');
    await waitFor(() => sleeper.handled.length === 2, { what: 'resume woke it' });
  });

  test('a subscription of several queues keeps claiming the others while one is paused', async () => {
    const table = 'pause_many';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    await operator.pause('slow');
    const log = new EventLog();
    const outbox = newOutbox({ pool: db.pool, table, recorder: log.recorder });
    const handled: string[] = [];
    outbox.subscribe(
      ['slow', 'fast'],
      (message) => {
        handled.push(message.queue);
      },
      FAST_POLL,
    );
    // The paused queue's rows are older: FIFO across queues would run them first.
    await publishCommitted(operator, db.pool, 'slow', [{ n: 1 }, { n: 2 }]);
    await publishCommitted(operator, db.pool, 'fast', [{ n: 3 }]);
    outbox.start();
    await waitFor(() => handled.length === 1, { what: 'the unpaused queue is consumed' });
    await waitFor(() => log.of('fetched').filter((e) => e.count === 0).length >= 2, { what: 'later claims found nothing' });
    assert.deepEqual(handled, ['fast']);
    await operator.resume('slow');
    await waitFor(() => handled.length === 3, { what: 'resume' });
  });

  test('a pause gives back the rows a subscriber had buffered but not started, in another process, uncounted; running handlers finish', async () => {
    const table = 'pause_buffer';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    const { log, started, release, leased } = await oneRunningFourBuffered(operator, table);
    await waitFor(async () => started.length === 1 && (await leased()) === 5, { what: 'one running, four buffered' });

    // From another Outbox (another pool): the signal reaches the consumer through NOTIFY only.
    await operator.pause('q', { reason: 'stop the bleeding' });
    await waitFor(async () => (await leased()) === 1, { what: 'the four buffered rows given back' });
    const { rows } = await db.pool.query<{ deliveries: number }>(
      `SELECT deliveries_count AS deliveries FROM ${table} WHERE acquired_token IS NULL ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((r) => r.deliveries),
      [0, 0, 0, 0],
      'released unstarted: their deliveries are not counted',
    );
    release();
    await log.waitFor('acked', 1);
    const fetches = emptyFetches(log, 'q');
    await publishCommitted(operator, db.pool, 'q', [{ n: 'late' }]);
    await waitFor(() => emptyFetches(log, 'q') >= fetches + 2, {
      what: 'claims after the running handler finished took nothing',
    });
    assert.equal(started.length, 1, 'no buffered row ran after the pause');

    await operator.resume('q');
    await waitFor(() => started.length === 6, { what: 'all six handled after resume' });
  });

  test('a pause the LISTEN connection missed (it was down) still gives the buffered rows back once it reconnects', async () => {
    const table = 'pause_missed';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // The consumer listens through a proxy, so the test decides when its reconnect gets through.
    const link = await TcpProxy.start(Number(new URL(db.url).port));
    db.onCleanup(() => link.close());
    const { started, release, leased } = await oneRunningFourBuffered(operator, table, {
      listenConnectionString: link.via(db.url),
    });
    await waitFor(async () => started.length === 1 && (await leased()) === 5 && (await listenersOf(db.pool, table)) === 1, {
      what: 'one running, four buffered, listening',
    });

    // The LISTEN backend ends while the proxy holds the news back: the pause's NOTIFY reaches nobody.
    // Frozen while it ran a read after connecting, it shows the read, not its LISTEN: thaw, try again.
    for (;;) {
      link.freeze();
      if (await terminateListener(db.pool, table)) break;
      link.thaw();
      await waitFor(async () => (await listenersOf(db.pool, table)) === 1, { what: 'listening again' });
    }
    await operator.pause('q');
    link.thaw();
    await waitFor(async () => (await leased()) === 1, { what: 'the four buffered rows given back after the reconnect' });
    assert.equal(started.length, 1, 'no buffered row ran after the pause');
    release();
    await operator.resume('q');
    await waitFor(() => started.length === 5, { what: 'all five handled after resume' });
  });

  test('rows of a claim that was in flight when the pause came go back too, unstarted', async () => {
    const table = 'pause_inflight';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // The consumer's first claim is held after the database answered: its rows are leased, the
    // subscriber has not seen them yet.
    let claimReturned!: () => void;
    const returned = new Promise<void>((resolve) => (claimReturned = resolve));
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    let claims = 0;
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 4 },
      () => Promise.resolve(),
      async () => {
        claims += 1;
        if (claims > 1) return;
        claimReturned();
        await gate;
      },
    );
    db.onCleanup(() => pool.end());
    const logger = newOutbox.logger;
    const log = new EventLog();
    const consumerOutbox = newOutbox({ pool, table, recorder: log.recorder });
    const started: unknown[] = [];
    consumerOutbox.subscribe('q', (message) => void started.push(message.body), {
      concurrency: 1,
      fetchBatchSize: 5,
      ...FAST_POLL,
    });
    await publishCommitted(
      operator,
      db.pool,
      'q',
      Array.from({ length: 5 }, (_, n) => ({ n })),
    );
    consumerOutbox.start();
    await returned;
    const leased = async () => (await operator.status({ queues: ['q'] })).queues[0]?.leased;
    assert.equal(await leased(), 5, 'claimed before the pause');

    const signals = logger.messages('debug').filter((m) => m === 'queue paused').length;
    await operator.pause('q');
    await waitFor(() => logger.messages('debug').filter((m) => m === 'queue paused').length > signals, {
      what: 'the consumer got the pause signal',
    });
    letGo();
    await waitFor(async () => (await leased()) === 0, { what: 'the five rows given back' });
    const fetches = emptyFetches(log, 'q');
    await waitFor(() => emptyFetches(log, 'q') >= fetches + 1, { what: 'a claim after the release took nothing' });
    assert.deepEqual(started, [], 'none of the claimed rows ran after the pause');
    await operator.resume('q');
    await waitFor(() => started.length === 5, { what: 'all five after resume' });
  });

  test('pause and resume are idempotent and say whether they changed anything; the first pause keeps its time and reason', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'pause_idem' });
    await outbox.migrate();
    const first = await outbox.pause('q', { reason: 'first' });
    const second = await outbox.pause('q', { reason: 'second' });
    assert.equal(second.changed, false);
    assert.equal(second.reason, 'first');
    assert.equal(second.pausedAt?.getTime(), first.pausedAt?.getTime());
    assert.equal((await outbox.pause('other')).reason, null);
    assert.equal((await outbox.resume('q')).changed, true);
    assert.equal((await outbox.resume('q')).changed, false);
    assert.equal((await outbox.resume('never-paused')).changed, false);
  });

  test('code upgraded before the schema: claims fail with an explanation naming the missing table and the upgrade; migrate() heals it', async () => {
    const table = 'pause_unmigrated';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // The schema of the version before: no outbox/0003.
    await db.pool.query(`DROP TABLE ${table}_paused, ${table}_stats`);
    await db.pool.query(`DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version = 3`, [table]);
    const logger = newOutbox.logger;
    const handled: unknown[] = [];
    const consumerOutbox = newOutbox({ pool: db.pool, table });
    consumerOutbox.subscribe('q', (m) => void handled.push(m.body), FAST_POLL);
    await publishCommitted(operator, db.pool, 'q', [{ n: 1 }]);
    consumerOutbox.start();
    await waitFor(() => logger.messages('error').some((m) => m.includes(`${table}_paused does not exist`)), {
      what: 'the explanation',
    });
    const explanation = logger.messages('error').find((m) => m.includes(`${table}_paused does not exist`)) ?? '';
    assert.match(explanation, /txoutbox migrate --print --since 2/);
    assert.deepEqual(handled, [], 'nothing claimed meanwhile; the row stays');
    assert.deepEqual((await operator.migrate()).applied, ['outbox/0003_queue_controls']);
    await waitFor(() => handled.length === 1, { what: 'claims work again once migrated, without a restart' });
  });

  test('bad arguments are typed errors naming the option', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'pause_bad' });
    await outbox.migrate();
    const cases: [() => Promise<unknown>, string][] = [
      [() => outbox.pause(''), 'queue'],
      [() => outbox.pause('q', { reason: 'x'.repeat(501) }), 'reason'],
      [() => outbox.pause('q', { reason: 42 as unknown as string }), 'reason'],
      [() => outbox.resume(7 as unknown as string), 'queue'],
      [() => outbox.status({ minutes: 0 }), 'minutes'],
      [() => outbox.status({ minutes: 61 }), 'minutes'],
      [() => outbox.status({ maxQueues: 1.5 }), 'maxQueues'],
      [() => outbox.status({ queues: 'orders' as unknown as string[] }), 'queues'],
      // Text PostgreSQL cannot store as given: a NUL came back as a raw 22021 error, an unpaired
      // surrogate was stored as U+FFFD.
      [() => outbox.pause('q', { reason: 'a\u0000b' }), 'reason'],
      [() => outbox.pause('q', { reason: 'half \ud800 a pair' }), 'reason'],
      // Unknown keys, as peek() refuses them: a typo was ignored (every queue reported, a pause
      // without its reason).
      [() => outbox.pause('q', { reasons: 'x' } as never), 'reasons'],
      [() => outbox.status({ queue: ['a'] } as never), 'queue'],
    ];
    for (const [call, option] of cases) {
      await assert.rejects(call, (error: unknown) => error instanceof InvalidOptionError && error.option === option, option);
    }
    const { rows } = await db.pool.query(`SELECT queue FROM pause_bad_paused`);
    assert.deepEqual(rows, [], 'no refused call paused anything');
  });

  test('the queue_paused gauge reads 1 for a paused queue, even an empty one, and 0 after resume', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'pause_metric' });
    await outbox.migrate();
    const registry = new Registry();
    queueStateCollector(outbox, { registry, cacheMs: 1000 });
    await outbox.pause('idle');
    const paused = await registry.getSingleMetricAsString('txoutbox_queue_paused');
    assert.match(paused, /txoutbox_queue_paused\{[^}]*queue="idle"[^}]*\} 1/);
  });
});

describe('outbox.status', () => {
  test('depth by state, DLQ, oldest age, pause and per-minute throughput summed over processes', async () => {
    const table = 'status_all';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // Two consumer processes of one queue: every row handled, every third one fails for good.
    const processes = [0, 1].map(() => {
      const pool = new pg.Pool({ connectionString: db.url, max: 4 });
      db.onCleanup(() => pool.end());
      const outbox = newOutbox({ pool, table });
      outbox.subscribe(
        'work',
        (message) => {
          if ((message.body as { n: number }).n % 3 === 0) throw new Error('poison');
        },
        { retry: new NoRetry(), ...FAST_POLL },
      );
      return outbox;
    });
    const bodies = Array.from({ length: 30 }, (_, n) => ({ n: n + 1 }));
    await publishCommitted(operator, db.pool, 'work', bodies);
    for (const outbox of processes) outbox.start();
    await waitFor(async () => (await operator.status({ queues: ['work'] })).queues[0]?.dlq === 10, {
      what: '10 rows in the DLQ',
    });
    await waitFor(async () => (await operator.status({ queues: ['work'] })).queues[0]?.ready === 0, { what: 'the rest handled' });
    // stop() writes each process's last counts: no wait for the periodic flush.
    await Promise.all(processes.map((outbox) => outbox.stop()));

    // Rows in the other states, on another queue: due now, due later, and a pause.
    await publishCommitted(operator, db.pool, 'backlog', [{ n: 1 }, { n: 2 }]);
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await operator.publish(client, 'backlog', { n: 3 }, { activateInMs: HOUR });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await operator.pause('backlog', { reason: 'investigating' });

    const report = await operator.status();
    assert.ok(Math.abs(report.at.getTime() - Date.now()) < 60_000, 'at is the database clock');
    const byQueue = new Map(report.queues.map((q) => [q.queue, q]));
    assert.deepEqual([...byQueue.keys()], ['backlog', 'work'], 'every queue with something to show, by name');

    const work = byQueue.get('work')!;
    assert.deepEqual([work.ready, work.scheduled, work.leased, work.dlq, work.paused], [0, 0, 0, 10, false]);
    assert.equal(work.throughput.length, 16, '15 whole minutes and the current one');
    const sum = (key: 'handled' | 'retried' | 'deadLettered') => work.throughput.reduce((s, m) => s + m[key], 0);
    assert.deepEqual([sum('handled'), sum('retried'), sum('deadLettered')], [20, 0, 10]);
    assert.ok(work.handledPerMinute > 0);
    const minutes = work.throughput.map((m) => m.minute.getTime());
    assert.ok(
      minutes.every((m, i) => i === 0 || m - minutes[i - 1]! === 60_000),
      'consecutive minutes, oldest first',
    );

    const backlog = byQueue.get('backlog')!;
    assert.deepEqual([backlog.ready, backlog.scheduled, backlog.leased, backlog.paused], [2, 1, 0, true]);
    assert.equal(backlog.pauseReason, 'investigating');
    assert.ok(backlog.oldestReadyAgeMs >= 0);
    assert.equal(backlog.handledPerMinute, 0);

    const narrow = await operator.status({ queues: ['work', 'never-used'], minutes: 3 });
    assert.deepEqual(
      narrow.queues.map((q) => [q.queue, q.throughput.length, q.ready]),
      [
        ['never-used', 4, 0],
        ['work', 4, 0],
      ],
    );
  });

  test('status({ queues }) reports exactly the queues named, empty ones included, however many others have rows', async () => {
    const operator = newOutbox({ pool: db.pool, table: 'status_named' });
    await operator.migrate();
    for (const queue of ['a', 'b', 'c', 'd']) await publishCommitted(operator, db.pool, queue, [{ queue }]);
    // Before, the named queues were filtered out of the ranked snapshot: an empty one ranked last
    // and fell past maxQueues.
    const report = await operator.status({ queues: ['zz-empty', 'b'], maxQueues: 2 });
    assert.deepEqual(
      report.queues.map((q) => [q.queue, q.ready]),
      [
        ['b', 1],
        ['zz-empty', 0],
      ],
    );
  });
});

describe('paused queues past maxQueues', () => {
  test('a paused, empty queue is reported by status() and the queue_paused gauge however many queues have rows', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'status_paused_cap' });
    await outbox.migrate();
    await publishCommitted(outbox, db.pool, 'a', [{ n: 1 }]);
    await outbox.pause('z', { reason: 'left on' });
    // Before, a paused queue without rows ranked last and fell past maxQueues once that many
    // queues had rows: the pause vanished from status and its gauge, and an alert on a pause left
    // on went blind.
    const report = await outbox.status({ maxQueues: 1 });
    assert.deepEqual(
      report.queues.map((q) => [q.queue, q.paused, q.pauseReason]),
      [['z', true, 'left on']],
    );
    const registry = new Registry();
    queueStateCollector(outbox, { registry, cacheMs: 1000, maxQueues: 1 });
    const paused = await registry.getSingleMetricAsString('txoutbox_queue_paused');
    assert.match(paused, /txoutbox_queue_paused\{[^}]*queue="z"[^}]*\} 1/);
  });
});

describe('throughput stats', () => {
  test('handledPerMinute averages the last five minutes whatever minutes the report shows', async () => {
    const table = 'status_rate_window';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // 10 handled in the current minute and in each of the four whole minutes before it.
    const { rows } = await db.pool.query<{ minute: Date }>(
      `INSERT INTO ${table}_stats (queue, minute, handled, retried, dead_lettered)
       SELECT 'work', date_trunc('minute', now()) - g * interval '1 minute', 10, 0, 0 FROM generate_series(0, 4) g
       RETURNING minute`,
    );
    for (const minutes of [1, 2, 3, 4, 15]) {
      const report = await operator.status({ queues: ['work'], minutes });
      const [work] = report.queues;
      assert.equal(work!.throughput.length, minutes + 1, `${minutes}: the minutes asked for and the current one`);
      // Computed from the report's own clock: a minute that turned since the insert is allowed for.
      const current = Math.floor(report.at.getTime() / 60_000) * 60_000;
      const inRate = rows.filter((r) => r.minute.getTime() >= current - 4 * 60_000).length;
      const expected = (10 * inRate) / (4 + (report.at.getTime() - current) / 60_000);
      // With minutes below 4 it averaged the minutes shown (minutes 1: 10 rows over ~1.5 minutes).
      assert.ok(Math.abs(work!.handledPerMinute - expected) < 1e-9, `${minutes}: ${work!.handledPerMinute} ≠ ${expected}`);
    }
    // The rate's earlier minutes do not make a queue reported: only throughput in the minutes shown.
    await db.pool.query(
      `INSERT INTO ${table}_stats (queue, minute, handled) VALUES ('earlier', date_trunc('minute', now()) - interval '3 minutes', 1)`,
    );
    assert.deepEqual(
      (await operator.status({ minutes: 1 })).queues.map((q) => q.queue),
      ['work'],
    );
    assert.deepEqual(
      (await operator.status({ minutes: 4 })).queues.map((q) => q.queue),
      ['earlier', 'work'],
    );
  });

  test('counts kept through a failing flush streak are written in the minutes of their outcomes, not the one of the flush', async () => {
    const table = 'status_late_flush';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    await db.pool.query(`CREATE FUNCTION ${table}_no_insert() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'stats refused for the test'; END $$`);
    await db.pool.query(
      `CREATE TRIGGER no_insert BEFORE INSERT ON ${table}_stats FOR EACH STATEMENT EXECUTE FUNCTION ${table}_no_insert()`,
    );
    // The tally alone, on a clock moved by hand: no waiting for minutes to pass.
    let clock = 1_000_000;
    const logger = new TestLogger();
    const tally = new ThroughputTally(
      new StatementRunner(db.pool, false, 5_000),
      buildThroughputSql(resolveSchemaNames(table, undefined)),
      logger,
      () => clock,
    );
    for (let n = 0; n < 3; n += 1) tally.count('work', 'handled');
    await tally.flush();
    assert.equal(logger.messages('warn').length, 1, 'the first flush failed');
    clock += 3 * 60_000;
    tally.count('work', 'handled');
    tally.count('work', 'retried');
    await db.pool.query(`DROP TRIGGER no_insert ON ${table}_stats`);
    await tally.stop();

    // Stamped with the database's minute of now() - age: three minutes apart, wherever in its minute now() is.
    const { rows } = await db.pool.query<{ back: number; handled: number; retried: number }>(
      `SELECT extract(epoch FROM date_trunc('minute', now()) - minute)::int / 60 AS back, handled::int, retried::int
       FROM ${table}_stats ORDER BY minute`,
    );
    assert.deepEqual(
      rows.map((r) => [r.handled, r.retried]),
      [
        [3, 0],
        [1, 1],
      ],
      'two minutes, not one',
    );
    assert.equal(rows[0]!.back - rows[1]!.back, 3, 'the first outcomes three minutes before the last');
    const work = (await operator.status({ queues: ['work'], minutes: 5 })).queues[0]!;
    assert.equal(
      work.throughput.reduce((sum, m) => sum + m.handled, 0),
      4,
    );

    // Past the hour status() shows, counts not yet written are dropped: the prune would delete them.
    const late = new ThroughputTally(
      new StatementRunner(db.pool, false, 5_000),
      buildThroughputSql(resolveSchemaNames(table, undefined)),
      logger,
      () => clock,
    );
    late.count('old', 'handled');
    clock += 62 * 60_000;
    await late.stop();
    const { rows: old } = await db.pool.query(`SELECT 1 FROM ${table}_stats WHERE queue = 'old'`);
    assert.deepEqual(old, []);
  });

  test('a prune that fails after the counts were added does not add them again', async () => {
    const table = 'status_prune_fails';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // The prune is the only DELETE on the stats table; the add is an upsert, which this leaves be.
    await db.pool.query(`CREATE FUNCTION ${table}_no_delete() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'prune refused for the test'; END $$`);
    await db.pool.query(
      `CREATE TRIGGER no_delete BEFORE DELETE ON ${table}_stats FOR EACH STATEMENT EXECUTE FUNCTION ${table}_no_delete()`,
    );
    const log = new EventLog();
    const consumerOutbox = newOutbox({ pool: db.pool, table, recorder: log.recorder });
    const handled: unknown[] = [];
    consumerOutbox.subscribe('work', (message) => void handled.push(message.body), FAST_POLL);
    await publishCommitted(operator, db.pool, 'work', [{ n: 1 }, { n: 2 }, { n: 3 }]);
    consumerOutbox.start();
    await waitFor(() => handled.length === 3, { what: 'three handled' });
    // stop() flushes (the first flush prunes, which fails) and flushes once more.
    await consumerOutbox.stop();

    const [work] = (await operator.status({ queues: ['work'], minutes: 2 })).queues;
    assert.equal(
      work!.throughput.reduce((s, m) => s + m.handled, 0),
      3,
      'each outcome counted once',
    );
  });
});
