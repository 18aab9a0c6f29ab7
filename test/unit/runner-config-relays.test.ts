/**
 * The `relays:` section of txoutbox.yaml: what loadRunnerConfig() accepts, the child spec it makes,
 * and every refusal with its path, value and fix. Sinks are judged by their factories' own
 * resolvers, which never connect: no broker is needed here.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { ConfigError } from '../../src/errors.js';
import { RELAY_DEFAULTS, relaySubscribeOptions } from '../../src/relay/relay-options.js';
import { RetryAfterFloor } from '../../src/relay/retry-after.js';
import { ExponentialRetry } from '../../src/retry/strategies.js';
import { subscribeOptionsFromSpec } from '../../src/runner/child/subscribe-options-from-spec.js';
import { consumerPlans } from '../../src/runner/config/consumer-plans.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { RELAY_SINK_TYPES } from '../../src/runner/config/relay-sink-types.js';
import { isRelaySpec } from '../../src/runner/protocol.js';

const dir = mkdtempSync(join(tmpdir(), 'txoutbox-relays-config-'));
mkdirSync(join(dir, 'handlers'));
writeFileSync(join(dir, 'handlers', 'orders.js'), 'export default async () => {};\n');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const HOOK_SECRET = 'whsec-0f3c9a77e1d24b58';
const RABBIT_PASSWORD = 'rabbit-pw-71c2e9';
let written = 0;

function configFile(lines: readonly string[]): string {
  written += 1;
  const path = join(dir, `relays-${written}.yaml`);
  writeFileSync(path, `${['database:', '  url: postgres://app:db-pw-secret@localhost/app', ...lines].join('\n')}\n`);
  return path;
}

/** A config with one relay `hooks` whose section lines are `relay` (indented under it). */
function relayConfig(relay: readonly string[], extra: readonly string[] = []): string {
  return configFile([...extra, 'relays:', '  hooks:', ...relay.map((line) => `    ${line}`)]);
}

const WEBHOOK_SINK = ['sink:', '  type: webhook', '  url: http://127.0.0.1:9/hooks/{queue}', '  secret: ${HOOK_SECRET}'];
const ENV = { HOOK_SECRET, RABBIT_PASSWORD };

async function configError(path: string, env: NodeJS.ProcessEnv = ENV): Promise<ConfigError> {
  try {
    await loadRunnerConfig(path, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('the config was accepted');
}

/** The issue at `path`; `placed`: its line in the file is known (false for a key the file lacks). */
function issueAt(error: ConfigError, path: string, placed = true): string {
  const issue = error.issues.find((i) => i.path === path);
  assert.ok(issue, `no issue at ${path}; issues: ${JSON.stringify(error.issues)}`);
  assert.equal(issue.line !== undefined, placed, `the issue at ${path} is placed in the file`);
  assert.ok(error.message.includes(`${path}: ${issue.message}`));
  return issue.message;
}

describe('relays: valid configs', () => {
  test('a runner of relays only: each relay becomes a child spec with its sink and options', async () => {
    const path = relayConfig(
      ['queues: [orders, orders, refunds]', 'processes: 2', ...WEBHOOK_SINK, 'concurrency: 16', 'maxDeliveries: 7'],
      [],
    );
    const config = await loadRunnerConfig(path, ENV);
    assert.equal(config.consumers.size, 0);
    const hooks = config.relays.get('hooks');
    assert.deepEqual(hooks, {
      name: 'hooks',
      queues: ['orders', 'refunds'],
      processes: 2,
      sink: { type: 'webhook', options: { url: 'http://127.0.0.1:9/hooks/{queue}', secret: HOOK_SECRET } },
      subscribe: { concurrency: 16, maxDeliveries: 7 },
    });
    const plan = consumerPlans(config).get('hooks');
    assert.ok(plan && isRelaySpec(plan.spec));
    assert.equal(plan.processes, 2);
    assert.equal(plan.spec.consumer, 'hooks');
    assert.deepEqual(plan.spec.sink, hooks?.sink);
    assert.equal('handlerPath' in plan.spec, false);
  });

  test('consumers and relays side by side; every sink type the runner knows', async () => {
    const path = configFile([
      'consumers:',
      '  orders: { handler: ./handlers/orders.js, queues: orders }',
      'relays:',
      '  to-rabbit:',
      '    queues: orders',
      '    sink: { type: rabbitmq, url: "amqp://relay:${RABBIT_PASSWORD}@127.0.0.1:5672/", exchange: events, routingKey: "orders.{queue}" }',
      '  to-nats:',
      '    queues: orders',
      '    sink: { type: nats, servers: nats://127.0.0.1:4222, subject: "events.{queue}", stream: EVENTS }',
      '  to-hooks:',
      '    queues: orders',
      '    sink: { type: webhook, url: "https://hooks.example/{queue}", terminalStatuses: [400, 410], timeoutMs: 2000 }',
      '  to-redis:',
      '    queues: orders',
      '    sink: { type: redis, url: "redis://:${RABBIT_PASSWORD}@127.0.0.1:6379/2", stream: "events:{queue}", maxLen: 100000 }',
    ]);
    const config = await loadRunnerConfig(path, ENV);
    assert.deepEqual([...consumerPlans(config).keys()], ['orders', 'to-rabbit', 'to-nats', 'to-hooks', 'to-redis']);
    assert.equal(config.relays.get('to-rabbit')?.sink.options.url, `amqp://relay:${RABBIT_PASSWORD}@127.0.0.1:5672/`);
  });

  test('the child spec round-trips to relay() options: RELAY_DEFAULTS under the file, retry rebuilt', async () => {
    const path = relayConfig([
      'queues: orders',
      ...WEBHOOK_SINK,
      'fetchBatchSize: 50',
      'retry: { strategy: exponential, initialDelayMs: 200, maxDelayMs: 5000, jitter: 0 }',
    ]);
    const plan = consumerPlans(await loadRunnerConfig(path, ENV)).get('hooks');
    assert.ok(plan);
    const spec = JSON.parse(JSON.stringify(plan.spec)) as typeof plan.spec; // what the child receives
    assert.ok(isRelaySpec(spec));
    const type = RELAY_SINK_TYPES[spec.sink.type];
    assert.ok(type);
    const sink = type.create(spec.sink.options);
    assert.equal(sink.name, 'webhook');
    const options = relaySubscribeOptions(sink, { ...subscribeOptionsFromSpec(spec.subscribe), name: spec.consumer });
    assert.equal(options.name, 'hooks');
    assert.equal(options.concurrency, RELAY_DEFAULTS.concurrency);
    assert.equal(options.fetchBatchSize, 50);
    // The file's strategy, under the relay's Retry-After floor (relay/retry-after.ts).
    assert.ok(options.retry instanceof RetryAfterFloor);
    const retry = options.retry.inner;
    assert.ok(retry instanceof ExponentialRetry && retry !== RELAY_DEFAULTS.retry);
    assert.equal(retry.initialDelayMs, 200);
    await sink.close();
  });
});

describe('relays: refusals name the path, the value and the fix', () => {
  test('an unknown sink type lists the known ones; a near miss gets a did-you-mean', async () => {
    const kafka = await configError(relayConfig(['queues: orders', 'sink: { type: kafka, brokers: [k1] }']));
    assert.equal(
      issueAt(kafka, 'relays.hooks.sink.type'),
      'expected one of webhook, nats, rabbitmq, redis, got "kafka". A sink of your own runs from code: outbox.relay(queues, sink).',
    );
    assert.equal(kafka.issues.length, 1, 'the options of an unknown type are not judged');
    const typo = await configError(relayConfig(['queues: orders', 'sink: { type: rabitmq, url: "amqp://h" }']));
    assert.match(issueAt(typo, 'relays.hooks.sink.type'), /got "rabitmq"\. Did you mean "rabbitmq"\?$/);
    const missing = await configError(relayConfig(['queues: orders']));
    assert.match(
      issueAt(missing, 'relays.hooks.sink'),
      /^missing, expected a section \{ type: webhook \| nats \| rabbitmq \| redis/,
    );
  });

  test("bad sink options are judged by the sink factory's own resolver, at their path", async () => {
    const error = await configError(
      configFile([
        'relays:',
        '  to-rabbit:',
        '    queues: orders',
        '    sink:',
        '      type: rabbitmq',
        '      url: "amqp://relay:${RABBIT_PASSWORD}@127.0.0.1:5672/"',
        '      routingKey: "orders.{nope}"',
        '      exchnage: events',
        '      socketOptions: { timeout: 5 }',
        '  to-hooks:',
        '    queues: orders',
        '    sink: { type: webhook, url: "ftp://hooks.example/x", timeoutMs: 0 }',
        '  to-redis:',
        '    queues: orders',
        '    sink: { type: redis, url: "redis://127.0.0.1:6379", maxLen: -5, approximate: true }',
      ]),
    );
    assert.match(issueAt(error, 'relays.to-redis.sink.maxLen'), /got -5/);
    assert.equal(
      error.issues.some((issue) => issue.path === 'relays.to-redis.sink.approximate'),
      false,
      'approximate is judged against a valid stand-in for maxLen, not reported for its neighbour',
    );
    assert.match(
      issueAt(error, 'relays.to-rabbit.sink.routingKey'),
      /^expected a template naming only \{queue\}.*got "orders\.\{nope\}"\. Correct or escape "\{nope\}"/,
    );
    assert.equal(issueAt(error, 'relays.to-rabbit.sink.exchnage'), 'unknown key; did you mean "exchange"?');
    assert.match(
      issueAt(error, 'relays.to-rabbit.sink.socketOptions'),
      /no timeout: the sink sets it, got 5\. .*connectTimeoutMs/,
    );
    assert.match(issueAt(error, 'relays.to-hooks.sink.url'), /got "ftp:\/\/hooks\.example\/x"/);
    assert.match(issueAt(error, 'relays.to-hooks.sink.timeoutMs'), /got 0/);
  });

  test('ackPolicy is refused with the reason; subscribe options are judged as relay() judges them', async () => {
    const error = await configError(
      relayConfig([
        'queues: orders',
        ...WEBHOOK_SINK,
        'ackPolicy: manual',
        'concurrency: 0',
        'retry: { strategy: exponential, jitter: 7 }',
        'handler: ./handlers/orders.js',
      ]),
    );
    assert.equal(
      issueAt(error, 'relays.hooks.ackPolicy'),
      `expected no ackPolicy in relay options, got "manual". A relay's outcome is the broker's: a confirm deletes the row, a refusal ends it into the DLQ, any other failure retries.`,
    );
    assert.match(issueAt(error, 'relays.hooks.concurrency'), /got 0/);
    assert.match(issueAt(error, 'relays.hooks.retry.jitter'), /got 7/);
    assert.match(issueAt(error, 'relays.hooks.handler'), /^unknown key; allowed here: queues, processes, sink, concurrency/);
  });

  test('a relay may not take a consumer’s name; names are labels', async () => {
    const error = await configError(
      configFile([
        'consumers:',
        '  orders: { handler: ./handlers/orders.js, queues: orders }',
        'relays:',
        '  orders: { queues: orders, sink: { type: webhook, url: "http://127.0.0.1:9/" } }',
        '  "to.rabbit": { queues: orders, sink: { type: webhook, url: "http://127.0.0.1:9/" } }',
      ]),
    );
    assert.equal(
      issueAt(error, 'relays.orders'),
      '"orders" is also the name of consumers.orders: consumers and relays share one namespace (the process, metric and log label). Rename one of them.',
    );
    assert.match(issueAt(error, 'relays["to.rabbit"]'), /a relay name is letters, digits, _ and -/);
  });

  test('an empty relays: section, and a config with neither consumers nor relays', async () => {
    assert.match(issueAt(await configError(configFile(['relays: {}'])), 'relays'), /at least one relay/);
    const neither = await configError(configFile([]));
    assert.match(issueAt(neither, 'consumers', false), /at least one consumer .*or a relays: section instead/);
  });

  test('secrets never appear in any issue, wherever they are written', async () => {
    const error = await configError(
      configFile([
        'relays:',
        '  hooks:',
        '    queues: orders',
        '    sink:',
        '      type: webhook',
        '      url: "http://user:${RABBIT_PASSWORD}@127.0.0.1:9/{bad}"',
        '      secert: ${HOOK_SECRET}',
        '      headers: { Authorization: "Bearer ${HOOK_SECRET}\\u0001" }',
        '  broker:',
        '    queues: orders',
        '    sink:',
        '      type: nats',
        '      servers: nats://127.0.0.1:4222',
        '      connectOptions: { token: "${HOOK_SECRET}", timeout: "${HOOK_SECRET}" }',
        '  hooks2:',
        '    queues: orders',
        '    sink: { type: webhook, url: "http://127.0.0.1:9/", secret: ["${HOOK_SECRET}", 12] }',
        '  rabbit:',
        '    queues: orders',
        '    sink: { type: rabbitmq, url: "amqp://relay:${RABBIT_PASSWORD}@127.0.0.1:notaport/" }',
      ]),
    );
    assert.ok(error.issues.length >= 5, JSON.stringify(error.issues));
    for (const text of [error.message, JSON.stringify(error.issues), String(error.stack)]) {
      assert.ok(!text.includes(HOOK_SECRET), `the webhook secret leaked: ${text}`);
      assert.ok(!text.includes(RABBIT_PASSWORD), `the broker password leaked: ${text}`);
    }
    assert.equal(issueAt(error, 'relays.hooks.sink.secert'), 'unknown key; did you mean "secret"?');
    issueAt(error, 'relays.broker.sink.connectOptions');
    issueAt(error, 'relays.hooks2.sink.secret');
    issueAt(error, 'relays.rabbit.sink.url');
  });
});
