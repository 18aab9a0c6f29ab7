import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Counter, register, Registry } from 'prom-client';

import { InvalidOptionError } from '../../src/index.js';
import { prometheusMiddleware, prometheusRecorder } from '../../src/prometheus/index.js';

type Factory = (options: never) => unknown;
const seams: [string, Factory][] = [
  ['prometheusMiddleware', prometheusMiddleware],
  ['prometheusRecorder', prometheusRecorder],
];

/** Asserts `fn` throws an InvalidOptionError naming `option`, with a message matching `message`. */
function assertInvalid(fn: () => unknown, option: string, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${String(error)}`);
    assert.equal(error.option, option);
    assert.equal(error.code, 'INVALID_OPTION');
    assert.match(error.message, message);
    return true;
  });
}

describe('Prometheus seam options are validated at construction', () => {
  for (const [what, create] of seams) {
    const invalid: [string, unknown, string, RegExp][] = [
      ['no options at all', undefined, 'options', /an object of .* options/],
      ['options that are not an object', 'txoutbox', 'options', /an object/],
      ['no registry', {}, 'registry', /a prom-client Registry.*never registers into the global registry/],
      ['a registry that is not one', { registry: { metrics: () => '' } }, 'registry', /a prom-client Registry.*got "object"/],
      ['a registry given as a string', { registry: 'default' }, 'registry', /got "string"/],
      ['a prefix with a dash', { registry: new Registry(), prefix: 'my-app' }, 'prefix', /\[a-zA-Z_\]/],
      ['a prefix starting with a digit', { registry: new Registry(), prefix: '1app' }, 'prefix', /metric name prefix/],
      ['an empty prefix', { registry: new Registry(), prefix: '' }, 'prefix', /metric name prefix/],
      ['a prefix that is not a string', { registry: new Registry(), prefix: 42 }, 'prefix', /got 42/],
      ['an appName that is not a string', { registry: new Registry(), appName: 7 }, 'appName', /a string/],
      ['a misspelt option', { registry: new Registry(), metricsPrefix: 'faststream' }, 'metricsPrefix', /one of the .* options/],
    ];
    for (const [name, options, option, message] of invalid) {
      test(`${what}: ${name} → InvalidOptionError(${option})`, () => {
        assertInvalid(() => create(options as never), option, message);
      });
    }
  }

  const badBuckets: [string, unknown][] = [
    ['empty', []],
    ['not an array', '0.1,1'],
    ['decreasing', [1, 0.5]],
    ['repeated', [0.5, 0.5]],
    ['with +Inf', [0.1, Infinity]],
    ['with NaN', [0.1, NaN]],
    ['with a string', [0.1, '1']],
  ];
  for (const option of ['durationBuckets', 'sizeBuckets']) {
    for (const [name, buckets] of badBuckets) {
      test(`prometheusMiddleware: ${option} ${name} → InvalidOptionError(${option})`, () => {
        assertInvalid(() => prometheusMiddleware({ registry: new Registry(), [option]: buckets }), option, /strictly increasing/);
      });
    }
  }

  test('the recorder takes no bucket options', () => {
    assertInvalid(
      () => prometheusRecorder({ registry: new Registry(), durationBuckets: [1] } as never),
      'durationBuckets',
      /one of/,
    );
  });

  test('a bad option registers nothing, and nothing ever lands in the global registry', async () => {
    const registry = new Registry();
    assert.throws(() => prometheusMiddleware({ registry, sizeBuckets: [] }));
    assert.equal(registry.getMetricsAsArray().length, 0);
    prometheusMiddleware({ registry });
    prometheusRecorder({ registry });
    const global = (await register.getMetricsAsJSON()).map((metric) => metric.name);
    assert.deepEqual(
      global.filter((name) => name.startsWith('txoutbox')),
      [],
    );
  });
});

describe('metric names already in the registry', () => {
  test('a name held by another metric is an InvalidOptionError(prefix), and nothing is left half-registered', () => {
    const registry = new Registry();
    new Counter({ name: 'txoutbox_published_messages_total', help: 'mine', registers: [registry] });
    assertInvalid(
      () => prometheusMiddleware({ registry }),
      'prefix',
      /taken by another metric\), got "txoutbox_published_messages_total"/,
    );
    assert.deepEqual(
      registry.getMetricsAsArray().map((metric) => metric.name),
      ['txoutbox_published_messages_total'],
      'the series registered before the clash were removed again',
    );
    assert.doesNotThrow(() => prometheusMiddleware({ registry, prefix: 'orders' }), 'another prefix works');
  });

  test('the same seam twice on one registry reuses its series (two Outboxes, told apart by appName)', () => {
    const registry = new Registry();
    prometheusMiddleware({ registry, appName: 'billing' });
    prometheusRecorder({ registry, appName: 'billing' });
    const count = registry.getMetricsAsArray().length;
    assert.doesNotThrow(() => {
      prometheusMiddleware({ registry, appName: 'shipping' });
      prometheusRecorder({ registry, appName: 'shipping' });
    });
    assert.equal(registry.getMetricsAsArray().length, count);
  });

  test('the same names with other buckets cannot share a registry', () => {
    const registry = new Registry();
    prometheusMiddleware({ registry });
    assertInvalid(() => prometheusMiddleware({ registry, durationBuckets: [1, 2] }), 'prefix', /other labels or buckets/);
  });

  test('after registry.clear() the series are created afresh', () => {
    const registry = new Registry();
    prometheusRecorder({ registry });
    registry.clear();
    prometheusRecorder({ registry });
    assert.ok(registry.getSingleMetric('txoutbox_outbox_fetches_total') !== undefined);
  });
});
