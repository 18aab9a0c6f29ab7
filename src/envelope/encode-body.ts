import { UnencodableBodyError } from '../errors.js';
import { CONTENT_TYPES } from './headers.js';

export interface EncodedBody {
  readonly payload: Buffer;
  readonly contentType: string;
}

/**
 * JSON.stringify drops functions, symbols and undefined array holes silently and turns Map/Set into
 * `{}`: that is data loss at publish time. The replacer refuses them, naming the key, and BigInt
 * (which JSON.stringify rejects with a less helpful TypeError).
 */
function strictReplacer(this: unknown, key: string, value: unknown): unknown {
  // Called for every key: the happy path allocates nothing.
  if (typeof value !== 'object' && typeof value !== 'bigint' && typeof value !== 'function' && typeof value !== 'symbol')
    return value;
  if (value === null || (typeof value === 'object' && !(value instanceof Map) && !(value instanceof Set))) return value;
  const where = key === '' ? 'the body' : `key ${JSON.stringify(key)}`;
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

/**
 * Bytes are stored as they are; strings as UTF-8 text; every other value as JSON.
 * The content type records which, so the subscriber decodes the body back to the same kind.
 */
export function encodeBody(body: unknown): EncodedBody {
  if (Buffer.isBuffer(body)) return { payload: body, contentType: CONTENT_TYPES.octetStream };
  if (body instanceof Uint8Array) {
    return { payload: Buffer.from(body.buffer, body.byteOffset, body.byteLength), contentType: CONTENT_TYPES.octetStream };
  }
  if (typeof body === 'string') return { payload: Buffer.from(body, 'utf8'), contentType: CONTENT_TYPES.text };
  if (body === undefined) {
    throw new UnencodableBodyError('Cannot encode the body: it is undefined. Fix: pass null, a value, a string or bytes.');
  }
  const json = stringifyStrict(body);
  if (json === undefined) {
    // Only a toJSON() that returns undefined gets here.
    throw new UnencodableBodyError('Cannot encode the body: it has no JSON form. Fix: pass a JSON value, a string or bytes.');
  }
  return { payload: Buffer.from(json, 'utf8'), contentType: CONTENT_TYPES.json };
}

function stringifyStrict(body: unknown): string | undefined {
  try {
    return JSON.stringify(body, strictReplacer);
  } catch (error) {
    if (error instanceof UnencodableBodyError) throw error;
    // The one remaining TypeError JSON.stringify throws is a cycle.
    throw new UnencodableBodyError(
      `Cannot encode the body as JSON: ${(error as Error).message}. Fix: remove the circular reference.`,
      error,
    );
  }
}
