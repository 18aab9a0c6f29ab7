import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { ConfigError, InvalidOptionError } from '../../src/errors.js';
import { ConstantRetry, ExponentialRetry, NoRetry } from '../../src/retry/strategies.js';
import { subscribeOptionsFromSpec } from '../../src/runner/child/subscribe-options-from-spec.js';
import { consumerPlans, FLUSH_INTERVAL_MS } from '../../src/runner/config/consumer-plans.js';
import { closest, levenshtein } from '../../src/runner/config/did-you-mean.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { pathSegments } from '../../src/runner/config/locate-issues.js';
import type { ConsumerChildSpec } from '../../src/runner/protocol.js';
import { resolveSubscribeOptions } from '../../src/subscriber/subscription-options.js';

const dir = mkdtempSync(join(tmpdir(), 'txoutbox-config-'));
mkdirSync(join(dir, 'handlers'));
const HANDLER = join(dir, 'handlers', 'orders.js');
writeFileSync(HANDLER, 'export default async () => {};\nexport const handle = async () => {};\n');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const URL_WITH_SECRET = 'postgres://app:s3cr3t-pw@db.internal:5432/app';
let written = 0;

/** Writes `text` as a config file next to handlers/ and returns its path. */
function configFile(text: string, extension = 'yaml'): string {
  written += 1;
  const path = join(dir, `config-${written}.${extension}`);
  writeFileSync(path, text);
  return path;
}

/** A valid config with `consumer` lines added to its one consumer (`orders`). */
function yaml(consumer: string[] = [], top: string[] = []): string {
  return [
    'database:',
    `  url: ${URL_WITH_SECRET}`,
    ...top,
    'consumers:',
    '  orders:',
    '    handler: ./handlers/orders.js',
    '    queues: [orders]',
    ...consumer.map((line) => `    ${line}`),
    '',
  ].join('\n');
}

async function configError(path: string, env: NodeJS.ProcessEnv = {}): Promise<ConfigError> {
  try {
    await loadRunnerConfig(path, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_CONFIG');
    return error;
  }
  assert.fail('the config was accepted');
}

/** The one issue at `path`, asserting it is there. */
function issueAt(error: ConfigError, path: string): string {
  const issue = error.issues.find((i) => i.path === path);
  assert.ok(issue, `no issue at ${path}; issues: ${JSON.stringify(error.issues)}`);
  assert.ok(error.message.includes(`${path}: ${issue.message}`), 'the message lists every issue with its path');
  return issue.message;
}

describe('loadRunnerConfig: valid configs', () => {
  test('a minimal YAML config gets every default', async () => {
    const config = await loadRunnerConfig(configFile(yaml()), {});
    assert.equal(config.database.url, URL_WITH_SECRET);
    // No poolSize: each consumer's pool is sized for what it serves (connection-budget.ts).
    assert.equal(config.database.poolSize, undefined);
    assert.equal(config.database.transactionPooling, false);
    assert.deepEqual(
      [config.database.preparedStatements, config.database.listen, config.database.notify, config.database.listenUrl],
      [undefined, undefined, undefined, undefined],
    );
    assert.equal(config.table, 'txoutbox.outbox');
    assert.equal(config.dlqTable, 'txoutbox.outbox_dlq');
    assert.equal(config.gracefulTimeoutMs, 15_000);
    assert.deepEqual(config.metrics.prometheus, {
      enabled: true,
      host: '127.0.0.1',
      port: 9464,
      prefix: 'txoutbox',
      queueStateLeader: true,
    });
    assert.equal(config.metrics.statsd, undefined);
    assert.deepEqual(
      [...config.consumers.values()],
      [{ name: 'orders', handlerPath: HANDLER, handlerExport: 'default', queues: ['orders'], processes: 1, subscribe: {} }],
    );
  });

  test('a JSON config with every key set, and the plans built from it', async () => {
    const json = {
      database: { url: URL_WITH_SECRET, poolSize: 4, queryTimeoutMs: 3000 },
      table: 'app.jobs',
      gracefulTimeoutMs: 2000,
      metrics: {
        prometheus: { enabled: false, host: '0.0.0.0', port: 0, prefix: 'shop', queueStateLeader: false },
        statsd: { host: 'statsd.local', port: 8126, prefix: 'shop.outbox' },
      },
      consumers: {
        orders: {
          handler: HANDLER,
          export: 'handle',
          queues: ['orders', 'refunds', 'orders'],
          processes: 3,
          concurrency: 8,
          fetchBatchSize: 20,
          leaseTtlMs: 30_000,
          minPollIntervalMs: 50,
          maxPollIntervalMs: 2000,
          maxDeliveries: 5,
          ackPolicy: 'manual',
          leaseRenewIntervalMs: 10_000,
          dlq: false,
          retry: { strategy: 'exponential', initialDelayMs: 500, multiplier: 3, maxDelayMs: 60_000, maxAttempts: 6, jitter: 0.1 },
        },
        emails: { handler: 'handlers/orders.js', queues: 'emails', retry: { strategy: 'none' } },
      },
    };
    const config = await loadRunnerConfig(configFile(JSON.stringify(json, null, 2), 'json'), {});
    assert.equal(config.dlqTable, 'app.jobs_dlq');
    assert.deepEqual(config.metrics.statsd, { host: 'statsd.local', port: 8126, prefix: 'shop.outbox' });
    const orders = config.consumers.get('orders');
    assert.deepEqual(orders?.queues, ['orders', 'refunds']);
    const subscribe: Record<string, unknown> = { ...json.consumers.orders };
    for (const key of ['handler', 'export', 'queues', 'processes']) Reflect.deleteProperty(subscribe, key);
    assert.deepEqual(orders?.subscribe, subscribe);

    const plans = consumerPlans(config);
    assert.deepEqual([...plans.keys()], ['orders', 'emails']);
    assert.deepEqual(plans.get('orders'), {
      processes: 3,
      spec: {
        consumer: 'orders',
        // Which consumer holds which connection, in pg_stat_activity.
        databaseUrl: `${URL_WITH_SECRET}?application_name=txoutbox-orders`,
        poolSize: 4,
        connection: { transactionPooling: false },
        queryTimeoutMs: 3000,
        table: 'app.jobs',
        dlqTable: 'app.jobs_dlq',
        gracefulTimeoutMs: 2000,
        handlerPath: HANDLER,
        handlerExport: 'handle',
        queues: ['orders', 'refunds'],
        subscribe,
        metricsPrefix: 'shop',
        flushIntervalMs: FLUSH_INTERVAL_MS,
        statsd: { host: 'statsd.local', port: 8126, prefix: 'shop.outbox' },
      },
    });
    const emails = plans.get('emails')?.spec as ConsumerChildSpec | undefined;
    assert.equal(emails?.handlerPath, HANDLER, 'a relative handler path starts at the config file');
  });

  test('dlqTable: false turns the DLQ off', async () => {
    const config = await loadRunnerConfig(configFile(yaml([], ['dlqTable: false'])), {});
    assert.equal(config.dlqTable, false);
  });
});

describe('loadRunnerConfig: ${ENV} interpolation', () => {
  test('${VAR}, ${VAR:-default}, $${ and a whole-value reference taking its type', async () => {
    const path = configFile(
      [
        'database:',
        '  url: postgres://app:${DB_PASSWORD}@${DB_HOST:-localhost}:5432/app',
        'table: ${TABLE:-outbox}',
        'metrics:',
        '  prometheus:',
        '    port: ${METRICS_PORT}',
        '    enabled: ${METRICS_ON:-true}',
        'consumers:',
        '  orders:',
        '    handler: ./handlers/orders.js',
        '    queues: [orders, "literal-$${NOT_A_VAR}"]',
        '    concurrency: ${CONCURRENCY:-2}',
        '',
      ].join('\n'),
    );
    const config = await loadRunnerConfig(path, { DB_PASSWORD: 'pw', DB_HOST: '', METRICS_PORT: '9500', TABLE: 'jobs' });
    assert.equal(
      config.database.url,
      'postgres://app:pw@localhost:5432/app',
      'an empty variable takes the default, as in the shell',
    );
    assert.equal(config.table, 'jobs');
    assert.equal(config.metrics.prometheus.port, 9500);
    assert.equal(config.metrics.prometheus.enabled, true);
    assert.deepEqual(config.consumers.get('orders')?.queues, ['orders', 'literal-${NOT_A_VAR}']);
    assert.equal(config.consumers.get('orders')?.subscribe.concurrency, 2);
  });

  test('a variable that is not set, without a default, is an error naming the path and the variable', async () => {
    const path = configFile(yaml(['processes: ${PROCESSES}'], ['table: ${TABLE']).replace(URL_WITH_SECRET, '${DATABASE_URL}'));
    const error = await configError(path, {});
    assert.match(issueAt(error, 'database.url'), /environment variable DATABASE_URL is not set/);
    assert.match(issueAt(error, 'consumers.orders.processes'), /environment variable PROCESSES is not set/);
    assert.match(issueAt(error, 'table'), /unterminated \$\{/);
    assert.equal(error.issues.length, 3, 'an unresolved value is not reported a second time as a wrong type');
  });

  test('a quoted reference stays text whatever its value; a plain one typed as a number where text is expected says to quote it', async () => {
    // Reproduction (review finding): `- ${QUEUE}` with QUEUE=2024 became the number 2024,
    // and a quoted "${QUEUE}" did too: nothing in the file could keep a digit string text.
    const quoted = configFile(yaml().replace('queues: [orders]', 'queues: ["${QUEUE}", \'${OTHER}\']'));
    const config = await loadRunnerConfig(quoted, { QUEUE: '2024', OTHER: 'true' });
    assert.deepEqual(config.consumers.get('orders')?.queues, ['2024', 'true']);

    const plain = configFile(yaml().replace('queues: [orders]', 'queues:\n      - ${QUEUE}'));
    const error = await configError(plain, { QUEUE: '2024' });
    assert.match(
      issueAt(error, 'consumers.orders.queues'),
      /got 2024.*\$\{QUEUE\} was read as a number; to keep its text, quote it: "\$\{QUEUE\}"/,
    );
    // Only where the type is the problem: a number out of range says nothing of quotes...
    const outOfRange = await configError(configFile(yaml(['processes: ${PROCESSES}'])), { PROCESSES: '0' });
    assert.doesNotMatch(issueAt(outOfRange, 'consumers.orders.processes'), /quote/);
    // ...and a quoted number where a number is expected says to unquote it.
    const quotedPort = await configError(configFile(yaml([], ['metrics:', '  prometheus:', '    port: "${METRICS_PORT}"'])), {
      METRICS_PORT: '9500',
    });
    assert.match(
      issueAt(quotedPort, 'metrics.prometheus.port'),
      /got "9500" \("\$\{METRICS_PORT\}" is quoted, so it stays text; write it unquoted, \$\{METRICS_PORT\}, to read it as a number\)/,
    );
  });

  test('the environment can supply the whole URL', async () => {
    const path = configFile(yaml().replace(URL_WITH_SECRET, '${DATABASE_URL}'));
    const config = await loadRunnerConfig(path, { DATABASE_URL: URL_WITH_SECRET });
    assert.equal(config.database.url, URL_WITH_SECRET);
  });
});

describe('loadRunnerConfig: every problem has a path, the bad value and what is expected', () => {
  test('an empty value (`table:`, `- `, `~`) is an issue, never the default; an unknown key keeps its own message', async () => {
    // Reproduction (review finding): `table:` ran on the default table without a word, and
    // `dlqTable:` said '"null" is not a valid identifier'.
    const error = await configError(
      configFile(yaml(['concurrency:', 'leaseMs:'], ['table:', 'dlqTable: ~', 'metrics:', '  prometheus:', '    port:'])),
    );
    assert.match(issueAt(error, 'table'), /^empty: write a value, or remove the key to take its default$/);
    assert.match(issueAt(error, 'dlqTable'), /^empty: write a value/);
    assert.match(
      issueAt(error, 'metrics.prometheus.port'),
      /^empty, expected an integer from 0 to 65535 \(write a value, or remove the key/,
    );
    assert.match(issueAt(error, 'consumers.orders.concurrency'), /^empty, expected an integer/);
    assert.match(issueAt(error, 'consumers.orders.leaseMs'), /unknown key; did you mean "lease"\?/);
    const item = await configError(configFile(yaml().replace('queues: [orders]', 'queues:\n      - orders\n      -')));
    assert.ok(
      error.issues.length === 5 && /queues/.test(item.issues.map((i) => i.path).join()),
      JSON.stringify([error.issues, item.issues]),
    );
  });

  test('a YAML syntax error gives file:line:col', async () => {
    const path = configFile(
      ['database:', `  url: ${URL_WITH_SECRET}`, 'consumers:', '  orders: [a, b', '  other: 1', ''].join('\n'),
    );
    const error = await configError(path);
    assert.equal(error.issues.length, 1);
    assert.equal(error.issues[0]?.line, 5);
    assert.match(error.message, new RegExp(`${path.replaceAll('.', '\\.')}:5:\\d+: `));
    assert.doesNotMatch(error.message, /s3cr3t/);
  });

  test('a duplicate YAML key is a syntax error at its position', async () => {
    const error = await configError(configFile(`${yaml()}database:\n  url: x\n`));
    assert.equal(error.issues[0]?.line, 7);
    assert.match(error.message, /Map keys must be unique/);
  });

  test('a duplicate JSON key is an error at its position too (JSON.parse kept the last one silently)', async () => {
    const error = await configError(
      configFile(`{\n  "database": {"url": "${URL_WITH_SECRET}"},\n  "database": {"url": "postgres://other/db"}\n}`, 'json'),
    );
    assert.deepEqual([error.issues[0]?.line, error.issues[0]?.column], [3, 3]);
    assert.match(error.message, /:3:3: Map keys must be unique/);
    assert.doesNotMatch(error.message, /s3cr3t/);
  });

  test('a JSON syntax error gives file:line:col without quoting the file', async () => {
    const positioned = await configError(
      configFile(`{\n  "database": {"url": "${URL_WITH_SECRET}"}\n  "consumers": {}\n}`, 'json'),
    );
    assert.deepEqual([positioned.issues[0]?.line, positioned.issues[0]?.column], [3, 3]);
    assert.match(positioned.message, /:3:3: not valid JSON: Expected ',' or '}' after property value$/m);

    // V8 names no position for this one, and quotes the text around it.
    const line = `  "database": {"url": "${URL_WITH_SECRET}", "poolSize": }`;
    const quoted = await configError(configFile(`{\n${line}\n}`, 'json'));
    assert.deepEqual([quoted.issues[0]?.line, quoted.issues[0]?.column], [2, line.indexOf(': }') + 3]);
    assert.doesNotMatch(quoted.message, /s3cr3t|is not valid JSON/);
  });

  test('an unknown extension and a missing file', async () => {
    assert.match(
      (await configError(configFile(yaml(), 'toml'))).message,
      /expected a \.yaml, \.yml or \.json file, got "\.toml"/,
    );
    assert.match((await configError(join(dir, 'absent.yaml'))).message, /cannot read the config file: ENOENT/);
  });

  test('out of range: the exact message', async () => {
    const error = await configError(configFile(yaml(['processes: two'])));
    assert.equal(issueAt(error, 'consumers.orders.processes'), 'expected an integer >= 1, got "two"');
    assert.match(error.message, /^ {2}\S+\.yaml:7:5: consumers\.orders\.processes: expected an integer >= 1, got "two"$/m);
  });

  test('each issue points at its line: the entry, or the section a missing key belongs in (YAML and JSON)', async () => {
    const error = await configError(configFile(yaml(['procesess: 2', 'concurrency: 0'])));
    const at = (path: string) => {
      const issue = error.issues.find((i) => i.path === path);
      return [issue?.line, issue?.column];
    };
    assert.deepEqual(at('consumers.orders.procesess'), [7, 5], 'an unknown key points at itself');
    assert.deepEqual(at('consumers.orders.concurrency'), [8, 5]);
    const missing = await configError(
      configFile(['database:', `  url: ${URL_WITH_SECRET}`, 'consumers:', '  orders:', '    queues: [orders]', ''].join('\n')),
    );
    assert.deepEqual(
      [missing.issues[0]?.path, missing.issues[0]?.line, missing.issues[0]?.column],
      ['consumers.orders.handler', 4, 3],
      'a missing key points at the section it belongs in',
    );
    const jsonText = JSON.stringify(
      { database: { url: URL_WITH_SECRET }, consumers: { orders: { handler: './h.js', queues: ['orders'], processes: 0 } } },
      null,
      2,
    );
    const json = await configError(configFile(jsonText, 'json'));
    const processes = json.issues.find((issue) => issue.path === 'consumers.orders.processes');
    assert.equal(processes?.line, jsonText.split('\n').findIndex((line) => line.includes('"processes"')) + 1);
    assert.ok(!json.message.includes('s3cr3t-pw') && !error.message.includes('s3cr3t-pw'), 'no password in any message');
  });

  test('wrong types and ranges in every section', async () => {
    const error = await configError(
      configFile(
        yaml(
          ['export: 42'],
          [
            '  poolSize: 0',
            '  queryTimeoutMs: 5',
            'gracefulTimeoutMs: soon',
            'metrics:',
            '  prometheus: { enabled: yes, host: " 0.0.0.0", port: 70000, prefix: "my-app", queueStateLeader: 1 }',
            '  statsd: { port: 0, prefix: "a..b" }',
          ],
        ),
      ),
    );
    assert.equal(issueAt(error, 'database.poolSize'), 'expected an integer >= 1, got 0');
    assert.match(
      issueAt(error, 'database.queryTimeoutMs'),
      /^expected an integer from 100 to 3600000 \(milliseconds\), got 5\. It bounds one statement/,
    );
    assert.equal(
      issueAt(error, 'gracefulTimeoutMs'),
      'expected an integer from 0 to 86400000 (milliseconds: 24 hours), got "soon". It bounds how long stop() waits for running handlers; a stop that may wait longer than a day is no bound.',
    );
    assert.equal(issueAt(error, 'metrics.prometheus.enabled'), 'expected true or false, got "yes"');
    assert.equal(issueAt(error, 'metrics.prometheus.port'), 'expected an integer from 0 to 65535, got 70000');
    // Accepted before, it failed only at the next start (a SIGHUP took it as "applies on restart").
    assert.match(issueAt(error, 'metrics.prometheus.host'), /without spaces .*got " 0\.0\.0\.0"/);
    assert.equal(issueAt(error, 'metrics.prometheus.queueStateLeader'), 'expected true or false, got 1');
    assert.match(issueAt(error, 'metrics.prometheus.prefix'), /metric name prefix .*got "my-app"/);
    assert.equal(issueAt(error, 'metrics.statsd.port'), 'expected an integer from 1 to 65535, got 0');
    assert.match(issueAt(error, 'metrics.statsd.prefix'), /got "a\.\.b"/);
    assert.equal(issueAt(error, 'consumers.orders.export'), 'expected a non-empty string, got 42');
    assert.equal(error.issues.length, 11);
  });

  test('unknown keys, with a did-you-mean when one is close', async () => {
    const error = await configError(
      configFile(
        yaml(['concurency: 4', 'LeaseTTLMs: 100', 'colour: blue'], ['tabel: jobs', 'metrics:', '  prometheus: { prot: 1 }']),
      ),
    );
    assert.equal(issueAt(error, 'consumers.orders.concurency'), 'unknown key; did you mean "concurrency"?');
    assert.equal(issueAt(error, 'consumers.orders.LeaseTTLMs'), 'unknown key; did you mean "leaseTtlMs"?');
    assert.match(
      issueAt(error, 'consumers.orders.colour'),
      /^unknown key; allowed here: handler, export, queues, processes, concurrency/,
    );
    assert.equal(issueAt(error, 'tabel'), 'unknown key; did you mean "table"?');
    assert.equal(issueAt(error, 'metrics.prometheus.prot'), 'unknown key; did you mean "port"?');
  });

  test('missing required keys', async () => {
    const noUrl = await configError(configFile('database: {}\nconsumers:\n  orders:\n    export: handle\n'));
    assert.equal(issueAt(noUrl, 'database.url'), 'missing, expected a postgres:// or postgresql:// URL');
    assert.match(issueAt(noUrl, 'consumers.orders.handler'), /^missing, expected the path of the handler module/);
    assert.equal(issueAt(noUrl, 'consumers.orders.queues'), 'missing, expected a queue name or a list of them');

    const nothing = await configError(configFile('table: jobs\n'));
    assert.match(issueAt(nothing, 'database'), /^missing, expected a section \{ url, poolSize, queryTimeoutMs \}/);
    assert.match(issueAt(nothing, 'consumers'), /^missing, expected a section with at least one consumer/);
  });

  test('retry: unknown strategy, keys of another strategy, values the class rejects', async () => {
    const error = await configError(
      configFile(
        [
          'database:',
          `  url: ${URL_WITH_SECRET}`,
          'consumers:',
          '  a: { handler: ./handlers/orders.js, queues: a, retry: { strategy: exponentail } }',
          '  b: { handler: ./handlers/orders.js, queues: b, retry: { strategy: constant, delayMs: 5, stepMs: 1 } }',
          '  c: { handler: ./handlers/orders.js, queues: c, retry: { strategy: exponential, initialDelayMs: -1, jitter: 2 } }',
          '  d: { handler: ./handlers/orders.js, queues: d, retry: { strategy: linear, stepMs: 1 } }',
          '  e: { handler: ./handlers/orders.js, queues: e, retry: none }',
          '',
        ].join('\n'),
      ),
    );
    assert.equal(
      issueAt(error, 'consumers.a.retry.strategy'),
      'expected one of exponential, constant, linear, none, got "exponentail"',
    );
    assert.match(issueAt(error, 'consumers.b.retry.stepMs'), /^unknown key; allowed here: strategy, maxAttempts/);
    assert.equal(issueAt(error, 'consumers.c.retry.jitter'), 'expected a fraction from 0 to 1 (0.2 = ±20 %), got 2');
    assert.equal(issueAt(error, 'consumers.c.retry.initialDelayMs'), 'expected a finite number > 0, got -1');
    assert.equal(issueAt(error, 'consumers.d.retry.initialDelayMs'), 'missing, expected a finite number > 0');
    assert.match(
      issueAt(error, 'consumers.e.retry'),
      /^expected a section \{ strategy: exponential \| constant \| linear \| none, … \}, got "none"$/,
    );
    assert.equal(error.issues.length, 6);
  });

  test('subscribe() options are judged by subscribe()’s own resolver, at their config path', async () => {
    const error = await configError(
      configFile(
        [
          'database:',
          `  url: ${URL_WITH_SECRET}`,
          'dlqTable: false',
          'consumers:',
          '  a: { handler: ./handlers/orders.js, queues: a, concurrency: 0, ackPolicy: ack, dlq: true }',
          '  b: { handler: ./handlers/orders.js, queues: [b, ""], minPollIntervalMs: 500, maxPollIntervalMs: 100 }',
          // A bad minPollIntervalMs is reported, and the valid maxPollIntervalMs is not judged against the default it would leave.
          '  c: { handler: ./handlers/orders.js, queues: c, minPollIntervalMs: 0, maxPollIntervalMs: 100, leaseTtlMs: x, leaseRenewIntervalMs: 5000 }',
          '',
        ].join('\n'),
      ),
    );
    assert.equal(issueAt(error, 'consumers.a.concurrency'), 'expected an integer from 1 to 10000, got 0');
    assert.equal(issueAt(error, 'consumers.a.ackPolicy'), `expected 'nack_on_error' | 'reject_on_error' | 'manual', got "ack"`);
    assert.match(issueAt(error, 'consumers.a.dlq'), /^expected false when the Outbox has dlqTable: false, got true\. /);
    assert.match(issueAt(error, 'consumers.b.queues'), /^expected non-empty strings .*got ""/);
    assert.match(issueAt(error, 'consumers.b.maxPollIntervalMs'), /^expected a value >= minPollIntervalMs \(500\), got 100/);
    assert.match(issueAt(error, 'consumers.c.minPollIntervalMs'), /got 0/);
    assert.match(issueAt(error, 'consumers.c.leaseTtlMs'), /got "x"/);
    assert.equal(error.issues.length, 7, JSON.stringify(error.issues));
  });

  test('table names are judged by the Outbox’s identifier rules', async () => {
    const error = await configError(configFile(yaml([], ['table: "drop table"', 'dlqTable: 7'])));
    assert.match(issueAt(error, 'table'), /^"drop table" is not a valid identifier/);
    assert.match(issueAt(error, 'dlqTable'), /not a valid identifier|expected/);
  });

  test('a handler file that does not exist', async () => {
    const error = await configError(configFile(yaml().replace('./handlers/orders.js', './handlers/missing.ts')));
    assert.equal(
      issueAt(error, 'consumers.orders.handler'),
      `expected the path of an existing handler module, got "./handlers/missing.ts". No file at ${join(dir, 'handlers', 'missing.ts')}.`,
    );
  });

  test('schemas: a module path (its `schemas` export) or { module, export }, given to every child', async () => {
    const short = await loadRunnerConfig(configFile(yaml([], ['schemas: ./handlers/orders.js'])), {});
    assert.deepEqual(short.schemas, { path: HANDLER, export: 'schemas' });
    const long = await loadRunnerConfig(
      configFile(yaml([], ['schemas:', '  module: ./handlers/orders.js', '  export: eventSchemas'])),
      {},
    );
    assert.deepEqual(long.schemas, { path: HANDLER, export: 'eventSchemas' });
    const spec = consumerPlans(long).get('orders')?.spec;
    assert.deepEqual(spec?.schemas, { path: HANDLER, export: 'eventSchemas' });
    assert.equal((await loadRunnerConfig(configFile(yaml()), {})).schemas, undefined);
    assert.equal(consumerPlans(await loadRunnerConfig(configFile(yaml()), {})).get('orders')?.spec.schemas, undefined);
  });

  test('schemas: a missing module, a wrong type, an unknown key', async () => {
    const missing = await configError(configFile(yaml([], ['schemas: ./events.ts'])));
    assert.equal(
      issueAt(missing, 'schemas'),
      `expected the path of an existing schemas module, got "./events.ts". No file at ${join(dir, 'events.ts')}.`,
    );
    const number = await configError(configFile(yaml([], ['schemas: 7'])));
    assert.match(issueAt(number, 'schemas'), /^expected the path of the schemas module \(relative to the config file\), got 7/);
    const unknown = await configError(configFile(yaml([], ['schemas:', '  module: ./handlers/orders.js', '  exports: x'])));
    assert.match(issueAt(unknown, 'schemas.exports'), /unknown key/);
    const noModule = await configError(configFile(yaml([], ['schemas:', '  export: x'])));
    assert.match(issueAt(noModule, 'schemas.module'), /^missing, expected the path of the schemas module/);
  });

  test('odd consumer names are rejected and quoted in paths', async () => {
    const error = await configError(configFile(yaml().replace('  orders:', '  "or.ders":')));
    assert.match(issueAt(error, 'consumers["or.ders"]'), /letters, digits, _ and -/);
  });

  test('the database password never appears in a message', async () => {
    const secretEverywhere = [
      'database:',
      '  url: postgres://app:s3cr3t-pw@db.internal:notaport/app',
      `table: ${URL_WITH_SECRET}`,
      'consumers:',
      `  orders: { handler: ./handlers/orders.js, queues: orders, ackPolicy: "password=s3cr3t-pw" }`,
      '',
    ].join('\n');
    const unparseable = await configError(configFile(secretEverywhere));
    assert.match(issueAt(unparseable, 'database.url'), /does not parse as a URL \(not shown/);
    issueAt(unparseable, 'table');
    issueAt(unparseable, 'consumers.orders.ackPolicy');
    assert.doesNotMatch(unparseable.message, /s3cr3t/);
    assert.doesNotMatch(JSON.stringify(unparseable.issues), /s3cr3t/);

    const wrongScheme = await configError(configFile(yaml().replace('postgres:', 'mysql:')));
    assert.equal(
      issueAt(wrongScheme, 'database.url'),
      'expected a postgres:// or postgresql:// URL, got "mysql://app:***@db.internal:5432/app"',
    );

    // A password that comes from the environment is scrubbed too.
    const fromEnv = await configError(
      configFile(yaml([], ['table: "${DATABASE_URL}x"']).replace(URL_WITH_SECRET, '${DATABASE_URL}')),
      {
        DATABASE_URL: 'postgres://app:env-secret-pw@db/app',
      },
    );
    issueAt(fromEnv, 'table');
    assert.doesNotMatch(fromEnv.message, /env-secret-pw/);
  });

  test('a long password is not shown in part where a value is cut short', async () => {
    // `database: ${DATABASE_URL}` (a URL where a section goes): the value is echoed and cut at 80
    // characters, which once cut the password too, so the whole-password scrub missed the part shown.
    const password = 'p4ssw0rd'.repeat(8);
    const url = `postgres://u1234567890abc:${password}@ec2-1-2-3-4.compute.example.com:5432/d1`;
    const asScalar = await configError(
      configFile(yaml().replace(`  url: ${URL_WITH_SECRET}`, '').replace('database:', 'database: ${DATABASE_URL}')),
      { DATABASE_URL: url },
    );
    assert.match(issueAt(asScalar, 'database'), /expected .*got "postgres:\/\/u1234567890abc:\*\*\*@/);
    // Not a single 8-character piece of it.
    assert.doesNotMatch(asScalar.message, /p4ssw0rd/);
    assert.doesNotMatch(JSON.stringify(asScalar.issues), /p4ssw0rd/);

    // The URL's parts written as a map where the URL goes: echoed as JSON, the password masked.
    const asMap = await configError(
      configFile(yaml().replace(`  url: ${URL_WITH_SECRET}`, `  url: { host: db, user: app, password: "${password}" }`)),
    );
    assert.match(issueAt(asMap, 'database.url'), /"password":"\*\*\*"/);
    assert.doesNotMatch(asMap.message, /p4ssw0rd/);
  });

  test('every problem of a file is reported at once', async () => {
    const error = await configError(
      configFile(
        [
          'database:',
          '  url: ${DATABASE_URL}',
          'metrics:',
          '  prometheus: { port: -1 }',
          'consumers:',
          '  orders:',
          '    handler: ./nope.js',
          '    queues: [orders]',
          '    processes: two',
          '    concurency: 4',
          '    retry: { strategy: constant }',
          '  emails: { handler: ./handlers/orders.js, queues: emails, fetchBatchSize: 0 }',
          '',
        ].join('\n'),
      ),
    );
    assert.deepEqual(error.issues.map((i) => i.path).sort(), [
      'consumers.emails.fetchBatchSize',
      'consumers.orders.concurency',
      'consumers.orders.handler',
      'consumers.orders.processes',
      'consumers.orders.retry.delayMs',
      'database.url',
      'metrics.prometheus.port',
    ]);
    assert.match(error.message, /\(7 problems\):\n/);
  });
});

describe('subscribeOptionsFromSpec', () => {
  test('round-trips a consumer through the child spec JSON, retry strategy included', async () => {
    const path = configFile(
      yaml([
        'concurrency: 4',
        'maxDeliveries: 3',
        'ackPolicy: reject_on_error',
        'retry: { strategy: exponential, initialDelayMs: 200, multiplier: 3, maxDelayMs: 5000, maxAttempts: 4, jitter: 0, maxTotalDelayMs: 60000 }',
      ]),
    );
    const plan = consumerPlans(await loadRunnerConfig(path, {})).get('orders');
    assert.ok(plan);
    const spec = JSON.parse(JSON.stringify(plan.spec)) as typeof plan.spec; // what the child receives
    const options = subscribeOptionsFromSpec(spec.subscribe);
    assert.ok(options.retry instanceof ExponentialRetry);
    assert.deepEqual(
      [
        options.retry.initialDelayMs,
        options.retry.multiplier,
        options.retry.maxDelayMs,
        options.retry.maxAttempts,
        options.retry.maxTotalDelayMs,
      ],
      [200, 3, 5000, 4, 60_000],
    );
    const now = new Date();
    assert.equal(options.retry.nextDelayMs({ attempt: 2, firstAttemptAt: now, lastAttemptAt: now, error: null }), 600);

    const resolved = resolveSubscribeOptions(spec.queues, () => Promise.resolve(), { name: spec.consumer, ...options }, true);
    assert.deepEqual(
      [resolved.concurrency, resolved.maxDeliveries, resolved.ackPolicy, resolved.retry],
      [4, 3, 'reject_on_error', options.retry],
    );
  });

  test('other strategies, no retry at all, and a bad section', () => {
    assert.ok(subscribeOptionsFromSpec({ retry: { strategy: 'none' } }).retry instanceof NoRetry);
    assert.ok(
      subscribeOptionsFromSpec({ retry: { strategy: 'constant', delayMs: 10, random: 5 } }).retry instanceof ConstantRetry,
    );
    assert.deepEqual(subscribeOptionsFromSpec({ concurrency: 2 }), { concurrency: 2 });
    assert.throws(() => subscribeOptionsFromSpec({ retry: { strategy: 'sometimes' } }), InvalidOptionError);
    assert.throws(() => subscribeOptionsFromSpec({ retry: { strategy: 'constant' } }), /ConstantRetry\.delayMs/);
  });
});

describe('did-you-mean', () => {
  test('levenshtein distance and the closest key within 2 edits', () => {
    assert.equal(levenshtein('concurency', 'concurrency'), 1);
    assert.equal(levenshtein('', 'abc'), 3);
    assert.equal(levenshtein('kitten', 'sitting'), 3);
    assert.equal(closest('fetchbatchsize', ['fetchBatchSize', 'leaseTtlMs']), 'fetchBatchSize');
    assert.equal(closest('proceses', ['processes', 'queues']), 'processes');
    assert.equal(closest('colour', ['processes', 'queues']), undefined);
  });
});

test('issue paths split back into keys and indexes, as childPath spells them', () => {
  assert.deepEqual(pathSegments('consumers.orders.queues[1]'), ['consumers', 'orders', 'queues', 1]);
  assert.deepEqual(pathSegments('consumers["a.b"].handler'), ['consumers', 'a.b', 'handler']);
  assert.deepEqual(pathSegments('metrics'), ['metrics']);
});
