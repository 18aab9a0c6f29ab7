import { terminalSafe } from '../util/terminal-safe.js';

/**
 * A row (dead letter, peeked row) for --json: Dates become ISO strings (by JSON itself), the stored
 * bytes (`payload`) and a body that did not decode (a Buffer) become base64, so a script gets every
 * byte back and a decoded JSON body stays a value it can read without parsing twice.
 */
export function rowJson(row: { readonly body: unknown; readonly payload: Buffer }): Record<string, unknown> {
  return {
    ...row,
    body: Buffer.isBuffer(row.body) ? row.body.toString('base64') : row.body,
    payload: row.payload.toString('base64'),
  };
}

/**
 * One JSON document per invocation, on one line: what --json prints. `undefined` (a count the
 * report does not have, such as the DLQ depth without a DLQ) becomes null instead of vanishing, so
 * a script sees every key of the documented shape. DEL and C1 characters in a string (which
 * JSON.stringify leaves raw; U+009B acts as CSI on a terminal) are written as `\u` escapes: the
 * same value for a parser, nothing a terminal acts on.
 */
export function jsonLine(value: unknown): string {
  return `${terminalSafe(JSON.stringify(value, (_key, v: unknown) => (v === undefined ? null : v)))}\n`;
}
