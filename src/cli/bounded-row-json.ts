import { inspectBody } from '../envelope/decode-body.js';
import { MAX_BODY_PREVIEW_BYTES } from '../queues/peek-page-bytes.js';

/**
 * What `dlq list --json` and `queue peek --json` print of each body: its first 64 KiB, read from
 * the database as a preview's head (listPreviews, peekPreviews), never the whole payload. A page
 * of 100 dead letters of 50 MB each was 5 GB read into the CLI (and printed); now it is at most
 * 100 × 64 KiB, within the page's byte budget. `dlq show <id> --json` prints one whole row.
 */
export const JSON_BODY_BYTES = MAX_BODY_PREVIEW_BYTES;

/** A preview row as listPreviews() and peekPreviews() return it (the fields --json prints, and the head). */
interface PreviewRow {
  readonly headers: Readonly<Record<string, string>>;
  readonly payloadHead: Buffer;
  readonly payloadBytes: number;
  readonly bodyPreview: string;
  readonly bodyPreviewTruncated: boolean;
}

/**
 * A preview row as --json prints it: every field, and
 * - `truncated: false`: `body` decoded as list()/peek() decode it (a JSON value, a string, or bytes
 *   as base64), `payload` every stored byte as base64, as before the budget;
 * - `truncated: true`: `body` null (a cut JSON document does not decode), `payload` the first
 *   JSON_BODY_BYTES stored bytes as base64;
 * and `payloadBytes`, the stored size either way. The preview's text fields are left out (the
 * caller adds the ones it prints).
 */
export function boundedRowJson(row: PreviewRow): Record<string, unknown> {
  const { payloadHead } = row;
  const fields: Record<string, unknown> = { ...row };
  // The preview's text and bytes are printed as body and payload.
  delete fields.payloadHead;
  delete fields.bodyPreview;
  delete fields.bodyPreviewTruncated;
  const truncated = payloadHead.length < row.payloadBytes;
  return {
    ...fields,
    body: truncated ? null : jsonBody(payloadHead, row.headers),
    payload: payloadHead.toString('base64'),
    payloadBytes: row.payloadBytes,
    truncated,
  };
}

/** The body as list() and peek() decode it; bytes (also bytes that do not decode) as base64. */
function jsonBody(payload: Buffer, headers: Readonly<Record<string, string>>): unknown {
  const body = inspectBody(payload, headers);
  return Buffer.isBuffer(body) ? body.toString('base64') : body;
}
