/**
 * Does every panel of deploy/grafana/txoutbox-dashboard.json show data against a real system?
 * (architecture/grafana.md). Starts embedded PostgreSQL, a real `txoutbox run` (a consumer whose
 * handler fails one message in four and rejects one in ten, a webhook relay whose receiver refuses
 * one row in ten and fails one in ten, DLQ retention), a publisher with prometheusMiddleware on
 * its own /metrics, and a real Prometheus (scripts/ensure-prometheus.sh) scraping both every
 * second. After `seconds` of traffic it runs every panel query through Prometheus' HTTP API, with
 * Grafana's variables put in as Grafana would, and prints which return series.
 *
 *   npm run check:grafana-dashboard -- [seconds=45]
 *
 * Exit code 1 when a panel whose data this traffic must produce returns nothing. Panels of events
 * this traffic does not cause (lost leases, publish errors, drain timeouts, retention failures)
 * are listed as expected-empty.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';
import { Registry } from 'prom-client';

import { startEmbeddedPostgres } from '../src/embedded/index.js';
import { Outbox } from '../src/index.js';
import { prometheusMiddleware, serveMetrics } from '../src/prometheus/index.js';

const seconds = Number(process.argv[2] ?? 45);
const REPO = fileURLToPath(new URL('..', import.meta.url));
/** Panels whose events this traffic does not cause. */
const EXPECTED_EMPTY = new Set([
  'Leases lost and publish errors/A',
  'Leases lost and publish errors/B',
  'Runners up and drain timeouts/B',
  'DLQ retention/B',
]);

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

const ensured = execFileSync('bash', [join(REPO, 'scripts/ensure-prometheus.sh')], { encoding: 'utf8' });
const prometheusBin = /^prometheus=(.+)$/m.exec(ensured)?.[1]?.trim() ?? 'prometheus';
const dir = mkdtempSync(join(tmpdir(), 'txoutbox-grafana-'));
const server = await startEmbeddedPostgres();
const stops: (() => Promise<void> | void)[] = [];
let failed = false;
try {
  const outbox = new Outbox({ connectionString: server.connectionString });
  await outbox.migrate();
  stops.push(() => outbox.stop());
  const registry = new Registry();
  const publisher = new Outbox({ connectionString: server.connectionString, middlewares: [prometheusMiddleware({ registry })] });
  stops.push(() => publisher.stop());
  const appMetrics = await serveMetrics({ registry, port: 0 });
  stops.push(() => appMetrics.close());

  // The webhook receiver: 1 row in 10 refused for good (422), 1 in 10 failed (503, retried).
  let received = 0;
  const receiver = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      received += 1;
      response.writeHead(received % 10 === 0 ? 422 : received % 10 === 5 ? 503 : 204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  stops.push(
    () =>
      new Promise<void>((resolve) => {
        receiver.close(() => {
          resolve();
        });
      }),
  );
  const hookPort = (receiver.address() as AddressInfo).port;

  writeFileSync(
    join(dir, 'handler.mjs'),
    `let n = 0;
export default async function handle(message, ctx) {
  n += 1;
  await new Promise((resolve) => setTimeout(resolve, 2 + (n % 20)));
  ctx.stats.incr('handled');
  if (n % 10 === 3) return ctx.reject('not this one');
  if (n % 4 === 0) throw new Error('transient');
}
`,
  );
  const metricsPort = 19464 + Math.floor(Math.random() * 500);
  writeFileSync(
    join(dir, 'txoutbox.yaml'),
    [
      'database:',
      `  url: ${server.connectionString}`,
      'dlqRetention: 1h',
      'gracefulTimeoutMs: 2000',
      'metrics:',
      '  prometheus:',
      `    port: ${metricsPort}`,
      'consumers:',
      '  orders:',
      `    handler: ${join(dir, 'handler.mjs')}`,
      '    queues: [orders, refunds]',
      '    processes: 2',
      '    minPollIntervalMs: 50',
      '    maxPollIntervalMs: 500',
      '    maxDeliveries: 3',
      '    retry: { strategy: constant, delayMs: 200, maxAttempts: 2 }',
      'relays:',
      '  hooks:',
      '    queues: [events]',
      '    minPollIntervalMs: 50',
      '    maxPollIntervalMs: 500',
      '    retry: { strategy: constant, delayMs: 200, maxAttempts: 3 }',
      '    sink:',
      '      type: webhook',
      `      url: http://127.0.0.1:${hookPort}/hooks/{queue}`,
    ].join('\n'),
  );
  const runner = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', join(dir, 'txoutbox.yaml')], {
    cwd: REPO,
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  stops.push(
    () =>
      new Promise<void>((resolve) => {
        runner.once('exit', () => {
          resolve();
        });
        runner.kill('SIGTERM');
      }),
  );

  const promPort = 19990 + Math.floor(Math.random() * 9);
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      `  - job_name: txoutbox-run\n    static_configs: [{ targets: ['127.0.0.1:${metricsPort}'] }]`,
      `  - job_name: app\n    static_configs: [{ targets: ['127.0.0.1:${appMetrics.port}'] }]`,
    ].join('\n'),
  );
  const prometheus = spawn(
    prometheusBin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: 'ignore' },
  );
  stops.push(() => {
    prometheus.kill('SIGTERM');
  });

  log(`traffic for ${seconds} s: publishing to orders, refunds (consumer) and events (relay)`);
  const pool = new pg.Pool({ connectionString: server.connectionString, max: 2 });
  stops.push(() => pool.end());
  const until = Date.now() + seconds * 1000;
  let published = 0;
  let killed = false;
  while (Date.now() < until) {
    if (!killed && Date.now() > until - (seconds * 1000) / 2) {
      // One child SIGKILLed half-way: the restarts panel has a restart to show.
      const children = readFileSync(`/proc/${runner.pid}/task/${runner.pid}/children`, 'utf8').trim().split(' ');
      if (children[0] !== undefined && children[0] !== '') process.kill(Number(children[0]), 'SIGKILL');
      killed = true;
    }
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const queue of ['orders', 'refunds', 'events'] as const) await publisher.publish(client, queue, { n: published });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    published += 1;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  log(`published ${published * 3} rows; querying every panel`);

  const dashboard = JSON.parse(readFileSync(join(REPO, 'deploy/grafana/txoutbox-dashboard.json'), 'utf8')) as {
    panels: { type: string; title: string; targets?: { refId: string; expr: string }[] }[];
  };
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      const expr = target.expr
        .replaceAll('${prefix}', 'txoutbox')
        .replaceAll('$__rate_interval', '15s')
        .replace(/\$(job|queue|consumer)\b/g, '.*');
      const url = `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`;
      const body = (await (await fetch(url)).json()) as { status: string; data?: { result: unknown[] }; error?: string };
      const key = `${panel.title}/${target.refId}`;
      const series = body.data?.result.length ?? 0;
      const verdict =
        body.status !== 'success'
          ? `ERROR ${body.error}`
          : series > 0
            ? `${series} series`
            : EXPECTED_EMPTY.has(key)
              ? 'empty (expected)'
              : 'EMPTY';
      if (verdict.startsWith('ERROR') || verdict === 'EMPTY') failed = true;
      log(`  ${key.padEnd(50)} ${verdict}`);
    }
  }
} finally {
  for (const stop of stops.reverse()) await stop();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
