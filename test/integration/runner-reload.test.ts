/**
 * `txoutbox run` reloads (SIGHUP) that go wrong: new processes that cannot start, and stop signals
 * that arrive while a reload is rolling out (issue 13, items 4 and 5). Real runner, real children.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { useTestDatabase } from '../support/database.js';
import { isAlive, type RunnerProcess, runnerTestKit, scrape, total } from '../support/runner-process.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const THROWS_ON_IMPORT = fileURLToPath(new URL('../fixtures/runner/throws-on-import.ts', import.meta.url));
const { writeConfig, prepare, publishMany, handledCount, start, whenStarted } = runnerTestKit(db);

/** Every pid the runner ever logged as started for `consumer`, in order. */
function startedPids(runner: RunnerProcess, consumer: string, since = 0): number[] {
  return runner.logs
    .slice(since)
    .filter((line) => line.msg === 'consumer process started' && line.consumer === consumer && typeof line.pid === 'number')
    .map((line) => line.pid as number);
}

/** Waits for the runner process to exit; a runner that never exits fails here, not at the test timeout. */
async function exitOf(runner: RunnerProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  try {
    await waitFor(() => runner.child.exitCode !== null || runner.child.signalCode !== null, { timeoutMs, intervalMs: 50 });
  } catch {
    const last = runner.logs.slice(-10).map((line) => JSON.stringify(line));
    throw new Error(`the runner did not exit within ${timeoutMs} ms; its last lines:\n${last.join('\n')}`);
  }
  return await runner.exited;
}

/** Every consumer process the runner started has exited, and none was started once stopping began. */
function assertNothingLeft(runner: RunnerProcess, consumer: string): void {
  const stopping = runner.logs.findIndex((line) => line.msg.startsWith('stopping:'));
  assert.ok(stopping >= 0, 'the runner logged that it was stopping');
  assert.deepEqual(startedPids(runner, consumer, stopping), [], 'no process forked after the stop signal');
  for (const pid of startedPids(runner, consumer)) assert.ok(!isAlive(pid), `consumer process ${pid} is still running`);
}

describe('txoutbox run: reloads that go wrong', () => {
  test('a reload whose new processes cannot start keeps the old ones consuming, and logs why', async () => {
    const outbox = await prepare('run_bad_reload');
    const orders = { queue: 'bad_reload', export: 'orders', processes: 2 } as const;
    const config = writeConfig('bad-reload', 'run_bad_reload', { orders });
    const runner = start(config);
    await whenStarted(runner, { orders: 2 });
    const original = runner.livePids('orders').sort();
    assert.equal(original.length, 2);

    const broken = [
      { what: 'a missing export', shape: { ...orders, export: 'missing' }, err: /has no function export "missing"/ },
      { what: 'a module that throws on import', shape: { ...orders, handler: THROWS_ON_IMPORT }, err: /refuses to load/ },
    ];
    for (const { what, shape, err } of broken) {
      const since = runner.logs.length;
      writeConfig('bad-reload', 'run_bad_reload', { orders: shape });
      runner.child.kill('SIGHUP');
      const stopped = await runner.waitForLog(
        (line) => line.msg.startsWith('reload stopped for this consumer'),
        `the rollout to ${what} to stop`,
        { since, timeoutMs: 60_000 },
      );
      assert.equal(stopped.consumer, 'orders');
      assert.match(String(stopped.err), err);
      assert.equal(stopped.code, 1);
      const summary = await runner.waitForLog((line) => line.msg.startsWith('config reloaded, except'), 'the reload summary', {
        since,
      });
      assert.deepEqual(summary.failed, ['orders']);

      // The old processes run on and consume; the one replacement tried was not restarted.
      await db.pool.query('TRUNCATE handled');
      await publishMany(outbox, 'bad_reload', 20);
      await waitFor(async () => (await handledCount('orders')) === 20, { timeoutMs: 60_000, what: `handling after ${what}` });
      const { rows } = await db.pool.query<{ pid: number }>('SELECT DISTINCT pid FROM handled ORDER BY pid');
      for (const { pid } of rows)
        assert.ok(original.includes(pid), `handled by ${pid}, not one of the old processes ${original.join(', ')}`);
      assert.deepEqual(runner.livePids('orders').sort(), original);
      assert.equal(startedPids(runner, 'orders', since).length, 1, `one replacement was tried for ${what}, not a crash loop`);
      const samples = await scrape(runner.metricsUrl());
      assert.equal(total(samples, 'txoutbox_consumer_processes', { consumer: 'orders' }), 2);
      assert.equal(total(samples, 'txoutbox_consumer_restarts_total', { consumer: 'orders' }), 0);
      assert.equal((await fetch(runner.metricsUrl().replace('/metrics', '/readyz'))).status, 200);
    }

    // Fixed: the same rollout replaces both processes, one at a time.
    const since = runner.logs.length;
    writeConfig('bad-reload', 'run_bad_reload', { orders: { ...orders, concurrency: 2 } });
    runner.child.kill('SIGHUP');
    // Two replacements, each a cold start (tsx compiles the child) and a drain: generous on 2 busy cores.
    await runner.waitForLog((line) => line.msg === 'config reloaded', 'the fixed reload', { since, timeoutMs: 60_000 });
    const replaced = runner.livePids('orders');
    assert.equal(replaced.length, 2);
    for (const pid of replaced) assert.ok(!original.includes(pid), `${pid} is a new process`);

    runner.child.kill('SIGTERM');
    assert.deepEqual(await exitOf(runner, 30_000), { code: 0, signal: null });
  });

  for (const [index, moment] of [
    { name: 'while its replacement is starting', log: 'applying the new config to a consumer' },
    { name: 'while the process it replaced drains', log: 'new consumer process ready; draining the one it replaces' },
  ].entries()) {
    test(`SIGTERM during a reload (${moment.name}): nothing is forked after it, every process drains, the runner exits 0`, async () => {
      const table = `run_term_reload_${index}`;
      const outbox = await prepare(table);
      // A lease well past the handlers' 1.5 s, so that rows stay with the process that claimed them.
      const orders = { queue: 'term_reload', export: 'orders', processes: 2, leaseTtlMs: 30_000 } as const;
      const config = writeConfig(`term-reload-${index}`, table, { orders }, { gracefulTimeoutMs: 10_000 });
      // Handlers that take 1.5 s: the old processes have work in flight when they are asked to drain.
      const runner = start(config, { HANDLER_DELAY_MS: '1500' });
      await whenStarted(runner, { orders: 2 });
      await publishMany(outbox, 'term_reload', 60);
      await waitFor(async () => (await handledCount('orders')) >= 2, { timeoutMs: 60_000, what: 'handlers in flight' });

      const since = runner.logs.length;
      writeConfig(`term-reload-${index}`, table, { orders: { ...orders, concurrency: 2 } }, { gracefulTimeoutMs: 10_000 });
      runner.child.kill('SIGHUP');
      await runner.waitForLog((line) => line.msg === moment.log, moment.name, { since, timeoutMs: 60_000 });
      runner.child.kill('SIGTERM');

      assert.deepEqual(await exitOf(runner, 30_000), { code: 0, signal: null });
      assertNothingLeft(runner, 'orders');
      assert.ok(runner.logs.some((line) => line.msg === 'runner stopped'));
    });
  }

  test('a second SIGTERM while draining kills the consumers and exits at once', async () => {
    const outbox = await prepare('run_second_term');
    // A graceful timeout longer than the test waits: only the second signal can end this run in time.
    const config = writeConfig(
      'second-term',
      'run_second_term',
      // A lease as long: a handler that outlives its lease is abandoned, which would end the drain early.
      { orders: { queue: 'second_term', export: 'orders', processes: 2, leaseTtlMs: 300_000 } },
      { gracefulTimeoutMs: 120_000 },
    );
    const runner = start(config, { HANDLER_DELAY_MS: '120000' });
    await whenStarted(runner, { orders: 2 });
    await publishMany(outbox, 'second_term', 10);
    await waitFor(async () => (await handledCount('orders')) >= 1, { timeoutMs: 60_000, what: 'a handler in flight' });

    runner.child.kill('SIGTERM');
    await runner.waitForLog((line) => line.msg.startsWith('stopping:'), 'the first signal to be taken');
    runner.child.kill('SIGTERM');

    // Well before the 120 s graceful timeout: only the kill can have ended it.
    assert.deepEqual(await exitOf(runner, 60_000), { code: 1, signal: null });
    assertNothingLeft(runner, 'orders');
    assert.ok(runner.logs.some((line) => line.msg.startsWith('killing every consumer process now')));
  });

  // Reproduction (review finding): the handlers were installed only once the start was done, so a
  // SIGHUP (or SIGTERM) while the runner dialled its database took the default action and ended it.
  // A frozen proxy in front of PostgreSQL holds the start at its first query.
  for (const signal of ['SIGHUP', 'SIGTERM'] as const) {
    test(`a ${signal} while the runner starts is held until it is up: ${signal === 'SIGHUP' ? 'a reload' : 'a drain'}, never the default action`, async (t) => {
      const table = `run_start_${signal.toLowerCase()}`;
      const outbox = await prepare(table);
      const config = writeConfig(`start-${signal}`, table, { orders: { queue: table, export: 'orders', processes: 1 } });
      const proxy = await TcpProxy.start(Number(new URL(db.url).port));
      t.after(() => proxy.close());
      proxy.freeze();
      const runner = start(config, { RUNNER_TEST_DATABASE_URL: proxy.via(db.url) });
      await waitFor(() => proxy.connections > 0, { timeoutMs: 60_000, what: 'the runner to dial its database' });
      runner.child.kill(signal);
      const taken =
        signal === 'SIGHUP'
          ? 'SIGHUP while starting: reloading the config once started'
          : 'stop signal while starting: stopping as soon as the runner is up';
      await runner.waitForLog((line) => line.msg === taken, 'the signal taken while starting');
      proxy.thaw();
      if (signal === 'SIGHUP') {
        await runner.waitForLog(
          (line) => line.msg === 'SIGHUP while starting: reloading the config once started',
          'the SIGHUP taken',
        );
        await whenStarted(runner, { orders: 1 });
        await runner.waitForLog((line) => line.msg === 'config reloaded', 'the reload once started', { timeoutMs: 60_000 });
        await publishMany(outbox, table, 5);
        await waitFor(async () => (await handledCount('orders')) === 5, { timeoutMs: 60_000, what: 'the messages handled' });
        runner.child.kill('SIGTERM');
      }
      assert.deepEqual(await exitOf(runner, 60_000), { code: 0, signal: null });
      assert.ok(runner.logs.some((line) => line.msg === 'runner stopped'));
      assertNothingLeft(runner, 'orders');
    });
  }
});
