/**
 * A runner child's tracing when another OpenTelemetry SDK registered the globals first (auto-
 * instrumentation preloaded through NODE_OPTIONS): said at warn, not traced on silently. The real
 * SDK packages; the OTLP endpoint is never reached (no span ends before shutdown).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { trace } from '@opentelemetry/api';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

import { startChildTracing } from '../../src/runner/tracing/child-tracing.js';
import type { Logger } from '../../src/util/logger.js';

test('a tracer provider registered before the child: a warning names what was taken', async () => {
  assert.equal(trace.setGlobalTracerProvider(new BasicTracerProvider()), true);
  const warnings: { fields: Record<string, unknown>; message: string }[] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (fields, message) => warnings.push({ fields, message }),
    error: () => undefined,
  };
  const tracing = await startChildTracing(
    {
      endpoint: 'http://127.0.0.1:9/v1/traces',
      headers: {},
      serviceName: 'orders',
      sampler: 1,
      consumerSpanRelation: 'parent',
      skipUnsampledParents: true,
    },
    logger,
  );
  try {
    const taken = warnings.find((w) => /another OpenTelemetry SDK registered/.test(w.message));
    assert.ok(taken, JSON.stringify(warnings));
    assert.deepEqual(taken.fields.alreadyRegistered, ['tracer provider']);
  } finally {
    await tracing.shutdown();
  }
});
