import { InvalidOptionError } from '../errors.js';

/** How a `process` span relates to the `publish` span whose context the row carries. */
export type ConsumerSpanRelation = 'parent' | 'link';

/**
 * `consumerSpanRelation`, resolved: absent is `'parent'`. In a file of its own, without
 * `@opentelemetry/api`, so the runner's config (src/runner/config/validate-tracing.ts) judges the
 * value with this very rule before it knows whether the optional peers are installed.
 */
export function resolveConsumerSpanRelation(value: unknown): ConsumerSpanRelation {
  if (value === undefined) return 'parent';
  if (value === 'parent' || value === 'link') return value;
  throw new InvalidOptionError({ option: 'consumerSpanRelation', value, expected: "'parent' or 'link'" });
}
