import { errorMessage, UnencodableBodyError } from '../errors.js';
import { CONTENT_TYPES } from './headers.js';
import { unpairedSurrogateIn } from './storable-text.js';

export interface EncodedBody {
  readonly payload: Buffer;
  readonly contentType: string;
}

/** What JSON.stringify would store in place of `value`'s data, or undefined when it keeps it. */
function mangledAs(value: object): string | undefined {
  if (value instanceof Map || value instanceof Set) return undefined; // their own message below
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer))
    return `an ${value.constructor.name} would be encoded as {} and lose its bytes. Fix: pass Buffer.from(arrayBuffer) as the body (bytes), or encode it yourself`;
  if (value instanceof DataView)
    return 'a DataView would be encoded as {} and lose its bytes. Fix: pass Buffer.from(view.buffer, view.byteOffset, view.byteLength)';
  // Uint8Array is bytes at the top level (bodyContent); nested, and every other typed array, JSON
  // makes an object of index keys, not an array.
  if (ArrayBuffer.isView(value) && !Buffer.isBuffer(value))
    return `${/^[AEIOU]/.test(value.constructor.name) ? 'an' : 'a'} ${value.constructor.name} would be encoded as an object of index keys, not an array. Fix: Array.from(it), or pass its bytes as a Buffer`;
  return undefined;
}

/**
 * JSON.stringify drops functions and symbols silently, turns Map/Set, ArrayBuffer and DataView
 * into `{}`, typed arrays into objects and NaN / ±Infinity into null: that is data loss at publish
 * time. The replacer refuses them, naming the key, and BigInt (which JSON.stringify rejects with a
 * less helpful TypeError).
 */
function strictReplacer(this: unknown, key: string, value: unknown): unknown {
  // Called for every key: the happy path allocates nothing.
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    throw new UnencodableBodyError(
      `Cannot encode ${key === '' ? 'the body' : `key ${JSON.stringify(key)}`}: ${String(value)} has no JSON form and would be stored as null. Fix: store it as a string, or leave the key out.`,
    );
  }
  if (typeof value !== 'object' && typeof value !== 'bigint' && typeof value !== 'function' && typeof value !== 'symbol')
    return value;
  if (value === null) {
    // Date's toJSON() runs before the replacer and gives null for an invalid date: the holder still
    // has the Date. Stored as null, the value was lost as NaN's would be.
    const original = (this as Record<string, unknown>)[key];
    if (original instanceof Date && Number.isNaN(original.getTime())) {
      throw new UnencodableBodyError(
        `Cannot encode ${key === '' ? 'the body' : `key ${JSON.stringify(key)}`}: an invalid Date has no JSON form and would be stored as null. Fix: pass a valid date, or leave the key out.`,
      );
    }
    return value;
  }
  const where = key === '' ? 'the body' : `key ${JSON.stringify(key)}`;
  if (typeof value === 'object') {
    const mangled = mangledAs(value);
    if (mangled !== undefined) throw new UnencodableBodyError(`Cannot encode ${where}: ${mangled}.`);
    if (!(value instanceof Map) && !(value instanceof Set)) return value;
  }
  if (typeof value === 'bigint') {
    throw new UnencodableBodyError(
      `Cannot encode ${where}: BigInt has no JSON form. Fix: convert it to a string (value.toString()) or a number.`,
    );
  }
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new UnencodableBodyError(
      `Cannot encode ${where}: a ${typeof value} has no JSON form and would be dropped silently. Fix: remove it from the body.`,
    );
  }
  if (value instanceof Map || value instanceof Set) {
    throw new UnencodableBodyError(
      `Cannot encode ${where}: a ${value instanceof Map ? 'Map' : 'Set'} would be encoded as {} and lose its entries. Fix: convert it (Object.fromEntries(map) or [...set]).`,
    );
  }
  return value;
}

/** A body as the row will store it, before it is bytes: the caller's bytes, or text (a string body, or JSON). */
export interface BodyContent {
  readonly content: Uint8Array | string;
  readonly contentType: string;
}

/**
 * Bytes are stored as they are; strings as UTF-8 text; every other value as JSON.
 * The content type records which, so the subscriber decodes the body back to the same kind.
 * Text is left a string so a batch can write it straight into its one payload buffer
 * (src/envelope/payload-buffer.ts) without a Buffer per body.
 */
export function bodyContent(body: unknown): BodyContent {
  // Buffer.isBuffer too: a Buffer from another realm (a vm context) is not an instance of this Uint8Array.
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return { content: body, contentType: CONTENT_TYPES.octetStream };
  if (typeof body === 'string') {
    // Stored as UTF-8: an unpaired surrogate would come back as U+FFFD (JSON keeps it, escaped).
    const why = unpairedSurrogateIn(body);
    if (why !== undefined)
      throw new UnencodableBodyError(`Cannot encode the body: a string with ${why}. Fix: repair the text, or pass bytes.`);
    return { content: body, contentType: CONTENT_TYPES.text };
  }
  if (body === undefined) {
    throw new UnencodableBodyError('Cannot encode the body: it is undefined. Fix: pass null, a value, a string or bytes.');
  }
  const json = stringifyStrict(body);
  if (json === undefined) {
    // Only a toJSON() that returns undefined gets here.
    throw new UnencodableBodyError('Cannot encode the body: it has no JSON form. Fix: pass a JSON value, a string or bytes.');
  }
  return { content: json, contentType: CONTENT_TYPES.json };
}

/** bodyContent as the bytes of one row (publish(): one body, one Buffer). */
export function encodeBody(body: unknown): EncodedBody {
  const { content, contentType } = bodyContent(body);
  if (typeof content === 'string') return { payload: Buffer.from(content, 'utf8'), contentType };
  // A copy, as a batch's bytes are copied into its buffer: the statement is sent after publish()
  // awaited its middlewares, and a caller that reuses its buffer meanwhile stored the later bytes.
  return { payload: Buffer.from(content), contentType };
}

/** Deepest nesting isPlainJson walks: a deeper body, or a cycle, takes the checked path. */
const MAX_PLAIN_DEPTH = 64;

/**
 * True when JSON.stringify would neither drop nor mangle anything in `value`, so the per-key
 * replacer can be skipped: JSON's primitives (and undefined object values, which it drops as the
 * checked path does), and arrays and plain objects (prototype Array.prototype, Object.prototype or
 * null, no toJSON) of those. Anything else — a Date, a Buffer, a class instance, a toJSON, a Map,
 * a BigInt, a cycle — is not judged here: strictReplacer handles it as before. Why: a replacer
 * takes JSON.stringify off its fast path, and it was a quarter of publishBatch's Node CPU per
 * message (issue 18; BENCHMARKS.md, "Issue 18: batch publish"). A getter is read twice (here, then
 * by JSON.stringify).
 */
function isPlainJson(value: unknown, depth: number): boolean {
  if (typeof value !== 'object') {
    // NaN and ±Infinity: JSON stores null; the checked path refuses them.
    return (
      typeof value === 'string' ||
      (typeof value === 'number' && Number.isFinite(value)) ||
      typeof value === 'boolean' ||
      value === undefined
    );
  }
  if (value === null) return true;
  if (depth >= MAX_PLAIN_DEPTH || typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    if (proto !== Array.prototype) return false;
    for (let i = 0; i < value.length; i += 1) if (!isPlainJson((value as unknown[])[i], depth + 1)) return false;
    return true;
  }
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key of Object.keys(value)) if (!isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false;
  return true;
}

function isPlainBody(body: unknown): boolean {
  try {
    return isPlainJson(body, 0);
  } catch {
    return false; // a throwing getter or proxy: the checked path reports it as before
  }
}

function stringifyStrict(body: unknown): string | undefined {
  try {
    return isPlainBody(body) ? JSON.stringify(body) : JSON.stringify(body, strictReplacer);
  } catch (error) {
    if (error instanceof UnencodableBodyError) throw error;
    throw new UnencodableBodyError(`Cannot encode the body as JSON: ${errorMessage(error)}. Fix: ${stringifyFix(error)}`, error);
  }
}

/**
 * What to do about what JSON.stringify threw: a cycle (its TypeError says "circular"), a body too
 * large or too deep for it (RangeError: "Invalid string length", a stack overflow), or anything a
 * getter or toJSON of the caller's threw. Each used to be told to remove a circular reference.
 */
function stringifyFix(error: unknown): string {
  if (error instanceof TypeError && /circular/i.test(error.message)) return 'remove the circular reference.';
  if (error instanceof RangeError)
    return 'publish a smaller or flatter body (JSON text has a size limit of about 512 MB, and nesting is bounded by the stack), or store the data elsewhere and publish a reference.';
  return 'a getter or toJSON() of the body threw (the error is the cause); fix it, or publish plain data.';
}
