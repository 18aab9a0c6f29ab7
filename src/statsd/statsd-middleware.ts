import { exceptionTypeOf } from '../instrumentation/events.js';
import type { Middleware } from '../instrumentation/middleware.js';
import type { StatsdClient } from './statsd-client.js';

/**
 * The statsd metrics of rejected's consumers, per message: `processed`, one counter per status
 * (`acked`, `nacked`, `rejected`, `error`; counted once the outcome is written, `error` when the
 * database did not take it), `retried`, `dropped.<reason>`, `exception.<type>`,
 * `processing_time` in ms, and the handler's custom stats (incr → c, set → g, observe/time → ms).
 * Publishes add `published` and `publish_time`. Keys are bounded: no ids, no messages.
 */
export function statsdMiddleware(client: StatsdClient): Middleware {
  return {
    name: 'statsd',
    consume: async (ctx, next) => {
      const result = await next();
      client.increment('processed');
      client.timing('processing_time', result.durationSeconds);
      if (result.status === 'error') client.increment(`exception.${exceptionTypeOf(result.error)}`);
      // The status, the retry and the drop as the database took them (as prometheusMiddleware): an
      // outcome fenced off by a lost lease, failed or abandoned is an error, and did not happen.
      void ctx.written.then((write) => {
        if (write !== 'written') {
          client.increment('error');
          return;
        }
        client.increment(result.status);
        if (result.outcome.kind === 'retry') client.increment('retried');
        if (result.outcome.kind === 'terminal') client.increment(`dropped.${result.outcome.reason}`);
      });
    },
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
  };
}
