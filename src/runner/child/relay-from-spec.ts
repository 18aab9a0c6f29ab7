import type { Outbox } from '../../outbox.js';
import { relaySinkType } from '../config/relay-sink-types.js';
import type { RelayChildSpec } from '../protocol.js';
import { subscribeOptionsFromSpec } from './subscribe-options-from-spec.js';

/**
 * Adds the spec's relay to the child's Outbox: the sink its registered type builds from the options
 * (validated by the factory's own resolver when the config loaded; the factory checks them again)
 * and relay()'s options, RELAY_DEFAULTS under the file's. No sink connects here: the first send or
 * check() does.
 */
export function relayFromSpec(outbox: Outbox, spec: RelayChildSpec): void {
  const type = relaySinkType(spec.sink.type);
  // Only a supervisor of another version could send this: the config refuses unknown types.
  if (type === undefined) throw new Error(`unknown relay sink type ${JSON.stringify(spec.sink.type)}`);
  const sink = type.create(spec.sink.options);
  outbox.relay(spec.queues, sink, { ...subscribeOptionsFromSpec(spec.subscribe), name: spec.consumer });
}
