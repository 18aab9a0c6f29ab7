/**
 * Standard Schema v1 (https://standardschema.dev), declared here as the spec recommends instead of
 * depending on a package: zod (>= 3.24), valibot (>= 1), arktype, effect/schema and others expose
 * this `~standard` property, so a schema of any of them validates bodies without txoutbox knowing
 * the library. Only what txoutbox reads is kept; the spec's own types are structurally compatible.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaV1Props<Input, Output>;
}

export interface StandardSchemaV1Props<Input = unknown, Output = Input> {
  readonly version: 1;
  readonly vendor: string;
  /** Sync for most schemas; a Promise for schemas with async refinements. */
  readonly validate: (value: unknown) => StandardSchemaV1Result<Output> | Promise<StandardSchemaV1Result<Output>>;
  /** Type-only: never read at run time. */
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
}

export type StandardSchemaV1Result<Output> =
  { readonly value: Output; readonly issues?: undefined } | { readonly issues: readonly StandardSchemaV1Issue[] };

export interface StandardSchemaV1Issue {
  readonly message: string;
  /** Keys from the root to the failing value; a segment is a key or `{ key }`. */
  readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined;
}

/** The schema's input type: what publish() accepts. */
export type InferInput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['input'];
/** The schema's output type: what a handler's message.body is. */
export type InferOutput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['output'];
