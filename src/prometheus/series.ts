import type { Counter, Gauge, Histogram } from 'prom-client';

import { traceExemplar } from './labels.js';

/**
 * One labelled series of a prom-client metric, updated per message without prom-client's per-call
 * work.
 *
 * prom-client finds a series by hashing the label object on every `inc` / `observe` (a string built
 * from every label, plus validating them; twice for an observation with an exemplar), and its
 * `metric.labels(…)` children do the same: they only bind the label object. On the delivery path
 * that was most of the Prometheus seams' cost. A `Series` is made once per label tuple (callers
 * cache it) and, after its first sample went through prom-client's public API, which creates the
 * series exactly as before, it keeps the series' entry and updates it in place: what prom-client
 * itself does after the hash lookup (`value += n`; `sum`, `count` and one bucket, the bucket's
 * exemplar).
 *
 * That entry is prom-client's internal `hashMap` (the same shape from 12 to 15). It is checked when
 * taken (an unexpected shape makes this series use the public API for good) and the entry is
 * looked up again at every call (`hashMap[key] === entry`, a lookup by a string whose hash is
 * cached), so a `reset()`, `registry.resetMetrics()`, `remove()` or `set()` that replaced or
 * dropped it sends the next call through the public API, which re-creates it, and the entry is
 * taken anew. Values the fast path does not handle (a negative or non-finite counter increment, a
 * non-finite observation, a bucket whose exemplar does not exist yet) take the public API too, so
 * prom-client's own errors and behaviour are unchanged.
 */

type Labels = Readonly<Record<string, string>>;

interface ValueEntry {
  labels: unknown;
  value: number;
}

interface HistogramEntry {
  labels: unknown;
  sum: number;
  count: number;
  bucketValues: Record<string, number> | null;
  bucketExemplars?: Record<string, { labelSet: unknown; value: number; timestamp?: number } | null> | null;
}

/** prom-client's internals this module reads (not in its type declarations). */
interface Internals<E> {
  hashMap?: Record<string, E | undefined> | null;
  sortedLabelNames?: readonly string[];
  labelNames?: readonly string[];
  upperBounds?: readonly number[];
  enableExemplars?: boolean;
}

/** prom-client's key for a label set (util.js fastHashObject over the sorted label names). */
function keyOf(metric: Internals<unknown>, labels: Labels): string | undefined {
  const names = metric.sortedLabelNames;
  if (!Array.isArray(names)) return undefined;
  let key = '';
  for (const name of names as readonly string[]) {
    const value = labels[name];
    if (value !== undefined) key += `${name}:${value},`;
  }
  return key;
}

function sameLabels(entry: { labels: unknown }, labels: Labels): boolean {
  const stored = entry.labels;
  if (typeof stored !== 'object' || stored === null) return false;
  for (const name of Object.keys(labels)) if ((stored as Record<string, unknown>)[name] !== labels[name]) return false;
  return true;
}

/**
 * The entry of `labels` in `metric`, when it is there and has the expected shape; undefined for
 * good (`unsupported`) when the internals are not what this module knows.
 */
function take<E extends { labels: unknown }>(
  metric: Internals<E>,
  key: string | undefined,
  labels: Labels,
  valid: (entry: E) => boolean,
): E | undefined {
  if (key === undefined) return undefined;
  const map = metric.hashMap;
  if (typeof map !== 'object' || map === null) return undefined;
  const entry = map[key];
  return entry !== undefined && sameLabels(entry, labels) && valid(entry) ? entry : undefined;
}

abstract class Series<M, E extends { labels: unknown }> {
  protected readonly metric: M;
  protected readonly labels: Labels;
  protected entry: E | undefined;
  readonly #internals: Internals<E>;
  readonly #key: string | undefined;
  /** The internals were not as expected once: public API only from then on. */
  #unsupported = false;

  constructor(metric: M, labels: Labels) {
    this.metric = metric;
    this.labels = labels;
    this.#internals = metric as Internals<E>;
    this.#key = keyOf(this.#internals, labels);
    if (this.#key === undefined) this.#unsupported = true;
  }

  /** The entry when it is still the series' current one. */
  protected current(): E | undefined {
    const { entry } = this;
    // #key is defined whenever entry is (take() needs it).
    return entry !== undefined && this.#internals.hashMap?.[this.#key as string] === entry ? entry : undefined;
  }

  /** After a public call: takes the entry it created or updated. */
  protected retake(): void {
    if (this.#unsupported) return;
    this.entry = take(this.#internals, this.#key, this.labels, (entry) => this.valid(entry));
    if (this.entry === undefined) this.#unsupported = true;
  }

  protected abstract valid(entry: E): boolean;
}

/** What Counter and Gauge share: `inc(labels, value)`, which creates the series or adds to it. */
interface Incrementable {
  inc(labels: Labels, value: number): void;
}

/** A counter's or a gauge's series: one number, added to in place. */
abstract class ValueSeries<M extends Incrementable> extends Series<M, ValueEntry> {
  /** Adds `delta` in place when `inPlace` (the value is one the fast path handles), else through prom-client. */
  protected bump(delta: number, inPlace: boolean): void {
    const entry = this.current();
    if (entry !== undefined && inPlace) {
      entry.value += delta;
      return;
    }
    this.metric.inc(this.labels, delta);
    this.retake();
  }

  protected valid(entry: ValueEntry): boolean {
    return typeof entry.value === 'number';
  }
}

export class CounterSeries extends ValueSeries<Counter> {
  inc(value: number): void {
    // NaN and ±Infinity fail the test (and negatives): prom-client decides what they do.
    this.bump(value, value >= 0 && value < Infinity);
  }
}

export class GaugeSeries extends ValueSeries<Gauge> {
  /** Adds `delta` (negative to decrement). */
  add(delta: number): void {
    this.bump(delta, Number.isFinite(delta));
  }
}

export class HistogramSeries extends Series<Histogram, HistogramEntry> {
  /** The bucket bounds, and their keys in `bucketValues` (prom-client turns the number into a string each time). */
  readonly #bounds: readonly number[];
  readonly #keys: readonly string[];
  readonly #exemplars: boolean;

  constructor(metric: Histogram, labels: Labels) {
    super(metric, labels);
    const internals = metric as Internals<HistogramEntry>;
    this.#bounds = Array.isArray(internals.upperBounds) ? internals.upperBounds : [];
    this.#keys = this.#bounds.map(String);
    this.#exemplars = internals.enableExemplars === true;
  }

  /**
   * One observation; with a trace id and a histogram made with exemplars, that bucket's exemplar
   * becomes `{ trace_id }` (traceExemplar: ids that are not one are left out).
   */
  observe(value: number, traceId?: string): void {
    const exemplar = this.#exemplars ? traceExemplar(traceId) : undefined;
    const entry = this.current();
    if (entry !== undefined && Number.isFinite(value)) {
      const bounds = this.#bounds;
      let i = 0;
      while (i < bounds.length && value > (bounds[i] as number)) i++;
      // Above the last bound: only sum and count (+Inf is the count), as prom-client does.
      const key = i < bounds.length ? (this.#keys[i] as string) : undefined;
      const held = key === undefined || exemplar === undefined ? undefined : entry.bucketExemplars?.[key];
      // A bucket's first exemplar is prom-client's to create.
      if (exemplar === undefined || (typeof held === 'object' && held !== null)) {
        entry.sum += value;
        entry.count += 1;
        if (key !== undefined) {
          const buckets = entry.bucketValues as Record<string, number>;
          buckets[key] = (buckets[key] as number) + 1;
        }
        if (held !== undefined && held !== null && exemplar !== undefined) {
          held.labelSet = exemplar;
          held.value = value;
          held.timestamp = Date.now() / 1000;
        }
        return;
      }
    }
    if (this.#exemplars)
      this.metric.observe(
        exemplar === undefined ? { labels: this.labels, value } : { labels: this.labels, value, exemplarLabels: exemplar },
      );
    else this.metric.observe(this.labels, value);
    this.retake();
  }

  protected valid(entry: HistogramEntry): boolean {
    if (typeof entry.sum !== 'number' || typeof entry.count !== 'number') return false;
    const buckets = entry.bucketValues;
    if (typeof buckets !== 'object' || buckets === null) return false;
    if (this.#keys.length === 0 || this.#keys.some((key) => typeof buckets[key] !== 'number')) return false;
    return !this.#exemplars || (typeof entry.bucketExemplars === 'object' && entry.bucketExemplars !== null);
  }
}
