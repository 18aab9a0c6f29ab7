import { integerOption } from '../util/integer-option.js';
import type { Logger } from '../util/logger.js';
import { resolveLogger } from './options.js';

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

/**
 * The label value every sample past a bound (`maxDestinations`, `maxExceptionTypes`) is counted
 * under. Queue names may hold any character but NUL (producer/publish-options.ts), so no readable
 * value is impossible as a queue; `""` is, but Prometheus reads an empty label as an absent one.
 * A queue really named `_other` shares this series, which the warning says.
 */
export const OVERFLOW_LABEL = '_other';

/**
 * The distinct values one label takes in a seam's series (a prometheusMiddleware label, an
 * openTelemetryRecorder attribute), at most `limit`: the first `limit` values seen are kept as they
 * are, any other becomes OVERFLOW_LABEL. A data-derived value (a per-tenant queue
 * `orders.<tenantId>`, a class created at run time) would otherwise add series forever: memory that never shrinks, and a scrape that grows with it (before this
 * bound, publishing once to each of 10,000 queues made 10,001 series per publish family, a 24 MB
 * exposition and 3.4 s to render it). Samples of a value turned away still count, under
 * OVERFLOW_LABEL, so the totals stay exact. The first value turned away is warned about, once.
 *
 * One Set lookup per call and no allocation: `admit` is on the publish path.
 */
export class LabelValues {
  readonly #admitted = new Set<string>();
  readonly #limit: number;
  readonly #overflowed: (value: string) => void;
  #warned = false;

  /** `overflowed` is called once, with the first value turned away. */
  constructor(limit: number, overflowed: (value: string) => void) {
    this.#limit = limit;
    this.#overflowed = overflowed;
  }

  /** `value`, or OVERFLOW_LABEL once `limit` other values were admitted. */
  admit(value: string): string {
    if (this.#admitted.has(value)) return value;
    if (this.#admitted.size < this.#limit) {
      this.#admitted.add(value);
      return value;
    }
    if (!this.#warned) {
      this.#warned = true;
      try {
        this.#overflowed(value);
      } catch {
        // A logger that throws must not fail the publish or the delivery being counted.
      }
    }
    return OVERFLOW_LABEL;
  }
}

/** As queueStateCollector's maxQueues: a dashboard row per queue stops being readable long before. */
const DEFAULT_MAX_DESTINATIONS = 500;
/** As the Outbox's customStatsLimit: an application's error classes are far fewer. */
const DEFAULT_MAX_EXCEPTION_TYPES = 100;

/** The options that bound a label (prometheusMiddleware, openTelemetryRecorder). */
export type LabelBoundOption = 'maxDestinations' | 'maxExceptionTypes';

/** The warning's `fix`: raise the bound for a few fixed values; a value built from data is the mistake. */
const OVERFLOW_FIX: Record<LabelBoundOption, string> = {
  maxDestinations:
    'Raise maxDestinations if these queues are fixed and few. A queue name built from data (orders.<tenantId>) ' +
    'is better one queue, with the tenant in the body or the orderingKey.',
  maxExceptionTypes:
    'Raise maxExceptionTypes if these classes are fixed and few. A class made at run time is better one class, ' +
    'with the detail in its message.',
};

/** Where a seam's bound warnings go and how they name it: `fields` tell seams apart (prefix and appName, say). */
interface SeamAt {
  readonly source: string;
  readonly logger: Logger;
  readonly fields?: Record<string, unknown> | undefined;
}

/**
 * A seam's two bounded labels (prometheusMiddleware, openTelemetryRecorder), from its options
 * `maxDestinations` (1 to 100,000), `maxExceptionTypes` (1 to 10,000) and `logger` (where the
 * warning of a bound reached goes), validated here, once; `labels` are the label or attribute
 * names the seam gives them, `fields` what its warning adds to tell it apart.
 */
export function boundedLabels(
  raw: { readonly maxDestinations?: unknown; readonly maxExceptionTypes?: unknown; readonly logger?: unknown },
  source: string,
  labels: { readonly destination: string; readonly exceptionType: string },
  fields?: Record<string, unknown>,
): { readonly destinations: LabelValues; readonly exceptionTypes: LabelValues } {
  const at: SeamAt = { source, logger: resolveLogger(raw.logger), fields };
  const maxDestinations = integerOption('maxDestinations', raw.maxDestinations, 1, 100_000, DEFAULT_MAX_DESTINATIONS);
  const maxExceptionTypes = integerOption('maxExceptionTypes', raw.maxExceptionTypes, 1, 10_000, DEFAULT_MAX_EXCEPTION_TYPES);
  return {
    destinations: new LabelValues(maxDestinations, overflowWarning(at, 'maxDestinations', labels.destination, maxDestinations)),
    exceptionTypes: new LabelValues(
      maxExceptionTypes,
      overflowWarning(at, 'maxExceptionTypes', labels.exceptionType, maxExceptionTypes),
    ),
  };
}

/**
 * The one warning a LabelValues gives when `option` turns its first value away: names the option,
 * the label, the value and the fix.
 */
function overflowWarning(at: SeamAt, option: LabelBoundOption, label: string, limit: number): (value: string) => void {
  return (value) => {
    at.logger.warn(
      { option, limit, label, value, ...at.fields, fix: OVERFLOW_FIX[option] },
      `${at.source}: ${option} (${limit}) reached: ${label} ${JSON.stringify(value)} and every later new one ` +
        `are counted under ${label}="${OVERFLOW_LABEL}" (a real ${label} of that name shares the series)`,
    );
  };
}
