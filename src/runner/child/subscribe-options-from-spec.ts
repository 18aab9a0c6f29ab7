import type { SubscribeOptions } from '../../subscriber/subscription-options.js';
import { retryFromConfig } from '../config/retry-config.js';

/**
 * Rebuilds subscribe() options from a ChildSpec's JSON: everything is plain JSON except `retry`,
 * which is the config's `{ strategy, … }` section and becomes its strategy instance here. The
 * supervisor validated all of it; subscribe() and the strategy classes check it again anyway.
 */
export function subscribeOptionsFromSpec(json: Readonly<Record<string, unknown>>): SubscribeOptions {
  const { retry, ...rest } = json;
  const options = rest as SubscribeOptions;
  return retry === undefined ? options : { ...options, retry: retryFromConfig(retry) };
}
