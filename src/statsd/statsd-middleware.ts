import { type ConsumeObserver, observingMiddleware } from '../instrumentation/consume-observer.js';
import { exceptionTypeOf } from '../instrumentation/events.js';
import type { Middleware } from '../instrumentation/middleware.js';
import { boundedLabels } from '../prometheus/labels.js';
import type { Logger } from '../util/logger.js';
import { pathSegment } from './path-segment.js';
import type { StatsdClient } from './statsd-client.js';

/**
 * The statsd metrics of rejected's consumers, per message: `processed`, one counter per status
 * (`acked`, `nacked`, `rejected`, `error`; counted once the outcome is written, `error` when the
 * database did not take it), `retried`, `dropped.<reason>`, `exception.<type>`,
 * `processing_time` in ms, and the handler's custom stats (incr → c, set → g, observe/time → ms).
 * Publishes add `published` and `publish_time`. Keys are bounded: no ids, no messages.
 *
 * The consume hook is a consume observer (instrumentation/consume-observer.ts), with no state per
 * delivery: its `written` is handed the result that was written, so a middleware outside this one
 * that fails an acked run (its ack becomes a retry) is counted as the error and retry it wrote,
 * never as `acked` (statsd.test.ts).
 */
export function statsdMiddleware(
  client: StatsdClient,
  options: { readonly maxExceptionTypes?: number; readonly logger?: Logger } = {},
): Middleware {
  // Bounded and made one key segment as prometheusMiddleware's label is: a class made at run time
  // added a statsd key for good, and a name with `.`, `:` or `|` nested or broke the line.
  const { exceptionTypes } = boundedLabels(options, 'statsdMiddleware', { destination: 'queue', exceptionType: 'exception' });
  const exceptionKey = (error: unknown): string => `exception.${exceptionTypes.admit(pathSegment(exceptionTypeOf(error)))}`;
  const observer: ConsumeObserver<undefined> = {
    start: () => undefined,
    end(_state, _ctx, result) {
      client.increment('processed');
      // No result: a middleware inside this one failed; written counts the failure it became.
      if (result !== undefined) client.timing('processing_time', result.durationSeconds);
    },
    written(_state, write, result) {
      // The status, the retry and the drop as the database took them (as prometheusMiddleware): an
      // outcome fenced off by a lost lease, failed or abandoned is an error, and did not happen.
      if (result !== undefined && result.status === 'error') client.increment(exceptionKey(result.error));
      if (write !== 'written' || result === undefined) {
        client.increment('error');
        return;
      }
      client.increment(result.status);
      if (result.outcome.kind === 'retry') client.increment('retried');
      if (result.outcome.kind === 'terminal') client.increment(`dropped.${result.outcome.reason}`);
    },
  };
  return observingMiddleware(observer, {
    name: 'statsd',
    publish: async (_ctx, next) => {
      const started = performance.now();
      const result = await next();
      client.increment('published', result.inserted);
      client.timing('publish_time', (performance.now() - started) / 1000);
    },
    stat: (stat) => {
      if (stat.kind === 'counter') client.increment(stat.key, stat.value);
      else if (stat.kind === 'gauge') client.gauge(stat.key, stat.value);
      else client.timing(stat.key, stat.value);
    },
  });
}
