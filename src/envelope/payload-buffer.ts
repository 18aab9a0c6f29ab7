import { InvalidOptionError } from '../errors.js';

/**
 * The most bytes one payload parameter may hold: PostgreSQL's largest value (MaxAllocSize, 1 GiB
 * less one byte). A publish's body, and a publishBatch's bodies together (they travel as ONE bytea,
 * src/producer/sql.ts), above it would fail in the server or the driver after the caller's
 * transaction had started its statement; refusing it before any statement names the limit.
 */
export const MAX_PAYLOAD_BYTES = 2 ** 30 - 1;

/** UTF-8 needs at most 3 bytes per UTF-16 code unit (a surrogate pair: 4 bytes for 2 units). */
const MAX_UTF8_PER_UNIT = 3;

/** The typed error of a payload over `limit`; `option` names the argument (`body`, `bodies`). */
export function payloadTooLarge(option: 'body' | 'bodies', bytes: number, limit: number): InvalidOptionError {
  return new InvalidOptionError({
    option,
    value: `${bytes} bytes of payload`,
    expected: `at most ${limit} bytes (${option === 'body' ? 'one body' : 'all bodies of one publishBatch() together'}; PostgreSQL's largest value is 1 GiB)`,
    fix:
      option === 'body'
        ? 'Store large content elsewhere (object storage) and publish a reference to it.'
        : 'Split the batch; several publishBatch() calls in one transaction are still atomic.',
  });
}

/**
 * A batch's payloads written straight into one buffer, each at its offset: text is encoded as
 * UTF-8 in place and bytes are copied once, with no Buffer per body and no Buffer.concat
 * afterwards (issue 18: the per-body Buffers and the concat were a fifth of publishBatch's Node CPU
 * per message; BENCHMARKS.md, "Issue 18: batch publish"). Grows by doubling, never past `limit`:
 * a batch over it throws payloadTooLarge('bodies') before any statement.
 */
export class PayloadBuffer {
  #buffer: Buffer;
  #length = 0;
  readonly #limit: number;

  /** `capacity`: a first guess (the bodies' string lengths); `limit`: MAX_PAYLOAD_BYTES but in tests. */
  constructor(capacity: number, limit = MAX_PAYLOAD_BYTES) {
    this.#limit = limit;
    // allocUnsafe: only the bytes written are ever read (finish() returns that part).
    this.#buffer = Buffer.allocUnsafe(Math.min(limit, Math.max(64, capacity)));
  }

  get length(): number {
    return this.#length;
  }

  /** Appends `text` as UTF-8; returns how many bytes it took. */
  writeText(text: string): number {
    // Exact size only when the cheap bound does not fit: ASCII bodies never pay for byteLength.
    if (this.#buffer.length - this.#length < text.length * MAX_UTF8_PER_UNIT) this.#reserve(Buffer.byteLength(text, 'utf8'));
    const written = this.#buffer.write(text, this.#length, 'utf8');
    this.#length += written;
    return written;
  }

  /** Appends a copy of `bytes`; returns their length. */
  writeBytes(bytes: Uint8Array): number {
    this.#reserve(bytes.byteLength);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.byteLength;
    return bytes.byteLength;
  }

  /** The bytes written, without a copy. The PayloadBuffer must not be written to afterwards. */
  finish(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }

  #reserve(bytes: number): void {
    const needed = this.#length + bytes;
    if (needed > this.#limit) throw payloadTooLarge('bodies', needed, this.#limit);
    if (needed <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.min(this.#limit, Math.max(needed, this.#buffer.length * 2)));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}
