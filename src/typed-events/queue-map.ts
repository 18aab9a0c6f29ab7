/**
 * The compile-time side of typed events (architecture/typed-events.md): a queue map names every
 * queue and its body type, and the Outbox's methods check queue names and bodies against it.
 *
 * `Outbox<Q, I>`: Q is the body each queue's handler gets; I the body publish accepts (the same
 * unless a schema transforms it: defaults, coercions). An interface works as a map
 * (`interface AppEvents { 'order.created': { orderId: string } }`).
 */

/** Any object type whose keys are queue names and whose values are body types. */
export type QueueMap = object;

/**
 * The map of an Outbox without one: every string is a queue and every body is `unknown` (0.1's
 * API; the types below read it so). It is `any`, not `Record<string, unknown>`, for one reason:
 * any typed Outbox must stay assignable to plain `Outbox` — `queueStateCollector(outbox)`, your
 * own `function wire(outbox: Outbox)` — and the compiler relates two Outbox types by their
 * parameters (invariant: K's constraint mentions Q), which only `any` satisfies both ways.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyQueues = any;

/** True for `any` (the untyped map), false for every real map (an object type: never `unknown`). */
type IsUntyped<Q> = unknown extends Q ? true : false;

/**
 * The queue names of a map. Untyped, or a map without keys: every string. (`object`, the
 * constraint, is what `InstanceType<typeof Outbox>` instantiates, and that must keep 0.1's API.)
 */
export type QueueName<Q> = IsUntyped<Q> extends true ? string : [keyof Q] extends [never] ? string : keyof Q & string;

/** The body a handler of queue K gets: the map's entry (unknown for an untyped Outbox). */
export type BodyOf<Q, K> = IsUntyped<Q> extends true ? unknown : K extends keyof Q ? Q[K] : unknown;

/** What publish() accepts for queue K: the input map's entry (unknown for an untyped Outbox). */
export type PublishBody<I, K> = IsUntyped<I> extends true ? unknown : K extends keyof I ? I[K] : unknown;

/**
 * The `schemas` option: a Standard Schema per queue (any may be left out). Written as two mapped
 * types, one per type parameter, so `new Outbox({ schemas })` infers both maps from the schemas —
 * the input map from each schema's input type, the body map from its output type — and
 * `new Outbox<AppEvents>({ schemas })` checks each schema against the map.
 */
export type QueueSchemas<Q, I = Q> = InputSchemas<I> & OutputSchemas<Q>;

type InputSchemas<I> = {
  readonly [K in keyof I]?: { readonly '~standard': { readonly types?: { readonly input: I[K] } | undefined } };
};

type OutputSchemas<Q> = {
  readonly [K in keyof Q]?: {
    readonly '~standard': {
      readonly version: 1;
      readonly validate: (value: unknown) => unknown;
      readonly types?: { readonly output: Q[K] } | undefined;
    };
  };
};
