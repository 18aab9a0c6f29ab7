import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { parse } from 'yaml';

import { useTestDatabase } from '../support/database.js';
import { metricFamily, registeredMetricNames } from '../support/metric-names.js';
import { outboxFactory } from '../support/outboxes.js';
import { promtool } from '../support/promtool.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const run = promisify(execFile);

const DIR = 'examples/prometheus';
const RULES = `${DIR}/txoutbox-rules.yml`;
const RULE_TESTS = `${DIR}/txoutbox-rules.test.yml`;
const PAGE = 'architecture/observability.md';

interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
  readonly annotations?: Record<string, string>;
}

interface AlertTest {
  readonly alertname: string;
  readonly exp_alerts?: readonly unknown[];
}

async function rules(): Promise<Rule[]> {
  const file = parse(await readFile(RULES, 'utf8')) as { groups: { rules: Rule[] }[] };
  return file.groups.flatMap((group) => group.rules);
}

async function alertTests(): Promise<AlertTest[]> {
  const file = parse(await readFile(RULE_TESTS, 'utf8')) as { tests: { alert_rule_test?: AlertTest[] }[] };
  return file.tests.flatMap((t) => t.alert_rule_test ?? []);
}

test('the rules name only series the code registers, and only recording rules the file defines', async () => {
  const all = await rules();
  const registered = registeredMetricNames(newOutbox({ pool: db.pool, table: 'names_only' }));
  const recorded = new Set(all.flatMap((rule) => (rule.record === undefined ? [] : [rule.record])));
  let exported = 0;
  for (const rule of all) {
    const text = [rule.expr, ...Object.values(rule.annotations ?? {})].join('\n');
    // Exported names: not part of a recording rule's level:metric:operation name.
    for (const [name] of text.matchAll(/(?<![:\w])txoutbox_[a-z_]+\b(?!:)/g)) {
      exported += 1;
      assert.ok(registered.has(metricFamily(name)), `${name} (in ${rule.alert ?? rule.record}) is registered`);
    }
    for (const [name] of rule.expr.matchAll(/\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b/g)) {
      assert.ok(recorded.has(name), `${name} (in ${rule.alert ?? rule.record}) is recorded by the file`);
    }
  }
  assert.ok(exported >= 15, `the rules use the exported series (found ${exported})`);
});

test('every alert is documented on the page and proven to fire and to stay quiet by the unit tests', async () => {
  const alerts = (await rules()).flatMap((rule) => (rule.alert === undefined ? [] : [rule.alert]));
  assert.deepEqual(alerts, [
    'TxoutboxQueueLagging',
    'TxoutboxQueueGrowing',
    'TxoutboxSubscriberNotFetching',
    'TxoutboxHandlerErrors',
    'TxoutboxLeaseLost',
    'TxoutboxMaxDeliveriesDrops',
    'TxoutboxDeadLettering',
    'TxoutboxTerminalWithoutDlq',
    'TxoutboxQueueStateDown',
    'TxoutboxQueueStateNoReader',
  ]);
  const cases = await alertTests();
  for (const alert of alerts) {
    const mine = cases.filter((c) => c.alertname === alert);
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${RULE_TESTS} has a case where ${alert} fires`,
    );
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${RULE_TESTS} has a case where ${alert} stays quiet`,
    );
  }
  const page = await readFile(PAGE, 'utf8');
  const documented = [...page.matchAll(/^\| `(Txoutbox[A-Za-z]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(documented, alerts, `${PAGE} has one table row per alert, in the file's order`);
});

test('promtool: the rules file passes check rules, and its unit tests pass', async (t) => {
  const tool = await promtool();
  if (tool.skip !== undefined) {
    t.skip(tool.skip);
    return;
  }
  const count = (await rules()).length;
  const checked = await run(tool.path, ['check', 'rules', RULES]);
  assert.match(checked.stdout, new RegExp(`SUCCESS: ${count} rules found`));

  // rule_files in the unit-test file is relative to that file.
  const tested = await run(tool.path, ['test', 'rules', RULE_TESTS]).catch((error: unknown) => {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    assert.fail(`promtool test rules failed:\n${stdout}${stderr}`);
  });
  assert.match(tested.stdout, /SUCCESS/);
});
