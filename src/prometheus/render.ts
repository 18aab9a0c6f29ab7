/**
 * Serving one registry in both exposition formats.
 *
 * prom-client 15 ties the format to the registry: `registry.metrics()` prints Prometheus text or
 * OpenMetrics by `registry.contentType`, and only OpenMetrics carries exemplars (the `# {trace_id=…}`
 * suffix on a bucket line). Switching the registry with `setContentType()` per scrape is not safe:
 * `metrics()` is async (collectors may query the database), so two scrapes asking for different
 * formats would interleave, and in OpenMetrics mode `metrics()` renames every counter object in place
 * (`x_total` → `x`, re-suffixed on output) — after which the same registry's Prometheus text,
 * `getSingleMetricAsString` and `getMetricsAsJSON` report counters without `_total`.
 *
 * So a render never touches the user's registry: it takes one `getMetricsAsJSON()` snapshot (values,
 * default labels and exemplars included; collectors run once) and prints it through a throwaway
 * registry of the requested content type, holding read-only views of the snapshot. Output is
 * prom-client's own formatting either way; the user's registry keeps whatever type it was created
 * with, and exemplars recorded into it appear whenever OpenMetrics is asked for.
 */
import { type Metric, Registry, type RegistryContentType } from 'prom-client';

import type { AnyRegistry } from './options.js';

export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const OPENMETRICS_CONTENT_TYPE = Registry.OPENMETRICS_CONTENT_TYPE;

/** The Content-Type header for what renderMetrics(…, openMetrics) returns. */
export function metricsContentType(openMetrics: boolean): RegistryContentType {
  return openMetrics ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_CONTENT_TYPE;
}

/** Renders every metric of `registry` as Prometheus text (no exemplars) or OpenMetrics (with them). */
export async function renderMetrics(registry: AnyRegistry, openMetrics: boolean): Promise<string> {
  const snapshot = await registry.getMetricsAsJSON();
  const view = new Registry<RegistryContentType>();
  view.setContentType(metricsContentType(openMetrics));
  for (const data of snapshot) {
    // Registry.metrics() reads name/type and calls get(); in OpenMetrics mode it rewrites `name`,
    // which is why get() reports the holder's current name rather than the snapshot's.
    const holder = { ...data, get: () => Promise.resolve({ ...data, name: holder.name }) };
    view.registerMetric(holder as unknown as Metric);
  }
  return await view.metrics();
}

/**
 * True when a scraper's Accept header prefers OpenMetrics to Prometheus text. Prometheus sends
 * `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,…`; curl and older
 * scrapers accept any type or send no Accept header, and get text (the safe default).
 */
export function prefersOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let openMetrics = 0;
  let text = 0;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    const qParam = params.find((param) => param.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === 'application/openmetrics-text') openMetrics = Math.max(openMetrics, q);
    else if (type === 'text/plain') text = Math.max(text, q);
  }
  return openMetrics > 0 && openMetrics >= text;
}
