/**
 * A relay run with no code: `txoutbox run` with a `relays:` section, a real process with real
 * children relaying to a real local HTTP receiver through webhookSink. Rows published → received,
 * signed → deleted; a refusal → the DLQ with the receiver's reason; /readyz follows the receiver;
 * SIGTERM drains; a bad config starts nothing; the webhook secret appears in no output.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { useTestDatabase } from '../support/database.js';
import { type RunnerProcess, runnerTestKit, scrape, total } from '../support/runner-process.js';
import { waitFor } from '../support/wait-for.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const { dir, prepare, publishMany, remainingRows, start, whenStarted } = runnerTestKit(db);

const HOOK_SECRET = 'whsec-runner-relay-5b1f0c2e9a';
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const HANDLERS = fileURLToPath(new URL('../fixtures/runner/handlers.ts', import.meta.url));

function writeYaml(name: string, lines: readonly string[]): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** Everything the runner and its children printed, as one text. */
function allOutput(runner: RunnerProcess): string {
  return [...runner.logs.map((line) => JSON.stringify(line)), ...runner.otherOutput].join('\n');
}

/** The command line of a process, as `ps` shows it. */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return ''; // gone meanwhile
  }
}

async function readyz(runner: RunnerProcess): Promise<number> {
  return (await fetch(runner.metricsUrl().replace('/metrics', '/readyz'))).status;
}

describe('txoutbox run with relays:', () => {
  test('2 relay processes to a webhook: delivered and signed, refusals in the DLQ, /readyz follows the receiver, SIGTERM drains', async () => {
    const table = 'relay_run';
    const outbox = await prepare(table);
    const receiver = await WebhookReceiver.start();
    receiver.answer = (request, response) => {
      if (request.path === '/health') response.writeHead(200).end('ok');
      // Every 10th row is refused for good: a 4xx is terminal for the webhook sink.
      else if (/"n":\d*0}/.test(request.body.toString())) response.writeHead(422).end('no tens, please');
      else response.writeHead(204).end();
    };
    const config = writeYaml('relay-run', [
      'database:',
      '  url: ${RUNNER_TEST_DATABASE_URL}',
      `table: ${table}`,
      'gracefulTimeoutMs: 5000',
      'metrics:',
      '  prometheus:',
      '    port: 0',
      'relays:',
      '  hooks:',
      '    queues: [orders]',
      '    processes: 2',
      '    concurrency: 8',
      '    minPollIntervalMs: 50',
      '    maxPollIntervalMs: 200',
      '    sink:',
      '      type: webhook',
      `      url: ${receiver.url('/hooks/{queue}')}`,
      `      healthUrl: ${receiver.url('/health')}`,
      '      secret: ${HOOK_SECRET}',
      '      timeoutMs: 2000',
    ]);
    const runner = start(config, { HOOK_SECRET });
    try {
      await whenStarted(runner, { hooks: 2 });

      await publishMany(outbox, 'orders', 300);
      await waitFor(async () => (await remainingRows(table)) === 0, { timeoutMs: 30_000, what: 'every row relayed or ended' });

      const delivered = new Set<number>();
      for (const request of receiver.requests.filter((r) => r.path === '/hooks/orders')) {
        const { n } = JSON.parse(request.body.toString()) as { n: number };
        if (n % 10 === 0) continue;
        delivered.add(n);
        const [t, v1] = String(request.headers['x-txoutbox-signature']).split(',');
        const expected = createHmac('sha256', HOOK_SECRET)
          .update(`${t?.slice(2)}.`)
          .update(request.body)
          .digest('hex');
        assert.equal(v1, `v1=${expected}`, `the signature of row ${n} verifies with the secret from the environment`);
      }
      assert.equal(delivered.size, 270, 'every row but the refused ones reached the receiver');

      const dead = (await outbox.dlq.list({ queue: 'orders', limit: 100 })).rows;
      assert.equal(dead.length, 30);
      for (const row of dead) {
        assert.equal(row.failureReason, 'rejected');
        assert.equal(row.lastExceptionType, 'WebhookRefusedError');
        assert.match(row.lastException ?? '', /HTTP 422[\s\S]*no tens, please/);
      }

      // The relay's processes are supervised like consumers': counted, and their handled rows merged.
      // (children report every 500 ms: the last rows show in a later scrape)
      await waitFor(
        async () => {
          const samples = await scrape(runner.metricsUrl());
          assert.equal(total(samples, 'txoutbox_consumer_processes', { consumer: 'hooks' }), 2);
          return total(samples, 'txoutbox_received_processed_messages_total', { handler: 'hooks' }) >= 300;
        },
        { timeoutMs: 10_000, intervalMs: 200, what: 'the 300 rows counted in /metrics' },
      );

      // The receiver goes down: its health URL fails, the relay's processes stop counting as ready.
      const before = runner.logs.length;
      await receiver.stop();
      await waitFor(async () => (await readyz(runner)) === 503, { timeoutMs: 30_000, intervalMs: 200, what: '/readyz 503' });
      await runner.waitForLog((line) => line.msg.startsWith('consumer process is not up'), 'the not-up line', { since: before });
      await receiver.restart();
      await waitFor(async () => (await readyz(runner)) === 200, {
        timeoutMs: 30_000,
        intervalMs: 200,
        what: '/readyz 200 again',
      });

      const pids = [runner.child.pid ?? 0, ...runner.livePids('hooks')];
      assert.equal(pids.length, 3);
      for (const pid of pids) assert.ok(!commandLine(pid).includes(HOOK_SECRET), `the secret in the command line of ${pid}`);
      const metricsText = await (await fetch(runner.metricsUrl())).text();
      assert.ok(!metricsText.includes(HOOK_SECRET), 'the secret in /metrics');

      runner.child.kill('SIGTERM');
      assert.deepEqual(await runner.exited, { code: 0, signal: null });
      assert.ok(!allOutput(runner).includes(HOOK_SECRET), 'the secret in a log line');
      assert.ok(!JSON.stringify(dead).includes(HOOK_SECRET), 'the secret in a dead letter');
    } finally {
      if (runner.child.exitCode === null) runner.child.kill('SIGKILL');
      await receiver.stop();
    }
  });

  test('a bad relays: section starts nothing: every problem with its path, value and fix, no secret', async () => {
    const config = writeYaml('relay-bad', [
      'database:',
      '  url: ${RUNNER_TEST_DATABASE_URL}',
      'metrics:',
      '  prometheus:',
      '    port: 0',
      'consumers:',
      '  orders:',
      `    handler: ${HANDLERS}`,
      '    export: orders',
      '    queues: orders',
      'relays:',
      '  orders:',
      '    queues: orders',
      '    sink: { type: webhook, url: "http://127.0.0.1:9/", secret: "${HOOK_SECRET}" }',
      '  to-kafka:',
      '    queues: orders',
      '    sink: { type: kafka }',
      '  to-rabbit:',
      '    queues: orders',
      '    ackPolicy: manual',
      '    sink: { type: rabbitmq, url: "amqp://relay:${HOOK_SECRET}@127.0.0.1/", routingKey: "{nope}" }',
    ]);
    const runner = start(config, { HOOK_SECRET });
    const { code } = await runner.exited;
    assert.equal(code, 1);
    const output = allOutput(runner);
    assert.ok(!runner.logs.some((line) => line.msg === 'runner started' || line.msg === 'consumer process started'));
    assert.match(output, /relays\.orders: "orders" is also the name of consumers\.orders: .* Rename one of them\./);
    assert.match(output, /relays\.to-kafka\.sink\.type: expected one of webhook, nats, rabbitmq, redis, got "kafka"\./);
    assert.match(
      output,
      /relays\.to-rabbit\.ackPolicy: expected no ackPolicy in relay options, got "manual"\. A relay's outcome is the broker's/,
    );
    assert.match(output, /relays\.to-rabbit\.sink\.routingKey: expected a template .*got "\{nope\}"\. Correct or escape/);
    assert.ok(!output.includes(HOOK_SECRET), `the secret in the output: ${output}`);
  });

  test('a sink whose client library is not installed is a config error naming the fix', async () => {
    // Hides amqplib from module resolution, as in a project that did not install it.
    const hook = `data:text/javascript,${encodeURIComponent(`
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(\`
        export async function resolve(specifier, context, next) {
          if (specifier === 'amqplib') throw Object.assign(new Error("Cannot find package 'amqplib'"), { code: 'ERR_MODULE_NOT_FOUND' });
          return next(specifier, context);
        }\`));`)}`;
    const config = writeYaml('relay-peer', [
      'database:',
      '  url: ${RUNNER_TEST_DATABASE_URL}',
      'relays:',
      '  to-rabbit: { queues: orders, sink: { type: rabbitmq, url: "amqp://127.0.0.1/" } }',
    ]);
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', hook, 'src/cli/main.ts', 'run', config], {
      cwd: REPO,
      env: { ...process.env, RUNNER_TEST_DATABASE_URL: db.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1, output);
    assert.match(
      output,
      /relays\.to-rabbit\.sink\.type: the rabbitmq sink needs the optional peer dependency "amqplib", which is not installed\. Fix: npm install amqplib/,
    );
  });
});
