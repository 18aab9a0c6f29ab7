import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { ConfigError } from '../../src/errors.js';
import { consumerPlans } from '../../src/runner/config/consumer-plans.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { leaseTtlMsOf } from '../../src/runner/runner-dashboard.js';
import { get } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { runnerTestKit } from '../support/runner-process.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const { dir, writeConfig, prepare, start, whenStarted } = runnerTestKit(db);
const TOKEN = 'runner-dashboard-token-0123456789';

let written = 0;
/** A minimal valid config plus `dashboard` lines (the handler file need only exist). */
function configWith(dashboard: string[], metricsPort = 9464): string {
  written += 1;
  const handler = join(dir, 'handler.js');
  writeFileSync(handler, 'export default async () => {};\n');
  const path = join(dir, `dashboard-config-${written}.yaml`);
  writeFileSync(
    path,
    [
      'database:',
      '  url: postgres://app:pw-secret@localhost/app',
      'metrics:',
      '  prometheus:',
      `    port: ${metricsPort}`,
      'consumers:',
      '  orders:',
      `    handler: ${handler}`,
      '    queues: [orders]',
      ...dashboard,
      '',
    ].join('\n'),
  );
  return path;
}

async function issues(path: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    await loadRunnerConfig(path, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('the config was accepted');
}

function cell(html: string, testid: string): string {
  return new RegExp(`data-testid="${testid}"[^>]*>([^<]*)<`).exec(html)?.[1]?.trim() ?? '';
}

describe('dashboard: the runner’s `dashboard:` key', () => {
  test('absent or enabled: false, no dashboard; a section alone enables it with the defaults', async () => {
    assert.equal((await loadRunnerConfig(configWith([]), {})).dashboard, undefined);
    assert.equal((await loadRunnerConfig(configWith(['dashboard:', '  enabled: false']), {})).dashboard, undefined);
    assert.deepEqual((await loadRunnerConfig(configWith(['dashboard:', '  port: 0']), {})).dashboard, {
      host: '127.0.0.1',
      port: 0,
      readOnly: false,
    });
    const full = await loadRunnerConfig(
      configWith(['dashboard:', '  host: 0.0.0.0', '  port: 8080', '  token: ${TXOUTBOX_DASHBOARD_TOKEN}', '  readOnly: true']),
      { TXOUTBOX_DASHBOARD_TOKEN: TOKEN },
    );
    assert.deepEqual(full.dashboard, { host: '0.0.0.0', port: 8080, token: TOKEN, readOnly: true });
  });

  test('bad values name the key, the value and the fix; a token is never shown', async () => {
    const open = await issues(configWith(['dashboard:', '  host: 0.0.0.0']));
    assert.match(open, /dashboard\.token: missing, expected a token, because host "0\.0\.0\.0" is not a loopback address/);
    assert.match(open, /openssl rand -hex 32/);
    const short = await issues(configWith(['dashboard:', '  token: sh0rt-secret']));
    assert.match(short, /dashboard\.token: expected a string of at least 16 characters/);
    assert.ok(!short.includes('sh0rt-secret'), 'the token is not echoed');
    const typo = await issues(configWith(['dashboard:', '  prot: 80']));
    assert.match(typo, /dashboard\.prot: .*did you mean "port"/i);
    const port = await issues(configWith(['dashboard:', '  port: eighty', '  readOnly: yes please']));
    assert.match(port, /dashboard\.port: expected an integer from 0 to 65535/);
    assert.match(port, /dashboard\.readOnly: expected true or false/);
    const clash = await issues(configWith(['dashboard:', '  port: 9500'], 9500));
    assert.match(clash, /dashboard\.port: 9500 is metrics\.prometheus\.port too/);
    const notSection = await issues(configWith(['dashboard: yes']));
    assert.match(notSection, /dashboard: expected a section \{ enabled, host, port, token, readOnly \}/);
  });

  test('peek’s lease TTL per queue: its consumers’ leaseTtlMs (the longest), the subscribe default when unset', async () => {
    const handler = join(dir, 'handler.js');
    writeFileSync(handler, 'export default async () => {};\n');
    const path = join(dir, 'dashboard-lease-ttls.yaml');
    writeFileSync(
      path,
      [
        'database:',
        '  url: postgres://app:pw-secret@localhost/app',
        'consumers:',
        '  slow:',
        `    handler: ${handler}`,
        '    queues: [reports, shared]',
        '    leaseTtlMs: 300000',
        '  quick:',
        `    handler: ${handler}`,
        '    queues: [shared, pings]',
        '    leaseTtlMs: 5000',
        '    maxPollIntervalMs: 1000',
        '  plain:',
        `    handler: ${handler}`,
        '    queues: [orders]',
        'dashboard:',
        '  port: 0',
        '',
      ].join('\n'),
    );
    const plans = consumerPlans(await loadRunnerConfig(path, {}));
    assert.equal(leaseTtlMsOf(plans, 'reports'), 300_000);
    assert.equal(leaseTtlMsOf(plans, 'pings'), 5_000);
    assert.equal(leaseTtlMsOf(plans, 'shared'), 300_000, 'a lease is expired only once every consumer would let it go');
    assert.equal(leaseTtlMsOf(plans, 'orders'), 60_000, 'subscribe()’s default');
    assert.equal(leaseTtlMsOf(plans, 'elsewhere'), undefined, 'no consumer here: the dashboard’s leaseTtlMs');
  });

  test('txoutbox run serves it: the processes page shows the supervisor’s consumers, processes, restarts and readiness', async () => {
    await prepare('dash_runner');
    const config = writeConfig('dashboard', 'dash_runner', { orders: { queue: 'dash', export: 'orders', processes: 2 } });
    appendFileSync(config, 'dashboard:\n  port: 0\n  token: ${TXOUTBOX_DASHBOARD_TOKEN}\n');
    const runner = start(config, { TXOUTBOX_DASHBOARD_TOKEN: TOKEN });
    await whenStarted(runner, { orders: 2 });
    const started = runner.logs.find((line) => line.msg === 'runner started');
    const url = started?.dashboard;
    assert.ok(typeof url === 'string' && /^http:\/\/127\.0\.0\.1:\d+\/$/.test(url), `dashboard URL logged: ${String(url)}`);
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    assert.equal((await get(`${url}processes`)).status, 401, 'the token applies');

    // /readyz (whenStarted) is up once each consumer has one ready process: wait for the second too.
    let page = await get(`${url}processes`, auth);
    await waitFor(
      async () => {
        page = await get(`${url}processes`, auth);
        return cell(page.text, 'processes-ready') === '2';
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'both processes ready on the processes page' },
    );
    assert.equal(page.status, 200);
    assert.match(page.text, /data-testid="runner-ready"/);
    assert.match(page.text, /data-testid="consumer-row" data-consumer="orders"/);
    assert.equal(cell(page.text, 'processes-wanted'), '2');
    assert.equal(cell(page.text, 'processes-alive'), '2');
    assert.equal(cell(page.text, 'processes-ready'), '2');
    assert.equal(cell(page.text, 'restarts'), '0');
    assert.match(page.text, /href="\/queues\/dash"/);
    assert.equal((await get(url, auth)).status, 200, 'the overview, on the runner’s own Outbox');

    const [victim] = runner.livePids('orders');
    assert.ok(victim !== undefined);
    process.kill(victim, 'SIGKILL');
    await waitFor(
      async () => {
        const now = (await get(`${url}processes`, auth)).text;
        return cell(now, 'restarts') === '1' && cell(now, 'processes-ready') === '2';
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'the restart on the processes page' },
    );

    // A SIGHUP applies the consumers; the dashboard and dlqRetention the runner set up at start stay
    // as they were, and the reload's log line says so instead of a plain "config reloaded".
    const since = runner.logs.length;
    appendFileSync(config, '  readOnly: true\ndlqRetention: 14d\n');
    runner.child.kill('SIGHUP');
    const reloaded = await runner.waitForLog((line) => line.msg.startsWith('config reloaded'), 'the reload', { since });
    assert.deepEqual(reloaded.restartOnly, ['dlqRetention', 'dashboard']);
    assert.match(reloaded.msg, /^config reloaded; these changes apply on restart only: dlqRetention, dashboard$/);
    assert.match((await get(`${url}dlq`, auth)).text, /method="post"/, 'still not read-only');

    runner.child.kill('SIGTERM');
    assert.equal((await runner.exited).code, 0);
    await assert.rejects(fetch(`${url}processes`), 'the dashboard stopped with the runner');
    assert.ok(
      runner.logs.every((line) => !JSON.stringify(line).includes(TOKEN)),
      'no log line holds the token',
    );
  });

  test('a dashboard port in use: the runner refuses to start, nothing forked', async () => {
    await prepare('dash_busy');
    const first = start(
      (() => {
        const path = writeConfig('dashboard-first', 'dash_busy', { orders: { queue: 'busy', export: 'orders', processes: 1 } });
        appendFileSync(path, 'dashboard:\n  port: 0\n');
        return path;
      })(),
    );
    await whenStarted(first, { orders: 1 });
    const port = new URL(String(first.logs.find((line) => line.msg === 'runner started')?.dashboard)).port;
    const path = writeConfig('dashboard-second', 'dash_busy', { orders: { queue: 'busy', export: 'orders', processes: 1 } });
    appendFileSync(path, `dashboard:\n  port: ${port}\n`);
    const second = start(path);
    const { code } = await second.exited;
    assert.equal(code, 1);
    assert.ok(
      [...second.logs.map((l) => JSON.stringify(l)), ...second.otherOutput].some((line) =>
        line.includes(`dashboard.port: 127.0.0.1:${port} is already in use`),
      ),
    );
    assert.equal(second.logs.filter((line) => line.msg === 'consumer process started').length, 0);
    first.child.kill('SIGTERM');
    assert.equal((await first.exited).code, 0);
  });
});
