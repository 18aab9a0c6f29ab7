import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { stringify } from 'yaml';

import { useTestDatabase } from '../support/database.js';
import { metricFamily, registeredMetricNames, registeredMetrics } from '../support/metric-names.js';
import { outboxFactory } from '../support/outboxes.js';
import { promtool } from '../support/promtool.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const run = promisify(execFile);
const PAGE = 'architecture/observability.md';
const RULES = 'examples/prometheus/txoutbox-rules.yml';

test('examples/observability.ts: both seams on one registry, spans through the table, one scrape', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/observability.ts'], {
    env: { ...process.env, DATABASE_URL: db.url },
    timeout: 60_000,
  });
  assert.match(stdout, /^serving http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
  const published = /^published 3 messages in trace ([0-9a-f]{32})$/m.exec(stdout)?.[1];
  assert.ok(published !== undefined, stdout);
  // The process span is active in the handler, and it is a child of the request's trace.
  const handled = [...stdout.matchAll(/^handled order (\d) in trace (\S+)$/gm)];
  assert.deepEqual(handled.map((m) => m[1]).sort(), ['1', '2', '3']);
  for (const m of handled) assert.equal(m[2], published, 'the handler runs inside the request trace');
  // 1 request span + 3 publish + 3 process spans, all one trace.
  assert.match(stdout, /^spans: POST \/orders, process order\.created, publish order\.created; 7 spans in 1 trace\(s\)$/m);

  const labels = 'app_name="txoutbox",broker="outbox"';
  const metric = (name: string, rest: string, value: string) => new RegExp(`^${name}\\{${labels},${rest}\\} ${value}$`, 'm');
  assert.match(stdout, metric('txoutbox_published_messages_total', 'destination="order.created",status="success"', '3'));
  assert.match(stdout, metric('txoutbox_received_processed_messages_total', 'handler="send-email",status="acked"', '3'));
  assert.match(stdout, metric('txoutbox_custom_emails_sent_total', 'handler="send-email"', '3'));
  assert.match(stdout, metric('txoutbox_queue_messages', 'queue="order.created",state="ready"', '0'));
  assert.match(stdout, metric('txoutbox_queue_messages', 'queue="order.created",state="leased"', '0'));
  assert.match(stdout, metric('txoutbox_queue_oldest_ready_age_seconds', 'queue="order.created"', '0'));
  const fetched = [
    ...stdout.matchAll(/^txoutbox_outbox_fetched_messages_total\{[^}]*handler="send-email",queue="order\.created"\} (\d+)$/gm),
  ];
  assert.equal(fetched.length, 1);
  assert.equal(fetched[0]?.[1], '3');
});

/** The fenced blocks of `lang` in the page, in order. */
function blocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm'))].map((m) => m[1] ?? '');
}

/** The page's section under `heading` (up to the next `## `). */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `the page has a "${heading}" section`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

test("the page's metric table and playbook name only series the code registers", async () => {
  const page = await readFile(PAGE, 'utf8');
  const names = registeredMetricNames(newOutbox({ pool: db.pool, table: 'names_only' }));
  const tabled = [...section(page, 'Metric table').matchAll(/^\| `([a-z_<>]+)` \|/gm)].map((m) => m[1] ?? '');
  const checked = tabled.filter((name) => !name.includes('<') && !name.startsWith('consumer_'));
  assert.ok(checked.length >= 24, `the table lists the series (found ${checked.length})`);
  for (const name of checked) assert.ok(names.has(`txoutbox_${name}`), `txoutbox_${name} is registered`);
  for (const name of names) assert.ok(checked.includes(name.slice('txoutbox_'.length)), `the table lists ${name}`);

  const playbook = section(page, 'PromQL playbook');
  // Exported names, not the recording rules' level:metric:operation names.
  const used = [...playbook.matchAll(/(?<![:\w])txoutbox_[a-z_]+\b(?!:)/g)].map((m) => metricFamily(m[0]));
  assert.ok(used.length >= 15, `the playbook uses the exported series (found ${used.length})`);
  for (const name of used) assert.ok(names.has(name), `${name} (in the playbook) is registered`);
});

test("the page's PromQL playbook passes promtool", async (t) => {
  const page = await readFile(PAGE, 'utf8');
  const queries = blocks(page, 'promql');
  assert.ok(queries.length >= 6, `the playbook has its queries (found ${queries.length})`);

  const tool = await promtool();
  if (tool.skip !== undefined) {
    t.skip(tool.skip);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-playbook-'));
  try {
    // Every playbook query as a recording rule: `check rules` parses each expression.
    const recorded = queries.flatMap((block, i) =>
      block
        .split(/\n(?=#)/)
        .map((chunk) => chunk.replace(/^#.*$/gm, '').trim())
        .filter((expr) => expr !== '')
        .map((expr, j) => ({ record: `playbook:query_${i}_${j}`, expr })),
    );
    assert.ok(recorded.length >= 12, `every query is checked (found ${recorded.length})`);
    const queriesFile = join(dir, 'queries.yml');
    await writeFile(queriesFile, stringify({ groups: [{ name: 'playbook', rules: recorded }] }));
    const checked = await run(tool.path, ['check', 'rules', queriesFile]);
    assert.match(checked.stdout, new RegExp(`queries\\.yml\\n {2}SUCCESS: ${recorded.length} rules found`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the playbook's recording-rule series are the rules file's", async () => {
  const page = await readFile(PAGE, 'utf8');
  const rules = await readFile(RULES, 'utf8');
  const used = [...section(page, 'PromQL playbook').matchAll(/\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b/g)].map((m) => m[0]);
  assert.ok(used.length >= 2);
  for (const name of used) assert.match(rules, new RegExp(`^ *- record: ${name}$`, 'm'), `${RULES} records ${name}`);
});

test("the README's metric table is what the code registers: names, types and labels, in order", async () => {
  const readme = await readFile('README.md', 'utf8');
  const rows = [...section(readme, 'Observability').matchAll(/^\| `(txoutbox_[a-z_]+)` \| ([a-z]+) \| ([^|]+) \|/gm)].map(
    (m) => ({
      name: m[1],
      type: m[2],
      labelNames: m[3]?.trim() === '—' ? [] : [...(m[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((l) => l[1]),
    }),
  );
  const metrics = registeredMetrics(newOutbox({ pool: db.pool, table: 'readme_names' }));
  // The table leaves out the two labels every series carries (first, in FastStream's order).
  for (const metric of metrics) assert.deepEqual(metric.labelNames.slice(0, 2), ['app_name', 'broker'], metric.name);
  const registered = metrics.map((metric) => ({ ...metric, labelNames: metric.labelNames.slice(2) }));
  assert.deepEqual(rows, registered);
});
