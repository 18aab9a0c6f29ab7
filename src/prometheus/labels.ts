/** The `broker` label value: FastStream's BROKER_SYSTEM for the outbox, so dashboards filter on it. */
export const BROKER = 'outbox';

/**
 * An exemplar's label set, or undefined. OpenMetrics caps an exemplar's labels at 128 characters
 * and prom-client throws past that; a trace id that long is not a trace id, so it is dropped here
 * rather than thrown from a metrics call.
 */
export function traceExemplar(traceId: string | undefined): { trace_id: string } | undefined {
  if (typeof traceId !== 'string' || traceId.length === 0 || traceId.length > 64) return undefined;
  return { trace_id: traceId };
}
