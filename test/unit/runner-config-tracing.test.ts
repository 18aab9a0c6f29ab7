/** `tracing:` in txoutbox.yaml: the values it takes, the child specs it gives, and the messages for the ones it refuses. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { ConfigError, type ConfigIssue } from '../../src/errors.js';
import { consumerPlans } from '../../src/runner/config/consumer-plans.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { TRACING_PEERS, tracingInstallCommand } from '../../src/runner/tracing/tracing-peers.js';

const dir = mkdtempSync(join(tmpdir(), 'txoutbox-tracing-'));
writeFileSync(join(dir, 'handler.js'), 'export default async () => {};\n');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const TOKEN = 'Bearer otlp-s3cr3t-token';
const ENDPOINT = 'http://127.0.0.1:4318/v1/traces';

let written = 0;
/** A valid config (a consumer `orders`, a webhook relay `hooks`) with `tracing` lines under `tracing:`. */
function configFile(tracing: string[]): string {
  written += 1;
  const path = join(dir, `config-${written}.yaml`);
  const lines = [
    'database:',
    '  url: postgres://app:pw-secret@localhost/app',
    ...(tracing.length === 0 ? [] : ['tracing:', ...tracing.map((line) => `  ${line}`)]),
    'consumers:',
    '  orders:',
    '    handler: ./handler.js',
    '    queues: [orders]',
    'relays:',
    '  hooks:',
    '    queues: [hooks]',
    '    sink: { type: webhook, url: "http://127.0.0.1:9/" }',
    '',
  ];
  writeFileSync(path, lines.join('\n'));
  return path;
}

async function issues(tracing: string[], env: NodeJS.ProcessEnv = {}): Promise<ConfigIssue[]> {
  const error = await loadRunnerConfig(configFile(tracing), env).then(
    () => assert.fail('the config was accepted'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ConfigError, String(error));
  assert.equal(error.code, 'INVALID_CONFIG');
  return [...error.issues];
}

/** The one issue's message at `path`. */
async function issueAt(tracing: string[], path: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const found = await issues(tracing, env);
  const issue = found.find((i) => i.path === path);
  assert.ok(issue, `no issue at ${path}: ${JSON.stringify(found)}`);
  return issue.message;
}

describe('tracing: valid sections', () => {
  test('absent, or enabled: false: no tracing, and no child spec carries any', async () => {
    for (const lines of [[], ['enabled: false'], ['enabled: false', `endpoint: ${ENDPOINT}`]]) {
      const config = await loadRunnerConfig(configFile(lines), {});
      assert.equal(config.tracing, undefined);
      for (const plan of consumerPlans(config).values()) assert.equal('tracing' in plan.spec, false);
    }
  });

  test('the endpoint alone gets every default; each child is its own service', async () => {
    const config = await loadRunnerConfig(configFile([`endpoint: ${ENDPOINT}`]), {});
    assert.deepEqual(config.tracing, {
      endpoint: ENDPOINT,
      headers: {},
      sampler: 1,
      consumerSpanRelation: 'parent',
      skipUnsampledParents: true,
    });
    const plans = consumerPlans(config);
    assert.deepEqual(plans.get('orders')?.spec.tracing, {
      endpoint: ENDPOINT,
      headers: {},
      serviceName: 'orders',
      sampler: 1,
      consumerSpanRelation: 'parent',
      skipUnsampledParents: true,
    });
    assert.equal(plans.get('hooks')?.spec.tracing?.serviceName, 'hooks');
  });

  test('every key set, headers from the environment', async () => {
    const config = await loadRunnerConfig(
      configFile([
        'enabled: true',
        'endpoint: https://otlp.example.com/otlp/v1/traces',
        'headers:',
        '  authorization: ${OTLP_AUTH}',
        '  x-scope-orgid: "42"',
        '  x-numeric: ${NUMERIC}',
        '  x-api-key: ${LONG_DIGITS}',
        'serviceName: shop',
        'sampler: 0.25',
        'consumerSpanRelation: link',
        'skipUnsampledParents: false',
      ]),
      { OTLP_AUTH: TOKEN, NUMERIC: '7', LONG_DIGITS: '12345678901234567890' },
    );
    assert.deepEqual(config.tracing, {
      endpoint: 'https://otlp.example.com/otlp/v1/traces',
      // A whole-value ${VAR} of digits arrives as a number: it is sent as its text. Past 2^53 − 1
      // it stays text (as a number it became 12345678901234567000).
      headers: { authorization: TOKEN, 'x-scope-orgid': '42', 'x-numeric': '7', 'x-api-key': '12345678901234567890' },
      serviceName: 'shop',
      sampler: 0.25,
      consumerSpanRelation: 'link',
      skipUnsampledParents: false,
    });
    for (const plan of consumerPlans(config).values()) {
      assert.equal(plan.spec.tracing?.serviceName, 'shop');
      assert.equal(plan.spec.tracing?.skipUnsampledParents, false);
    }
  });

  test('sampler takes both ends of the range', async () => {
    for (const ratio of [0, 1]) {
      const config = await loadRunnerConfig(configFile([`endpoint: ${ENDPOINT}`, `sampler: ${ratio}`]), {});
      assert.equal(config.tracing?.sampler, ratio);
    }
  });
});

describe('tracing: refused values', () => {
  test('unknown keys, with a did-you-mean', async () => {
    assert.equal(
      await issueAt([`endpoint: ${ENDPOINT}`, 'sampeler: 0.5'], 'tracing.sampeler'),
      'unknown key; did you mean "sampler"?',
    );
    assert.equal(await issueAt([`endpiont: ${ENDPOINT}`], 'tracing.endpiont'), 'unknown key; did you mean "endpoint"?');
    assert.match(
      await issueAt([`endpoint: ${ENDPOINT}`, 'exporter: otlp'], 'tracing.exporter'),
      /^unknown key; allowed here: enabled, endpoint, headers/,
    );
  });

  test('the endpoint: missing, not a URL, not HTTP, no path', async () => {
    assert.match(
      await issueAt(['sampler: 1'], 'tracing.endpoint'),
      /^missing, expected an http:\/\/ or https:\/\/ URL of the OTLP\/HTTP traces endpoint/,
    );
    assert.match(await issueAt(['endpoint: 4318'], 'tracing.endpoint'), /got a number$/);
    const unparsed = await issueAt(['endpoint: "not a url ?key=abc123"'], 'tracing.endpoint');
    assert.match(unparsed, /got a string that does not parse as a URL \(not shown: it may hold a key\)$/);
    assert.ok(!unparsed.includes('abc123'));
    assert.match(
      await issueAt(['endpoint: grpc://collector:4317'], 'tracing.endpoint'),
      /got a "grpc:" URL \(OTLP over gRPC is not supported: use the collector's HTTP port, 4318 by default\)$/,
    );
    assert.match(await issueAt(['endpoint: ftp://collector/v1/traces'], 'tracing.endpoint'), /got a "ftp:" URL$/);
    assert.match(
      await issueAt(['endpoint: http://collector:4318'], 'tracing.endpoint'),
      /got a URL without a path: the exporter posts to it as written\. Fix: http:\/\/collector:4318\/v1\/traces$/,
    );
  });

  test('sampler out of range or not a number', async () => {
    for (const value of ['1.5', '-0.1', 'half', 'true']) {
      const message = await issueAt([`endpoint: ${ENDPOINT}`, `sampler: ${value}`], 'tracing.sampler');
      assert.match(
        message,
        /^expected a sampling ratio from 0 to 1, got .+\. It samples the traces that start in the consumer/,
        value,
      );
    }
  });

  test('serviceName, consumerSpanRelation, skipUnsampledParents and enabled of the wrong kind', async () => {
    assert.equal(
      await issueAt([`endpoint: ${ENDPOINT}`, 'serviceName: ""'], 'tracing.serviceName'),
      'expected a non-empty string, got ""',
    );
    assert.equal(
      await issueAt([`endpoint: ${ENDPOINT}`, 'consumerSpanRelation: child'], 'tracing.consumerSpanRelation'),
      `expected 'parent' or 'link', got "child"`,
    );
    assert.equal(
      await issueAt([`endpoint: ${ENDPOINT}`, 'skipUnsampledParents: "yes"'], 'tracing.skipUnsampledParents'),
      'expected true or false, got "yes"',
    );
    assert.equal(
      await issueAt([`endpoint: ${ENDPOINT}`, 'enabled: yes please'], 'tracing.enabled'),
      'expected true or false, got "yes please"',
    );
    assert.match(
      await issueAt(['- endpoint'], 'tracing'),
      /^expected a section \{ endpoint, headers, serviceName, sampler, consumerSpanRelation, skipUnsampledParents, enabled \}/,
    );
  });

  test('headers: not a map, a bad name, a value of the wrong kind or with a line break; no value is ever shown', async () => {
    assert.match(
      await issueAt([`endpoint: ${ENDPOINT}`, 'headers: [a]'], 'tracing.headers'),
      /^expected a map of header names to values/,
    );
    const found = await issues(
      [
        `endpoint: ${ENDPOINT}`,
        'headers:',
        '  "bad name": ${OTLP_AUTH}',
        '  x-list: ["${OTLP_AUTH}"]',
        '  x-broken: "${OTLP_AUTH}\\r\\nx-injected: 1"',
        '  authorization: ${OTLP_AUTH}',
      ],
      { OTLP_AUTH: TOKEN },
    );
    const messages = Object.fromEntries(found.map((issue) => [issue.path, issue.message]));
    assert.deepEqual(messages, {
      'tracing.headers["bad name"]': "expected a header name (letters, digits and !#$%&'*+.^_`|~-)",
      'tracing.headers.x-list': 'expected a string, got a list',
      'tracing.headers.x-broken':
        'expected a header value without control characters (a line break, say; the value is not shown)',
    });
  });

  test('a header value never appears in any issue of the file, even one another check makes', async () => {
    // A wrong type elsewhere whose value happens to be the token: masked as every secret is.
    const error = await loadRunnerConfig(
      configFile([`endpoint: ${ENDPOINT}`, 'headers:', '  authorization: ${OTLP_AUTH}', 'serviceName: ["${OTLP_AUTH}"]']),
      { OTLP_AUTH: TOKEN },
    ).then(
      () => assert.fail('accepted'),
      (e: unknown) => e as ConfigError,
    );
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /tracing\.serviceName: expected a non-empty string, got \["\*\*\*"\]/);
    assert.ok(!error.message.includes('s3cr3t'), error.message);
  });

  test('every problem of the section at once', async () => {
    const found = await issues([
      'endpoint: ftp://x/y',
      'sampler: 2',
      'consumerSpanRelation: sibling',
      'serviceName: 3',
      'skipUnsampledParents: 1',
    ]);
    assert.deepEqual(
      found.map((issue) => issue.path),
      [
        'tracing.endpoint',
        'tracing.serviceName',
        'tracing.sampler',
        'tracing.consumerSpanRelation',
        'tracing.skipUnsampledParents',
      ],
    );
  });
});

test('the install command names each missing peer at the version txoutbox is tested with', () => {
  assert.equal(
    tracingInstallCommand(['@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/api']),
    'npm install @opentelemetry/api@~1.9.0 @opentelemetry/exporter-trace-otlp-http@^0.223.1',
  );
});

test('every tracing package is an optional peer (a project that never traces installs none) and a dev dependency (tested)', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
  for (const { name } of TRACING_PEERS) {
    assert.ok(pkg.peerDependencies?.[name] !== undefined, `${name} in peerDependencies`);
    assert.deepEqual(pkg.peerDependenciesMeta?.[name], { optional: true }, `${name} optional`);
    assert.ok(pkg.devDependencies?.[name] !== undefined, `${name} in devDependencies`);
    assert.equal(pkg.dependencies?.[name], undefined, `${name} not a dependency`);
  }
});
