import type { ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

import { errorMessage } from '../../errors.js';
import type { Logger } from '../../util/logger.js';

/**
 * `exporter`, telling the log when exports start failing and when they recover: once per change,
 * not once per batch, so a collector that is down for an hour is two lines, not 720. Without it
 * the SDK reports failures to OpenTelemetry's diag logger, which nobody registered in a child, and
 * the spans would vanish unsaid. Delivery never waits on any of this (DESIGN §2.5): the batch
 * processor exports off the handlers' path and drops what it cannot send.
 */
export function watchExports(
  exporter: SpanExporter,
  logger: Logger,
  endpointOrigin: string,
  /** ExportResultCode.SUCCESS of the loaded @opentelemetry/core (an optional peer: never imported here). */
  successCode: ExportResultCode,
): SpanExporter {
  let failing = false;
  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
      exporter.export(spans, (result) => {
        if (result.code !== successCode && !failing) {
          failing = true;
          logger.warn(
            {
              endpoint: endpointOrigin,
              spans: spans.length,
              err: result.error === undefined ? 'unknown' : errorMessage(result.error),
            },
            'tracing export failed: spans are dropped until the endpoint accepts them',
          );
        } else if (result.code === successCode && failing) {
          failing = false;
          logger.warn({ endpoint: endpointOrigin }, 'tracing export recovered');
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: async () => {
      await exporter.forceFlush?.();
    },
  };
}
