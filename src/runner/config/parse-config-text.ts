import { extname } from 'node:path';

import { parseDocument, Scalar, visit } from 'yaml';

import { type ConfigIssue, errorMessage } from '../../errors.js';
import { QuotedReference, WHOLE_REFERENCE } from './interpolate-env.js';
import { position } from './locate-issues.js';

export type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly issue: ConfigIssue };

function failure(text: string, offset: number, message: string): Parsed {
  return { ok: false, issue: { path: '', message, ...position(text, offset) } };
}

// prettyErrors off: the pretty form quotes the source line, which may be the one with the password.
function parseYaml(text: string): Parsed {
  const document = parseDocument(text, { prettyErrors: false });
  const [first] = document.errors;
  if (first !== undefined) return failure(text, first.pos[0], first.message);
  markQuotedReferences(document);
  try {
    return { ok: true, value: document.toJS() };
  } catch (error) {
    // An alias to an anchor that does not exist (`*orders` without `&orders`) fails only here.
    return { ok: false, issue: { path: '', message: errorMessage(error) } };
  }
}

/**
 * A quoted or block scalar that is exactly one `${VAR}` becomes a QuotedReference: YAML makes such
 * a scalar a string, and its value stays one after interpolation (a plain one is typed by its text,
 * as YAML types a plain scalar). Keys are left alone: they are never interpolated.
 */
function markQuotedReferences(document: ReturnType<typeof parseDocument>): void {
  visit(document, {
    Scalar(key, node) {
      if (key === 'key' || node.type === Scalar.PLAIN || typeof node.value !== 'string') return;
      if (WHOLE_REFERENCE.test(node.value)) node.value = new QuotedReference(node.value);
    },
  });
}

/** The offset V8 names in a JSON.parse message, else the end of `length` when it ran out of input. */
function statedOffset(message: string, length: number): number | undefined {
  const match = / at position (\d+)/.exec(message);
  if (match !== null) return Number(match[1]);
  return message.includes('end of JSON input') ? length : undefined;
}

/**
 * Where JSON.parse stopped. V8 names the offset in most messages but not all (`Unexpected token '}',
 * "…" is not valid JSON`); then it is the shortest prefix that fails before its own end: JSON is
 * decided left to right, so every longer prefix fails at that same place.
 */
function jsonErrorOffset(text: string, message: string): number {
  const stated = statedOffset(message, text.length);
  if (stated !== undefined) return stated;
  const failsBeforeEnd = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (error) {
      const offset = statedOffset(errorMessage(error), length);
      return offset === undefined || offset < length;
    }
  };
  let low = 0;
  let high = text.length;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if (failsBeforeEnd(middle)) high = middle;
    else low = middle + 1;
  }
  return Math.max(0, low - 1);
}

function parseJson(text: string): Parsed {
  try {
    const value = JSON.parse(text) as unknown;
    // JSON.parse keeps the last of two equal keys without a word (`"processes": 4, "processes": 1`
    // ran one process); a duplicate is an error here, as it is in YAML. JSON is YAML 1.2, whose
    // parser finds it with its position.
    const duplicate = parseDocument(text, { prettyErrors: false }).errors.find((e) => e.code === 'DUPLICATE_KEY');
    if (duplicate !== undefined) return failure(text, duplicate.pos[0], duplicate.message);
    return { ok: true, value };
  } catch (error) {
    // V8's message quotes the text around the error; only its first clause is kept.
    const message = errorMessage(error);
    const reason = message.replace(/,\s*(?:\.\.\.)?".*$/s, '').replace(/ in JSON at position \d+.*$/s, '');
    return failure(text, jsonErrorOffset(text, message), `not valid JSON: ${reason}`);
  }
}

export const CONFIG_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Parses by extension: `.json` is strict JSON, `.yaml`/`.yml` YAML 1.2. */
export function parseConfigText(file: string, text: string): Parsed {
  const extension = extname(file).toLowerCase();
  if (extension === '.json') return parseJson(text);
  if (extension === '.yaml' || extension === '.yml') return parseYaml(text);
  return {
    ok: false,
    issue: { path: '', message: `expected a .yaml, .yml or .json file, got ${JSON.stringify(extension || 'no extension')}` },
  };
}
