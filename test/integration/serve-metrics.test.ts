import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import { ConstantRetry, InvalidOptionError, type Outbox, PortInUseError } from '../../src/index.js';
import {
  OPENMETRICS_CONTENT_TYPE,
  PROMETHEUS_CONTENT_TYPE,
  prometheusMiddleware,
  prometheusRecorder,
  queueStateCollector,
  type ServedMetrics,
  serveMetrics,
} from '../../src/prometheus/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { checkMetrics, promtool } from '../support/promtool.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const servers: ServedMetrics[] = [];
db.onCleanup(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function served(options: Parameters<typeof serveMetrics>[0]): Promise<ServedMetrics> {
  const server = await serveMetrics(options);
  servers.push(server);
  return server;
}

class PaymentDeclined extends Error {}

/** Both seams and the collector on ONE registry, after real traffic: 1,000 distinct messages. */
async function trafficked(table: string): Promise<{ outbox: Outbox; registry: Registry; ids: string[] }> {
  const registry = new Registry();
  const log = new EventLog();
  const outbox = newOutbox({
    pool: db.pool,
    table,
    recorder: [log.recorder, prometheusRecorder({ registry })],
    middlewares: [prometheusMiddleware({ registry })],
  });
  await outbox.migrate();
  queueStateCollector(outbox, { registry });
  outbox.subscribe('orders', () => undefined, { name: 'orders-handler', concurrency: 20, ...FAST_POLL });
  outbox.subscribe(
    'payments',
    (message) => {
      if (message.attemptsCount === 0) throw new PaymentDeclined(`declined ${message.id}`);
    },
    { name: 'payments-handler', concurrency: 20, retry: new ConstantRetry({ delayMs: 10 }), ...FAST_POLL },
  );
  const ids = [
    ...(await publishCommitted(
      outbox,
      db.pool,
      'orders',
      Array.from({ length: 900 }, (_, i) => ({ order: i })),
    )),
    ...(await publishCommitted(
      outbox,
      db.pool,
      'payments',
      Array.from({ length: 100 }, (_, i) => ({ payment: i })),
    )),
  ];
  // Left in the table for the queue-state series: a delayed message on a queue nobody consumes.
  await publishCommitted(outbox, db.pool, 'audit', [{ later: true }]);
  outbox.start();
  await log.waitFor('acked', 1000, 30_000);
  return { outbox, registry, ids };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; body: string }> {
  const response = await fetch(url, { headers });
  return { status: response.status, type: response.headers.get('content-type') ?? '', body: await response.text() };
}

/** Sample lines (not comments) of an exposition. */
function sampleLines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('serveMetrics', () => {
  test('/metrics after real traffic: both seams and the collector on one registry; text, OpenMetrics, promtool', async (t) => {
    const { outbox, registry, ids } = await trafficked('sm_traffic');
    const server = await served({ registry, outbox, port: 0 });
    assert.equal(server.host, '127.0.0.1');
    assert.ok(server.port > 0);
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);

    const text = await get(`${server.url}/metrics`);
    assert.equal(text.status, 200);
    assert.equal(text.type, PROMETHEUS_CONTENT_TYPE);
    const body = text.body;
    for (const [name, type] of [
      ['txoutbox_received_messages_total', 'counter'],
      ['txoutbox_received_processed_messages_duration_seconds', 'histogram'],
      ['txoutbox_published_messages_total', 'counter'],
      ['txoutbox_outbox_fetches_total', 'counter'],
      ['txoutbox_message_age_seconds', 'histogram'],
      ['txoutbox_queue_messages', 'gauge'],
      ['txoutbox_queue_oldest_ready_age_seconds', 'gauge'],
      ['txoutbox_queue_dlq_messages', 'gauge'],
      ['txoutbox_queue_paused', 'gauge'],
      ['txoutbox_queue_state_up', 'gauge'],
      ['txoutbox_queue_state_errors_total', 'counter'],
    ]) {
      assert.match(body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
    }
    assert.match(
      body,
      /^txoutbox_received_processed_messages_total\{app_name="txoutbox",broker="outbox",handler="orders-handler",status="acked"\} 900$/m,
    );
    assert.match(
      body,
      /^txoutbox_received_processed_messages_exceptions_total\{app_name="txoutbox",broker="outbox",handler="payments-handler",exception_type="PaymentDeclined"\} 100$/m,
    );
    assert.match(body, /^txoutbox_queue_messages\{app_name="txoutbox",broker="outbox",queue="audit",state="ready"\} 1$/m);
    assert.match(body, /^txoutbox_queue_messages\{app_name="txoutbox",broker="outbox",queue="orders",state="ready"\} 0$/m);
    assert.match(body, /^txoutbox_queue_state_up\{app_name="txoutbox",broker="outbox"\} 1$/m);
    // Every sample line parses: name{labels} value.
    for (const line of sampleLines(body)) {
      assert.match(
        line,
        /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+|NaN$/,
        line,
      );
    }

    // Cardinality: 1,000 distinct message ids left no trace in any label.
    const lines = sampleLines(body);
    assert.ok(lines.length < 400, `${lines.length} series after 1,000 messages`);
    // Histogram bounds (le="5") are numbers as ids are: every other label value is compared.
    const labelValues = new Set([...body.matchAll(/([a-z_]+)="([^"]*)"/g)].filter((m) => m[1] !== 'le').map((m) => m[2]));
    assert.ok(
      ids.every((id) => !labelValues.has(id)),
      'no message id as a label value',
    );
    assert.ok(![...labelValues].some((v) => v?.includes('declined')), 'no exception message as a label value');

    const om = await get(`${server.url}/metrics`, {
      accept:
        'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
    });
    assert.equal(om.status, 200);
    assert.equal(om.type, OPENMETRICS_CONTENT_TYPE);
    assert.match(om.body, /# EOF\n?$/);
    assert.match(om.body, /^# TYPE txoutbox_received_messages counter$/m);
    assert.match(om.body, /^# TYPE txoutbox_queue_messages gauge$/m);
    // The user's registry keeps printing Prometheus text with _total (render.ts never touches it).
    assert.match(await registry.metrics(), /^# TYPE txoutbox_received_messages_total counter$/m);
    assert.equal((await get(`${server.url}/metrics`, { accept: 'text/plain' })).type, PROMETHEUS_CONTENT_TYPE);

    const tool = await promtool();
    if (tool.skip !== undefined) {
      t.skip(tool.skip);
      return;
    }
    const checked = await checkMetrics(tool.path, body);
    assert.equal(checked.code, 0, `promtool check metrics:\n${checked.output}`);
  });

  test('/healthz 200; /readyz follows outbox.ping() and turns 503 after outbox.stop()', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'sm_ready' });
    await outbox.migrate();
    const server = await served({ registry: new Registry(), outbox, port: 0 });
    assert.deepEqual(await get(`${server.url}/healthz`), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
    assert.equal((await get(`${server.url}/readyz`)).status, 200);
    await outbox.stop();
    assert.equal((await get(`${server.url}/readyz`)).status, 503);
    assert.equal((await get(`${server.url}/healthz`)).status, 200, 'alive even when not ready');
  });

  test('/readyz uses ready() before the outbox: false, a throw and a rejection are 503; no probe at all is 200', async () => {
    let answer: unknown = true;
    const server = await served({
      registry: new Registry(),
      port: 0,
      ready: () => {
        if (answer instanceof Error) throw answer;
        return answer as boolean;
      },
    });
    assert.equal((await get(`${server.url}/readyz`)).status, 200);
    answer = false;
    assert.equal((await get(`${server.url}/readyz`)).status, 503);
    answer = new Error('boom');
    assert.equal((await get(`${server.url}/readyz`)).status, 503);
    const rejecting = await served({ registry: new Registry(), port: 0, ready: () => Promise.reject(new Error('db down')) });
    assert.equal((await get(`${server.url}/readyz`)).status, 503);
    assert.equal((await get(`${rejecting.url}/readyz`)).status, 503);
    const plain = await served({ registry: new Registry(), port: 0 });
    assert.equal((await get(`${plain.url}/readyz`)).status, 200);
  });

  test('404 for other paths, 405 for methods other than GET (HEAD is GET without a body)', async () => {
    const server = await served({ registry: new Registry(), port: 0 });
    for (const path of ['/', '/metric', '/metrics/x', '/favicon.ico'])
      assert.equal((await get(`${server.url}${path}`)).status, 404, path);
    assert.equal((await get(`${server.url}/metrics?name[]=x`)).status, 200, 'a query string is ignored');
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const response = await fetch(`${server.url}/metrics`, { method });
      assert.equal(response.status, 405, method);
      assert.equal(response.headers.get('allow'), 'GET, HEAD');
      await response.text();
    }
    const head = await fetch(`${server.url}/healthz`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  test('bound to loopback: a request whose Host is not a loopback name (DNS rebinding) is 403 on every path', async () => {
    const server = await served({ registry: new Registry(), port: 0, ready: () => true });
    const port = new URL(server.url).port;
    const withHost = (path: string, host: string): Promise<number> =>
      new Promise((resolve, reject) => {
        httpGet({ host: '127.0.0.1', port, path, headers: { host } }, (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        }).on('error', reject);
      });
    // A page on evil.example whose DNS answer turned into 127.0.0.1: same-origin to a browser.
    for (const path of ['/metrics', '/readyz', '/healthz']) assert.equal(await withHost(path, `evil.example:${port}`), 403, path);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, '127.0.0.1', `[::1]:${port}`])
      assert.equal(await withHost('/metrics', host), 200, host);
    // Bound to every interface (a pod's address): any Host, as Prometheus in a cluster sends.
    const open = await served({ registry: new Registry(), host: '0.0.0.0', port: 0 });
    assert.equal(
      await new Promise<number>((resolve, reject) => {
        httpGet(
          { host: '127.0.0.1', port: new URL(open.url).port, path: '/metrics', headers: { host: 'pod-10-1-2-3:9464' } },
          (response) => {
            response.resume();
            resolve(response.statusCode ?? 0);
          },
        ).on('error', reject);
      }),
      200,
    );
  });

  test('registry as a function, built per scrape (sync or async); a throwing one is a 500, the server lives on', async () => {
    let scrapes = 0;
    const build = () => {
      scrapes += 1;
      const registry = new Registry();
      registry.setDefaultLabels({ scrape: String(scrapes) });
      return registry;
    };
    const server = await served({ registry: build, port: 0 });
    await get(`${server.url}/metrics`);
    await get(`${server.url}/metrics`);
    assert.equal(scrapes, 2);
    const asyncServer = await served({ registry: () => Promise.resolve(build()), port: 0 });
    assert.equal((await get(`${asyncServer.url}/metrics`)).status, 200);
    const failing = await served({
      registry: () => {
        throw new Error('merge failed');
      },
      port: 0,
    });
    const response = await get(`${failing.url}/metrics`);
    assert.equal(response.status, 500);
    assert.match(response.body, /merge failed/);
    assert.equal((await get(`${failing.url}/healthz`)).status, 200);
  });

  test('a port in use rejects with PortInUseError and leaves the port to its owner; close() frees it', async () => {
    const first = await served({ registry: new Registry(), port: 0 });
    await assert.rejects(
      serveMetrics({ registry: new Registry(), port: first.port }),
      (error: unknown) =>
        error instanceof PortInUseError &&
        error.code === 'PORT_IN_USE' &&
        error.port === first.port &&
        error.host === '127.0.0.1' &&
        error.message.startsWith('serveMetrics.port:'),
    );
    assert.equal((await get(`${first.url}/healthz`)).status, 200, 'the first server still owns the port');

    // A foreign (non-HTTP) server holding the port: it keeps it, and nothing of ours is left listening.
    const foreign: Server = createServer((socket) => socket.end('foreign\n'));
    await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
    const port = (foreign.address() as { port: number }).port;
    await assert.rejects(serveMetrics({ registry: new Registry(), port }), PortInUseError);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
      socket.on('end', () => {
        resolve(data);
      });
      socket.on('error', reject);
    });
    assert.equal(reply, 'foreign\n');
    await new Promise<void>((resolve) =>
      foreign.close(() => {
        resolve();
      }),
    );

    // close() frees the port, even with a keep-alive connection open; a second close() is a no-op.
    await get(`${first.url}/metrics`);
    await first.close();
    await first.close();
    const again = await served({ registry: new Registry(), port: first.port });
    assert.equal(again.port, first.port);
    assert.equal((await get(`${again.url}/healthz`)).status, 200);
  });

  test('options are validated (option, value, fix); the host defaults to 127.0.0.1, the port to 9464', async () => {
    const registry = new Registry();
    const bad: [Record<string, unknown>, string][] = [
      [{ registry, port: -1 }, 'serveMetrics.port'],
      [{ registry, port: 65536 }, 'serveMetrics.port'],
      [{ registry, port: 80.5 }, 'serveMetrics.port'],
      [{ registry, port: '9464' }, 'serveMetrics.port'],
      [{ registry, host: '' }, 'serveMetrics.host'],
      [{ registry, host: 42 }, 'serveMetrics.host'],
      [{ registry, ready: true }, 'serveMetrics.ready'],
      [{ registry, outbox: {} }, 'serveMetrics.outbox'],
      [{ registry, prot: 1 }, 'serveMetrics.prot'],
      [{ registry: {} }, 'serveMetrics.registry'],
      [{}, 'serveMetrics.registry'],
    ];
    for (const [options, option] of bad) {
      await assert.rejects(
        serveMetrics(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
    await assert.rejects(serveMetrics({ registry, host: '203.0.113.7', port: 0 }), (error: unknown) => {
      return error instanceof InvalidOptionError && error.option === 'serveMetrics.host' && error.fix !== undefined;
    });
    // The defaults, where 9464 is free on this machine.
    const server = await serveMetrics({ registry }).catch((error: unknown) => {
      if (error instanceof PortInUseError) return undefined;
      throw error;
    });
    if (server !== undefined) {
      await server.close(); // at once: other test files may want 9464
      assert.deepEqual([server.host, server.port, server.url], ['127.0.0.1', 9464, 'http://127.0.0.1:9464']);
    }
  });
});
