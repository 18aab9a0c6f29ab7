import type { OutboxEvent, Recorder } from '../instrumentation/events.js';
import { pathSegment } from './path-segment.js';
import type { StatsdClient } from './statsd-client.js';

/**
 * The statsd lines of the recorder seam, beside statsdMiddleware's per-message ones. Only relays
 * report here: a relay's rows already pass through the middleware as handler runs (`processed`,
 * `acked`, `rejected`, `error`, `processing_time`), and what the middleware cannot tell is the
 * broker's side, per sink:
 *
 * - `relay.<sink>.confirmed` / `.refused` / `.failed` (c): rows the broker confirmed (deleted),
 *   refused (ended into the DLQ) or that failed (retried);
 * - `relay.<sink>.confirm_time` (ms): send → the broker's confirm, confirmed rows only (failures
 *   are mostly timeouts and would hide the broker's real latency);
 * - `relay.<sink>.lag` (ms): the row's created_at → the broker's confirm, confirmed rows only;
 * - `relay.<sink>.batches` (c) and `relay.<sink>.batch_time` (ms): batches (the sends started in
 *   one event-loop turn) and first send → last settled; rows per batch = the three outcome
 *   counters over `batches`.
 *
 * Keys are bounded (sink names are code, never ids). Events this version does not know, and the
 * other events, are ignored.
 */
export function statsdRecorder(client: StatsdClient): Recorder {
  return (event: OutboxEvent): void => {
    switch (event.type) {
      case 'relayed': {
        const key = `relay.${pathSegment(event.sink)}`;
        client.increment(`${key}.${event.outcome}`);
        if (event.outcome !== 'confirmed') return;
        if (Number.isFinite(event.confirmSeconds)) client.timing(`${key}.confirm_time`, event.confirmSeconds);
        if (event.lagSeconds !== undefined && Number.isFinite(event.lagSeconds)) client.timing(`${key}.lag`, event.lagSeconds);
        return;
      }
      case 'relay_batch': {
        const key = `relay.${pathSegment(event.sink)}`;
        client.increment(`${key}.batches`);
        if (Number.isFinite(event.durationSeconds)) client.timing(`${key}.batch_time`, event.durationSeconds);
        return;
      }
      default:
        return; // statsdMiddleware's, or an event type added after this version
    }
  };
}
