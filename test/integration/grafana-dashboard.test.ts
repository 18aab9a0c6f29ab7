import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { Counter, Gauge, Histogram } from 'prom-client';
import { stringify } from 'yaml';

import { Runner } from '../../src/runner/runner.js';
import { useTestDatabase } from '../support/database.js';
import { metricFamily, type RegisteredMetric, registeredMetrics } from '../support/metric-names.js';
import { outboxFactory } from '../support/outboxes.js';
import { promtool } from '../support/promtool.js';
import { TestLogger } from '../support/test-logger.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const run = promisify(execFile);
const DASHBOARD = 'deploy/grafana/txoutbox-dashboard.json';
const PAGE = 'architecture/grafana.md';

interface Target {
  readonly expr: string;
  readonly refId: string;
  readonly datasource?: { readonly uid?: string };
}
interface Panel {
  readonly type: string;
  readonly title: string;
  readonly description?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly Target[];
}
interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { readonly query: string };
  readonly datasource?: { readonly uid?: string };
}
interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly Variable[] };
}

async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
}

/**
 * Grafana's variables replaced by values Prometheus accepts, as Grafana would send them: the
 * multi-value variables are regex matchers (`=~"$queue"`), whose "All" is `.*`.
 */
function substituted(expr: string): string {
  const out = expr
    .replaceAll('${prefix}', 'txoutbox')
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range', '1h')
    .replace(/\$(job|queue|consumer)\b/g, '.*');
  assert.doesNotMatch(out, /\$/, `every variable of ${expr} is substituted`);
  return out;
}

/** Every PromQL expression: the panels' targets, and the selectors of the `label_values()` variables. */
function expressions(d: Dashboard): { where: string; expr: string }[] {
  const targets = d.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })),
  );
  const variables = d.templating.list.flatMap((v) => {
    if (v.type !== 'query') return [];
    const query = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    const selector = /^label_values\((.*), *[a-z_]+\)$/.exec(query)?.[1];
    assert.ok(selector !== undefined, `variable ${v.name}: label_values(<selector>, <label>), got ${query}`);
    return [{ where: `variable ${v.name}`, expr: selector }];
  });
  return [...targets, ...variables];
}

/**
 * What the code registers, with its type: the library's seams (middleware, recorder with its relay
 * series, queue-state collector) and a real Runner's own registry (processes, restarts, DLQ
 * retention, its leader-elected queue state), taken from the objects, not from a list.
 */
async function codeMetrics(): Promise<Map<string, RegisteredMetric['type']>> {
  const table = 'dashboard_names';
  const outbox = newOutbox({ pool: db.pool, table });
  await outbox.migrate();
  const types = new Map(registeredMetrics(outbox).map((m) => [m.name, m.type]));
  const runner = await Runner.start({
    plans: new Map(),
    databaseUrl: db.url,
    table,
    dlqTable: `${table}_dlq`,
    dlqRetentionMs: 86_400_000,
    metrics: { enabled: false, host: '127.0.0.1', port: 0, prefix: 'txoutbox' },
    logger: new TestLogger(),
  });
  try {
    for (const metric of runner.registry().getMetricsAsArray()) {
      const type = metric instanceof Counter ? 'counter' : metric instanceof Gauge ? 'gauge' : 'histogram';
      if (type === 'histogram') assert.ok(metric instanceof Histogram, metric.name);
      types.set(metric.name, type);
    }
  } finally {
    await runner.stop();
  }
  return types;
}

test('the dashboard: a datasource variable, job/consumer/queue variables, and every panel on it', async () => {
  const d = await dashboard();
  const variables = new Map(d.templating.list.map((v) => [v.name, v]));
  assert.equal(variables.get('datasource')?.type, 'datasource');
  assert.equal(variables.get('datasource')?.query, 'prometheus');
  assert.equal(variables.get('prefix')?.query, 'txoutbox', 'the prefix defaults to the library default');
  for (const name of ['job', 'consumer', 'queue']) {
    assert.equal(variables.get(name)?.type, 'query', name);
    assert.equal(variables.get(name)?.datasource?.uid, '${datasource}', name);
  }
  const rows = d.panels.filter((p) => p.type === 'row').map((p) => p.title);
  assert.deepEqual(rows, [
    'Throughput',
    'Errors, retries and DLQ moves',
    'Latency',
    'Lag and depth',
    'DLQ',
    'Processes and restarts',
    'Relays',
  ]);
  for (const panel of d.panels.filter((p) => p.type !== 'row')) {
    assert.equal(panel.datasource?.uid, '${datasource}', panel.title);
    assert.ok((panel.targets ?? []).length > 0, `${panel.title} has a query`);
    assert.ok((panel.description ?? '').length > 20, `${panel.title} says what it shows`);
    for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid, '${datasource}', panel.title);
  }
  // The page says what each row shows.
  const page = await readFile(PAGE, 'utf8');
  for (const row of rows)
    assert.match(page, new RegExp(`^### ${row.replace(/[()]/g, '\\$&')}$`, 'm'), `${PAGE} describes row "${row}"`);
});

test('every expression names only series the code registers, histogram suffixes only on histograms', async () => {
  const types = await codeMetrics();
  const d = await dashboard();
  const used = new Set<string>();
  for (const { where, expr } of expressions(d)) {
    for (const [name] of substituted(expr).matchAll(/(?<![:\w])txoutbox_[a-z_]+\b/g)) {
      const family = metricFamily(name);
      const type = types.get(family);
      assert.ok(type !== undefined, `${name} (${where}) is registered by the code`);
      if (family !== name) assert.equal(type, 'histogram', `${name} (${where}): _bucket/_sum/_count of a histogram`);
      else assert.notEqual(type, 'histogram', `${name} (${where}): a histogram is queried through its _bucket/_sum/_count`);
      used.add(family);
    }
  }
  // Queue state is aggregated with max, never summed: every reader of one table reports the same rows.
  for (const { where, expr } of expressions(d)) {
    if (
      !/\$\{prefix\}_queue_(messages|oldest_ready_age_seconds|dlq_messages|paused)\b/.test(expr) ||
      where.startsWith('variable')
    )
      continue;
    assert.match(expr, /^max by \(/, `${where}: queue state aggregated with max`);
  }
  // Every family the runner serves is on the dashboard, but for the handler custom stats (no fixed name).
  const missing = [...types.keys()].filter((name) => !used.has(name));
  assert.deepEqual(missing, [], 'every registered series has a panel');
});

test('promtool: every expression of the dashboard parses', async (t) => {
  const tool = await promtool();
  if (tool.skip !== undefined) {
    t.skip(tool.skip);
    return;
  }
  const d = await dashboard();
  const all = expressions(d);
  assert.ok(all.length >= 40, `the dashboard's queries (found ${all.length})`);
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-dashboard-'));
  try {
    // Each expression as a recording rule: `check rules` parses it with Prometheus's own parser.
    const rules = all.map(({ expr }, i) => ({ record: `dashboard:query_${i}`, expr: substituted(expr) }));
    const file = join(dir, 'dashboard.yml');
    await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
    const checked = await run(tool.path, ['check', 'rules', file]);
    assert.match(checked.stdout, new RegExp(`dashboard\\.yml\\n {2}SUCCESS: ${rules.length} rules found`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
