/**
 * `txoutbox run` as users run it: a real process with real children, driven by signals, scraped
 * over HTTP. Each test writes its own config file and its own outbox table.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { freePort } from '../../src/embedded/free-port.js';
import { useTestDatabase } from '../support/database.js';
import { promtool } from '../support/promtool.js';
import { runnerTestKit, type Sample, scrape, total } from '../support/runner-process.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const HANDLERS = fileURLToPath(new URL('../fixtures/runner/handlers.ts', import.meta.url));
const { dir, running, writeConfig, prepare, publishMany, handledCount, remainingRows, start, whenStarted } = runnerTestKit(db);

/** Whether process `pid` has a handler for SIGHUP (signal 1: bit 0 of /proc's SigCgt mask). */
function catchesSighup(pid: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** Every counter series (by name and labels) never decreases from one scrape to the next. */
function assertCountersMonotonic(scrapes: readonly Sample[][]): number {
  const last = new Map<string, number>();
  let checked = 0;
  for (const [index, samples] of scrapes.entries()) {
    for (const sample of samples) {
      const counterLike = sample.name.endsWith('_total') || sample.name.endsWith('_bucket') || sample.name.endsWith('_count');
      if (!counterLike) continue;
      const key = `${sample.name}${JSON.stringify(sample.labels)}`;
      const previous = last.get(key);
      if (previous !== undefined) {
        assert.ok(sample.value >= previous, `${key} went from ${previous} to ${sample.value} at scrape ${index}`);
        checked += 1;
      }
      last.set(key, sample.value);
    }
  }
  return checked;
}

describe('txoutbox run', () => {
  test('2 consumers × 2 processes, 2,000 messages, one child SIGKILLed: restarted, all handled, counters never decrease', async () => {
    const outbox = await prepare('run_kill');
    const config = writeConfig('kill', 'run_kill', {
      orders: { queue: 'orders', export: 'orders', processes: 2 },
      emails: { queue: 'emails', export: 'emails', processes: 2 },
    });
    const runner = start(config, { HANDLER_DELAY_MS: '8' });
    await whenStarted(runner, { orders: 2, emails: 2 });

    await publishMany(outbox, 'orders', 1000);
    await publishMany(outbox, 'emails', 1000);
    const scrapes: Sample[][] = [];
    const takeScrape = async () => {
      const samples = await scrape(runner.metricsUrl());
      scrapes.push(samples);
      const processes = total(samples, 'txoutbox_consumer_processes', { consumer: 'orders' });
      assert.ok(processes >= 1 && processes <= 2, `orders processes = ${processes}`);
      assert.equal(total(samples, 'txoutbox_consumer_processes', { consumer: 'emails' }), 2);
    };

    await waitFor(async () => (await handledCount('orders')) >= 150, { timeoutMs: 20_000, what: 'orders under way' });
    for (let i = 0; i < 5; i += 1) await takeScrape();
    // The supervisor reads the queue state itself: depth next to the children's series.
    const backlog = ['ready', 'leased'].reduce(
      (sum, state) => sum + total(scrapes.at(-1) ?? [], 'txoutbox_queue_messages', { queue: 'orders', state }),
      0,
    );
    assert.ok(backlog > 0, `orders backlog ${backlog}`);
    const [victim] = runner.livePids('orders');
    assert.ok(victim !== undefined);
    const { rows: killedAt } = await db.pool.query<{ now: Date }>('SELECT clock_timestamp() AS now');
    process.kill(victim, 'SIGKILL');
    await runner.waitForLog((line) => line.msg === 'consumer process exited' && line.pid === victim, 'the kill to be seen');
    while (scrapes.length < 20 || (await remainingRows('run_kill')) > 0) {
      await takeScrape();
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.ok(scrapes.length < 400, 'the run did not finish');
    }
    await waitFor(
      async () => total(await scrape(runner.metricsUrl()), 'txoutbox_consumer_processes', { consumer: 'orders' }) === 2,
      {
        what: 'the killed process to be replaced',
      },
    );
    // A scrape reflects events at most one flush interval old: wait that long for the last acks.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await takeScrape();

    assert.equal(await handledCount('orders'), 1000);
    assert.equal(await handledCount('emails'), 1000);
    assert.ok(scrapes.length >= 20);
    assert.ok(assertCountersMonotonic(scrapes) > 100);
    const final = scrapes.at(-1) ?? [];
    assert.equal(total(final, 'txoutbox_consumer_restarts_total', { consumer: 'orders' }), 1);
    assert.equal(total(final, 'txoutbox_consumer_restarts_total', { consumer: 'emails' }), 0);
    // Both children of emails reported everything (no kill). Orders may miss only what the killed
    // child handled within one flush interval (≤ 1 s) before it died.
    const acked = (consumer: string) =>
      total(final, 'txoutbox_received_processed_messages_total', { handler: consumer, status: 'acked' });
    assert.equal(acked('emails'), 1000);
    const { rows: unreported } = await db.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM handled WHERE pid = $1 AND at > $2::timestamptz - interval '1 second'",
      [victim, killedAt[0]?.now],
    );
    const lossBound = Number(unreported[0]?.n);
    assert.ok(
      acked('orders') >= 1000 - lossBound && acked('orders') <= 1000,
      `orders acked ${acked('orders')}, bound ${lossBound}`,
    );

    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('SIGTERM under load: exit 0 within the graceful timeout, no row lost, the rest handled on the next start', async () => {
    const outbox = await prepare('run_term');
    const config = writeConfig('term', 'run_term', { orders: { queue: 'term', export: 'orders', processes: 2 } });
    const runner = start(config, { HANDLER_DELAY_MS: '20' });
    await whenStarted(runner, { orders: 2 });
    await publishMany(outbox, 'term', 1500);
    await waitFor(async () => (await handledCount('orders')) >= 100, { timeoutMs: 20_000, what: 'handling under way' });

    const signalledAt = Date.now();
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
    assert.ok(Date.now() - signalledAt < 5000 + 3000, 'stopped within the graceful timeout');
    const handled = await handledCount('orders');
    const left = await remainingRows('run_term');
    assert.ok(left > 0, 'the run was stopped mid-way');
    assert.equal(handled + left, 1500, `${handled} handled + ${left} left`);

    const again = start(config, { HANDLER_DELAY_MS: '1' });
    await whenStarted(again, { orders: 2 });
    await waitFor(async () => (await remainingRows('run_term')) === 0, { timeoutMs: 30_000, what: 'the rest to drain' });
    assert.equal(await handledCount('orders'), 1500);
    again.child.kill('SIGINT');
    assert.deepEqual(await again.exited, { code: 0, signal: null });
  });

  test("the config's schemas reach every child: a body that fails them is rejected into the DLQ, never handled", async () => {
    // Review finding: a child's Outbox had no schemas, so a consumer run by the runner handed
    // invalid bodies to its handler, which README promises never happens on a queue with a schema.
    const outbox = await prepare('run_schemas');
    const config = writeConfig(
      'schemas',
      'run_schemas',
      { orders: { queue: 'orders', export: 'orders', processes: 1 } },
      { schemas: fileURLToPath(new URL('../fixtures/runner/schemas.ts', import.meta.url)) },
    );
    const runner = start(config);
    await whenStarted(runner, { orders: 1 });
    const ids = await inTransaction(db.pool, async (client) => [
      await outbox.publish(client, 'orders', { n: 1 }),
      await outbox.publish(client, 'orders', { n: 'not a number' }),
    ]);
    await waitFor(async () => (await remainingRows('run_schemas')) === 0, { timeoutMs: 20_000, what: 'both rows ended' });
    const { rows: handled } = await db.pool.query<{ id: string }>("SELECT id::text FROM handled WHERE consumer = 'orders'");
    assert.deepEqual(
      handled.map((row) => row.id),
      [ids[0]],
    );
    const dead = (await outbox.dlq.list({ queue: 'orders' })).rows;
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.failureReason, 'rejected');
    assert.equal(dead[0]?.lastExceptionType, 'InvalidBodyError');
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('SIGHUP applies a new process count; a broken config keeps the old one running; statsd lines flow', async () => {
    const outbox = await prepare('run_hup');
    const statsd = createSocket('udp4');
    const datagrams: string[] = [];
    statsd.on('message', (datagram) => datagrams.push(...datagram.toString().split('\n').filter(Boolean)));
    await new Promise<void>((resolve) => statsd.bind(0, '127.0.0.1', resolve));
    after(() => statsd.close());
    const statsdPort = statsd.address().port;
    const config = writeConfig('hup', 'run_hup', { orders: { queue: 'hup', export: 'orders', processes: 1 } }, { statsdPort });
    const runner = start(config);
    await whenStarted(runner, { orders: 1 });

    writeConfig('hup', 'run_hup', { orders: { queue: 'hup', export: 'orders', processes: 3 } }, { statsdPort });
    runner.child.kill('SIGHUP');
    await runner.waitForLog((line) => line.msg === 'config reloaded', 'the reload');
    await waitFor(
      async () => total(await scrape(runner.metricsUrl()), 'txoutbox_consumer_processes', { consumer: 'orders' }) === 3,
      {
        what: 'three processes',
      },
    );

    writeFileSync(config, 'consumers:\n  orders:\n    processes: two\n');
    runner.child.kill('SIGHUP');
    const failed = await runner.waitForLog((line) => line.msg.startsWith('config reload failed'), 'the failed reload');
    assert.match(String(failed.err), /processes/);
    await publishMany(outbox, 'hup', 50);
    await waitFor(async () => (await handledCount('orders')) === 50, { what: 'the old config to keep consuming' });
    assert.equal(total(await scrape(runner.metricsUrl()), 'txoutbox_consumer_processes', { consumer: 'orders' }), 3);
    await waitFor(() => datagrams.filter((line) => /^shop\.[\w-]+\.orders\.acked:1\|c$/.test(line)).length === 50, {
      what: 'a statsd acked line per message',
    });
    assert.ok(datagrams.some((line) => /^shop\.[\w-]+\.orders\.recorded:1\|c$/.test(line)));

    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('SIGHUP to the whole process group reloads; no consumer process dies or is restarted', async () => {
    const outbox = await prepare('run_group_hup');
    const config = writeConfig('group-hup', 'run_group_hup', { orders: { queue: 'group_hup', export: 'orders', processes: 2 } });
    const runner = start(config, {}, { detached: true });
    // What `kill -HUP -<pgid>` (or an init forwarding signals to the group) does. Each child exited
    // at once (Node's default for SIGHUP) and was restarted as a crash. Sent once both children
    // catch SIGHUP (/proc's SigCgt), which they do from their first module on, while they still
    // load (childExecArgv, tested on its own in runner-child-exec-argv.test.ts): Node's own start
    // before it is a window no handler can cover.
    await runner.waitForLog((line) => line.msg === 'runner started', 'the runner to start');
    const starting = runner.livePids('orders');
    await waitFor(() => starting.length === 2 && starting.every(catchesSighup), { what: 'both children to catch SIGHUP' });
    process.kill(-(runner.child.pid as number), 'SIGHUP');
    await runner.waitForLog((line) => line.msg === 'config reloaded', 'the reload');
    await whenStarted(runner, { orders: 2 });
    const pids = runner.livePids('orders');
    assert.equal(pids.length, 2);
    // A SIGHUP sent to a running child's own pid is ignored as well.
    await waitFor(() => pids.every((pid) => runner.logs.some((line) => line.pid === pid && line.msg === 'consumer running')), {
      what: 'both children running',
    });
    for (const pid of pids) process.kill(pid, 'SIGHUP');
    await publishMany(outbox, 'group_hup', 50);
    await waitFor(async () => (await handledCount('orders')) === 50, { what: 'every message handled' });
    const exited = runner.logs.filter((line) => line.msg === 'consumer process exited');
    assert.deepEqual(exited, [], 'no consumer process exited');
    assert.deepEqual(runner.livePids('orders').sort(), [...pids].sort());
    assert.equal(total(await scrape(runner.metricsUrl()), 'txoutbox_consumer_restarts_total', { consumer: 'orders' }), 0);

    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('a bad config starts nothing: exit 1 with the path of every error', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(
      path,
      `database:\n  url: \${RUNNER_TEST_DATABASE_URL}\nconsumers:\n  orders:\n    handler: ${HANDLERS}\n    queues: [q]\n    processes: two\n    concurency: 4\n`,
    );
    const runner = start(path);
    const { code } = await runner.exited;
    assert.equal(code, 1);
    const output = runner.otherOutput.join('\n');
    assert.match(output, /consumers\.orders\.processes: expected an integer >= 1, got "two"/);
    assert.match(output, /consumers\.orders\.concurency/);
    assert.match(output, /concurrency/);
    assert.equal(runner.logs.filter((line) => line.msg === 'consumer process started').length, 0);
  });
  test('a real Prometheus server scraping the runner counts exactly the messages handled', async (t) => {
    const tools = await promtool();
    if (tools.skip !== undefined) {
      t.skip(tools.skip);
      return;
    }
    const outbox = await prepare('run_prom');
    const runner = start(writeConfig('prom', 'run_prom', { orders: { queue: 'prom', export: 'orders', processes: 2 } }));
    await whenStarted(runner, { orders: 2 });
    const target = new URL(runner.metricsUrl()).host;
    const promDir = mkdtempSync(join(dir, 'prometheus-'));
    writeFileSync(
      join(promDir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: txoutbox\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    const promPort = await freePort();
    const server = spawn(
      tools.prometheus,
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: 'ignore' },
    );
    after(() => server.kill('SIGKILL'));
    const api = `http://127.0.0.1:${promPort}`;
    await waitFor(async () => (await fetch(`${api}/-/ready`).catch(() => undefined))?.ok === true, {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: 'Prometheus to be ready',
    });

    await publishMany(outbox, 'prom', 500);
    await waitFor(async () => (await remainingRows('run_prom')) === 0, { timeoutMs: 30_000, what: 'all handled' });
    const query = encodeURIComponent('sum(txoutbox_received_processed_messages_total{status="acked",handler="orders"})');
    let seen = -1;
    await waitFor(
      async () => {
        const body = (await (await fetch(`${api}/api/v1/query?query=${query}`)).json()) as {
          data: { result: { value: [number, string] }[] };
        };
        seen = Number(body.data.result[0]?.value[1] ?? -1);
        return seen === 500;
      },
      { timeoutMs: 20_000, intervalMs: 250, what: `Prometheus to see 500 handled (last: ${seen})` },
    );
    assert.equal(await handledCount('orders'), 500);
    server.kill('SIGTERM');
    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });

  test('a port in use fails the start with a typed error and starts no consumer', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    after(() => holder.close());
    const port = (holder.address() as { port: number }).port;
    const path = writeConfig('busy', 'run_busy', { orders: { queue: 'busy', export: 'orders', processes: 1 } });
    writeFileSync(path, readFileSync(path, 'utf8').replace('    port: 0', `    port: ${port}`));
    const runner = start(path);
    assert.equal((await runner.exited).code, 1);
    const output = runner.otherOutput.join('\n');
    // Named by the config key that set it, not the library option the runner passed it to.
    assert.match(output, new RegExp(`metrics\\.prometheus\\.port: 127\\.0\\.0\\.1:${port} is already in use`));
    assert.equal(runner.logs.filter((line) => line.msg === 'consumer process started').length, 0);
  });

  test('the database password never reaches the logs', () => {
    const password = new URL(db.url).password;
    assert.ok(password.length >= 4, 'the test server has a password');
    const everything = running.flatMap((runner) => [...runner.logs.map((line) => JSON.stringify(line)), ...runner.otherOutput]);
    assert.ok(everything.length > 50);
    for (const line of everything) assert.ok(!line.includes(password), `password leaked: ${line}`);
  });
});
