import { CONTENT_TYPE_HEADER } from '../envelope/headers.js';
import { type BodyIssue, errorMessage, InvalidBodyError, InvalidOptionError } from '../errors.js';
import type { StandardSchemaV1, StandardSchemaV1Issue, StandardSchemaV1Result } from './standard-schema.js';

/** The Outbox's `schemas` option once validated: queue → schema. Undefined when none was given. */
export type BodySchemas = ReadonlyMap<string, StandardSchemaV1>;

/** What a schema run settles to: the schema's output, or the error that names the issues. */
export type BodyCheck = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: InvalidBodyError };

const LONGEST_QUEUE = 255;

function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as { '~standard'?: unknown })['~standard'];
  return (
    typeof props === 'object' &&
    props !== null &&
    (props as { version?: unknown }).version === 1 &&
    typeof (props as { validate?: unknown }).validate === 'function'
  );
}

/**
 * Validates the `schemas` option once, at construction. An empty map counts as none, so an
 * Outbox without schemas pays nothing on publish or consume (no lookup result, no wrapper).
 */
export function resolveBodySchemas(value: unknown): BodySchemas | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Map) {
    throw new InvalidOptionError({
      option: 'schemas',
      value,
      expected: "an object of queue name → Standard Schema (`{ 'order.created': z.object({ … }) }`)",
    });
  }
  const schemas = new Map<string, StandardSchemaV1>();
  for (const [queue, schema] of Object.entries(value as Record<string, unknown>)) {
    const option = `schemas[${JSON.stringify(queue)}]`;
    if (queue.length === 0 || queue.length > LONGEST_QUEUE) {
      throw new InvalidOptionError({ option, value: queue, expected: `a queue name of 1 to ${LONGEST_QUEUE} characters` });
    }
    if (schema === undefined) continue;
    if (!isStandardSchema(schema)) {
      throw new InvalidOptionError({
        option,
        value: schema,
        expected:
          "a Standard Schema v1 (an object whose '~standard' has version 1 and validate()): zod >= 3.24, valibot >= 1, arktype >= 2, …",
        fix: "Upgrade the schema library, or wrap your validator: { '~standard': { version: 1, vendor: 'mine', validate: (value) => ({ value }) } }.",
      });
    }
    schemas.set(queue, schema);
  }
  return schemas.size === 0 ? undefined : schemas;
}

function pathOf(issue: StandardSchemaV1Issue): string {
  const segments = issue.path ?? [];
  if (segments.length === 0) return '(root)';
  let path = '';
  for (const segment of segments) {
    const key = typeof segment === 'object' ? segment.key : segment;
    if (typeof key === 'number') path += `[${key}]`;
    else path += path === '' ? String(key) : `.${String(key)}`;
  }
  return path;
}

/** The schema's issues as the error names them; `prefix` places a batch's body (`bodies[3]`). */
export function bodyIssues(issues: readonly StandardSchemaV1Issue[], prefix = ''): BodyIssue[] {
  return issues.map((issue) => {
    const path = pathOf(issue);
    return {
      path: prefix === '' ? path : path === '(root)' ? prefix : `${prefix}${path.startsWith('[') ? '' : '.'}${path}`,
      message: issue.message,
    };
  });
}

export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * Runs `schema` on `value`. Stays synchronous for a synchronous schema (most are): the caller
 * awaits only when the schema itself returned a Promise (async refinements).
 */
export function runSchema(
  schema: StandardSchemaV1,
  value: unknown,
  toError: (issues: readonly StandardSchemaV1Issue[]) => InvalidBodyError,
): BodyCheck | Promise<BodyCheck> {
  const settle = (result: StandardSchemaV1Result<unknown>): BodyCheck =>
    result.issues === undefined ? { ok: true, value: result.value } : { ok: false, error: toError(result.issues) };
  const result = schema['~standard'].validate(value);
  return isPromise(result) ? result.then(settle) : settle(result);
}

/**
 * The error for a consumed body that cannot be decoded (bytes labelled `application/json` that are
 * not JSON: written by another producer, or relabelled at publish). No schema can accept a value
 * that does not exist, and the same bytes fail the same way on every delivery, so it is a schema
 * rejection of the whole body — `(root)` — with the decoder's error as its `cause`.
 */
export function undecodableBody(
  message: { readonly id: string; readonly queue: string; readonly headers: Readonly<Record<string, string>> },
  decodeError: unknown,
): InvalidBodyError {
  const contentType = message.headers[CONTENT_TYPE_HEADER] ?? '(none)';
  const error = new InvalidBodyError({
    queue: message.queue,
    phase: 'consume',
    messageId: message.id,
    issues: [
      { path: '(root)', message: `the body is labelled ${contentType} but cannot be decoded: ${errorMessage(decodeError)}` },
    ],
  });
  // As `new Error(message, { cause })` defines it (own, not enumerable): InvalidBodyError's
  // constructor takes no cause, and every other use of it has none to give.
  Object.defineProperty(error, 'cause', { value: decodeError, writable: true, configurable: true, enumerable: false });
  return error;
}

/** Validates one publish's body: its output is what gets encoded. */
export function checkPublishedBody(schema: StandardSchemaV1, queue: string, body: unknown): BodyCheck | Promise<BodyCheck> {
  return runSchema(schema, body, (issues) => new InvalidBodyError({ queue, phase: 'publish', issues: bodyIssues(issues) }));
}

/**
 * Validates every body of a batch; the error lists the issues of all invalid bodies, each path
 * prefixed with its place in the batch (`bodies[3].qty`), so one round fixes them all.
 */
export async function checkPublishedBodies(
  schema: StandardSchemaV1,
  queue: string,
  bodies: readonly unknown[],
): Promise<BodyCheck> {
  const values: unknown[] = [];
  const issues: BodyIssue[] = [];
  for (let index = 0; index < bodies.length; index++) {
    const pending = runSchema(
      schema,
      bodies[index],
      (found) => new InvalidBodyError({ queue, phase: 'publish', issues: bodyIssues(found, `bodies[${index}]`) }),
    );
    const check = isPromise(pending) ? await pending : pending;
    if (check.ok) values.push(check.value);
    else issues.push(...check.error.issues);
  }
  return issues.length === 0
    ? { ok: true, value: values }
    : { ok: false, error: new InvalidBodyError({ queue, phase: 'publish', issues }) };
}
