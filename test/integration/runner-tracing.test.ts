/**
 * `tracing:` in txoutbox.yaml: `txoutbox run` children export OpenTelemetry spans over OTLP/HTTP to
 * a real local HTTP server (the test's collector), which parses the JSON export. A message
 * published here with a producer span (tracingMiddleware) and consumed by a child yields a
 * `process` span in the same trace, a child of the publish span; relays too. The sampler ratio
 * decides only traces that start in the child; an endpoint that is down loses spans, never rows;
 * without the SDK packages the config names them and the install command.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

import { freePort } from '../../src/embedded/free-port.js';
import { Outbox } from '../../src/index.js';
import { tracingMiddleware } from '../../src/opentelemetry/index.js';
import { watchExports } from '../../src/runner/tracing/export-watch.js';
import { useTestDatabase } from '../support/database.js';
import { useOpenTelemetryGlobals } from '../support/opentelemetry-globals.js';
import { type RunnerProcess, runnerTestKit } from '../support/runner-process.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';
import { type ReceivedRequest, WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const { dir, prepare, remainingRows, start, whenStarted } = runnerTestKit(db);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TRACED = fileURLToPath(new URL('../fixtures/runner/traced-handlers.ts', import.meta.url));
const OTLP_TOKEN = 'otlp-token-7c41e09b2d';
/** OTLP's Span.SpanKind: SPAN_KIND_PRODUCER 4, SPAN_KIND_CONSUMER 5. */
const CONSUMER = 5;

// The publishing side: the API's globals as an application's SDK setup installs them.
useOpenTelemetryGlobals();

interface OtlpValue {
  readonly stringValue?: string;
  readonly intValue?: number | string;
}
interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: readonly { key: string; value: OtlpValue }[];
}
interface OtlpExport {
  readonly resourceSpans: readonly {
    resource: { attributes: readonly { key: string; value: OtlpValue }[] };
    scopeSpans: readonly { spans: readonly OtlpSpan[] }[];
  }[];
}

/** A span as the collector got it, with its resource's service.name. */
interface Exported extends OtlpSpan {
  readonly serviceName: string | undefined;
  attribute(key: string): string | undefined;
}

/** Every span of every export the collector received on `/v1/traces`. */
function exportedSpans(requests: readonly ReceivedRequest[]): Exported[] {
  const spans: Exported[] = [];
  for (const request of requests.filter((r) => r.path === '/v1/traces')) {
    const body = JSON.parse(request.body.toString('utf8')) as OtlpExport;
    for (const resourceSpans of body.resourceSpans) {
      const serviceName = resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue;
      for (const { spans: scoped } of resourceSpans.scopeSpans) {
        for (const span of scoped) {
          spans.push({
            ...span,
            serviceName,
            attribute: (key) => {
              const value = span.attributes.find((a) => a.key === key)?.value;
              return value?.stringValue ?? (value?.intValue === undefined ? undefined : String(value.intValue));
            },
          });
        }
      }
    }
  }
  return spans;
}

/** The collector: answers each export as an OTLP/HTTP server does (200, an empty JSON response). */
async function startCollector(): Promise<WebhookReceiver> {
  const collector = await WebhookReceiver.start();
  collector.answer = (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  };
  return collector;
}

/** A publisher whose spans stay in memory: the test knows each producer span's ids. */
function publisher(table: string, sampled = true) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
    ...(sampled ? {} : { sampler: new AlwaysOffSampler() }),
  });
  const outbox = new Outbox({ pool: db.pool, table, middlewares: [tracingMiddleware({ tracerProvider: provider })] });
  return {
    publish: (queue: string, body: unknown) => inTransaction(db.pool, (client) => outbox.publish(client, queue, body)),
    span: (name: string): ReadableSpan => {
      const found = exporter.getFinishedSpans().filter((span) => span.name === name);
      assert.equal(found.length, 1, `one ${name} span`);
      return found[0]!;
    },
  };
}

function writeYaml(name: string, lines: readonly string[]): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

function baseConfig(table: string): string[] {
  return [
    'database:',
    '  url: ${RUNNER_TEST_DATABASE_URL}',
    `table: ${table}`,
    'gracefulTimeoutMs: 5000',
    'metrics:',
    '  prometheus:',
    '    port: 0',
  ];
}

function tracedConsumer(name: string, queue: string): string[] {
  return [
    `  ${name}:`,
    `    handler: ${TRACED}`,
    '    export: traced',
    `    queues: [${queue}]`,
    '    minPollIntervalMs: 50',
    '    maxPollIntervalMs: 200',
  ];
}

function allOutput(runner: RunnerProcess): string {
  return [...runner.logs.map((line) => JSON.stringify(line)), ...runner.otherOutput].join('\n');
}

/** SIGTERM: each child drains, then flushes its spans before it exits. */
async function drain(runner: RunnerProcess): Promise<void> {
  runner.child.kill('SIGTERM');
  assert.deepEqual(await runner.exited, { code: 0, signal: null });
}

/** The one exported span named `name` (of `service`, when given). */
function one(spans: readonly Exported[], name: string, service?: string): Exported {
  const found = spans.filter((span) => span.name === name && (service === undefined || span.serviceName === service));
  assert.equal(found.length, 1, `one ${name} span; exported: ${spans.map((s) => `${s.serviceName}/${s.name}`).join(', ')}`);
  return found[0]!;
}

describe('txoutbox run with tracing:', () => {
  test('publish span → process span in the child, same trace; the handler’s span and a relay’s join; the auth header sent, never printed', async () => {
    const table = 'trace_run';
    await prepare(table);
    const collector = await startCollector();
    const config = writeYaml('trace-run', [
      ...baseConfig(table),
      'tracing:',
      `  endpoint: ${collector.url('/v1/traces')}`,
      '  headers:',
      '    authorization: Bearer ${OTLP_TOKEN}',
      'consumers:',
      ...tracedConsumer('orders', 'orders'),
      'relays:',
      '  hooks:',
      '    queues: [hooks]',
      '    minPollIntervalMs: 50',
      '    maxPollIntervalMs: 200',
      `    sink: { type: webhook, url: "${collector.url('/hooks/{queue}')}", timeoutMs: 2000 }`,
    ]);
    const runner = start(config, { OTLP_TOKEN });
    const app = publisher(table);
    try {
      await whenStarted(runner, { orders: 1, hooks: 1 });
      await app.publish('orders', { total: 42 });
      await app.publish('hooks', { ping: true });
      await waitFor(async () => (await remainingRows(table)) === 0, { timeoutMs: 20_000, what: 'both rows handled' });
      await drain(runner);
    } finally {
      await collector.stop();
    }

    const exports = collector.requests.filter((r) => r.path === '/v1/traces');
    assert.ok(exports.length > 0, 'the children exported');
    for (const request of exports) {
      assert.equal(request.method, 'POST');
      assert.equal(request.headers['content-type'], 'application/json');
      assert.equal(request.headers.authorization, `Bearer ${OTLP_TOKEN}`);
    }
    assert.ok(!allOutput(runner).includes(OTLP_TOKEN), 'the header value is in no log line');
    const spans = exportedSpans(collector.requests);

    // The consumer: a child of the publish span, in its trace; service.name is the consumer's name.
    const publishOrders = app.span('publish orders').spanContext();
    const processOrders = one(spans, 'process orders');
    assert.equal(processOrders.serviceName, 'orders');
    assert.equal(processOrders.kind, CONSUMER);
    assert.equal(processOrders.traceId, publishOrders.traceId);
    assert.equal(processOrders.parentSpanId, publishOrders.spanId);
    assert.equal(processOrders.attribute('messaging.system'), 'outbox');
    assert.equal(processOrders.attribute('messaging.outbox.subscriber'), 'orders');
    assert.equal(processOrders.attribute('messaging.outbox.status'), 'acked');
    // The handler's own span, on the global tracer: the child registered its provider and context manager.
    const charge = one(spans, 'charge card');
    assert.equal(charge.traceId, publishOrders.traceId);
    assert.equal(charge.parentSpanId, processOrders.spanId);

    // The relay: its send is a handler run of its subscription (named after the relay), traced the same way,
    // and the row's trace context reaches the broker as stored (the publish span's).
    const publishHooks = app.span('publish hooks').spanContext();
    const processHooks = one(spans, 'process hooks');
    assert.equal(processHooks.serviceName, 'hooks');
    assert.equal(processHooks.traceId, publishHooks.traceId);
    assert.equal(processHooks.parentSpanId, publishHooks.spanId);
    assert.equal(processHooks.attribute('messaging.outbox.subscriber'), 'hooks');
    const [relayed] = collector.requests.filter((r) => r.path === '/hooks/hooks');
    assert.match(String(relayed?.headers.traceparent), new RegExp(`^00-${publishHooks.traceId}-${publishHooks.spanId}-01$`));
  });

  test('sampler: 0 samples no trace that starts in the child, and keeps the decision a row carries (skipUnsampledParents too)', async () => {
    const table = 'trace_ratio';
    const plain = await prepare(table);
    const collector = await startCollector();
    const config = writeYaml('trace-ratio', [
      ...baseConfig(table),
      'tracing:',
      `  endpoint: ${collector.url('/v1/traces')}`,
      '  serviceName: shop-consumers',
      '  sampler: 0',
      // Under the child's parent-based sampler, skipping the unsampled rows' spans exports the same.
      '  skipUnsampledParents: true',
      'consumers:',
      ...tracedConsumer('orders', 'orders'),
    ]);
    const runner = start(config);
    const sampledApp = publisher(table);
    const unsampledApp = publisher(table, false);
    try {
      await whenStarted(runner, { orders: 1 });
      // Rows with no trace (ratio 0: not sampled), one whose publisher did not sample (kept so),
      // and one whose publisher did (kept so: the one trace exported, the test's positive control).
      await inTransaction(db.pool, (client) => plain.publishBatch(client, 'orders', [{ n: 1 }, { n: 2 }, { n: 3 }]));
      await unsampledApp.publish('orders', { n: 4 });
      await sampledApp.publish('orders', { n: 5 });
      await waitFor(async () => (await remainingRows(table)) === 0, { timeoutMs: 20_000, what: 'every row handled' });
      await drain(runner);
    } finally {
      await collector.stop();
    }
    const setup = runner.logs.find((line) => line.msg === 'tracing to OTLP/HTTP');
    assert.equal(setup?.skipUnsampledParents, true, 'the child built tracingMiddleware with the option');
    const spans = exportedSpans(collector.requests);
    const sampledTrace = sampledApp.span('publish orders').spanContext().traceId;
    assert.deepEqual(spans.map((span) => [span.name, span.traceId, span.serviceName]).sort(), [
      ['charge card', sampledTrace, 'shop-consumers'],
      ['process orders', sampledTrace, 'shop-consumers'],
    ]);
  });

  test('an endpoint that is down loses spans, never a row: every message handled, a warning with its origin, the drain bounded and exit 0', async () => {
    const table = 'trace_down';
    const plain = await prepare(table);
    const port = await freePort(); // nothing listens there
    const config = writeYaml('trace-down', [
      ...baseConfig(table),
      'tracing:',
      `  endpoint: http://127.0.0.1:${port}/v1/traces?api-key=\${OTLP_TOKEN}`,
      'consumers:',
      ...tracedConsumer('orders', 'orders'),
    ]);
    const runner = start(config, { OTLP_TOKEN });
    await whenStarted(runner, { orders: 1 });
    await inTransaction(db.pool, (client) => plain.publishBatch(client, 'orders', [{ n: 1 }, { n: 2 }, { n: 3 }]));
    await waitFor(async () => (await remainingRows(table)) === 0, { timeoutMs: 20_000, what: 'every row handled' });
    await drain(runner);
    // The exporter retries a refused connection for longer than the child's flush budget, so the
    // drain ends on the budget's warning (an export that failed before the drain says so too).
    const warned = runner.logs.filter((line) => line.level === 'warn' && line.msg.startsWith('tracing'));
    assert.ok(warned.length >= 1, allOutput(runner));
    for (const line of warned) assert.equal(line.endpoint, `http://127.0.0.1:${port}`, 'the origin only: no path, no query');
    assert.ok(!allOutput(runner).includes(OTLP_TOKEN), 'the key in the query string is in no log line');
  });

  test('without the OpenTelemetry packages: a config error naming them and the install command, nothing started', async () => {
    const config = writeYaml('trace-peers', [
      'database:',
      '  url: ${RUNNER_TEST_DATABASE_URL}',
      'tracing:',
      '  endpoint: http://127.0.0.1:4318/v1/traces',
      'consumers:',
      ...tracedConsumer('orders', 'orders'),
    ]);
    const node = ['--import', 'tsx', '--import', './test/fixtures/without-optional-peers.mjs', 'src/cli/main.ts', 'run', config];
    const child = spawn(process.execPath, node, {
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
      /trace-peers\.yaml:3:1: tracing: needs the optional peer dependencies "@opentelemetry\/api", "@opentelemetry\/core", "@opentelemetry\/resources", "@opentelemetry\/sdk-trace-base", "@opentelemetry\/context-async-hooks", "@opentelemetry\/exporter-trace-otlp-http", which are not installed\. Fix: npm install @opentelemetry\/api@~1\.9\.0 @opentelemetry\/core@\^2\.12\.1 /,
    );
    assert.doesNotMatch(output, /ERR_MODULE_NOT_FOUND|\n\s+at /, 'no stack trace');
  });
});

describe('watchExports (a child’s exporter)', () => {
  test('one warning when exports start failing, one when they recover, never one per batch; the origin only', async () => {
    const collector = await startCollector();
    let status = 400; // not retryable for the OTLP exporter: the export fails at once
    collector.answer = (_request, response) => {
      response.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    };
    const logger = new TestLogger();
    const exporter = new OTLPTraceExporter({ url: collector.url('/v1/traces?key=k3y-in-query') });
    const watched = watchExports(exporter, logger, `http://127.0.0.1:${collector.port}`, ExportResultCode.SUCCESS);
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(watched)] });
    const exportOne = async (name: string) => {
      provider.getTracer('test').startSpan(name).end();
      // Rejects when the export failed (SimpleSpanProcessor passes the error on): that is the case under test.
      await provider.forceFlush().catch(() => undefined);
    };
    try {
      await exportOne('a');
      await exportOne('b');
      status = 200;
      await exportOne('c');
      await exportOne('d');
    } finally {
      await provider.shutdown();
      await collector.stop();
    }
    assert.equal(collector.requests.length, 4);
    assert.deepEqual(logger.messages('warn'), [
      'tracing export failed: spans are dropped until the endpoint accepts them',
      'tracing export recovered',
    ]);
    for (const entry of logger.entries) assert.equal(entry.fields.endpoint, `http://127.0.0.1:${collector.port}`);
    assert.equal(logger.entries[0]?.fields.spans, 1);
  });
});
