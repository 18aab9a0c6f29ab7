import { InvalidOptionError, renderValue, SinkRefusedError } from '../errors.js';
import type { RelayMessage } from './sink.js';

/**
 * Where a sink sends a row (an exchange and routing key, a subject, a stream, a URL path): a fixed
 * string, a template over the row, or a function of it.
 *
 * Templates name `{queue}`, `{orderingKey}`, `{messageId}`, `{id}` and `{headers.<name>}`, checked
 * when the sink is created; `{{` and `}}` are literal braces. A row that lacks what its template
 * names (no ordering key, no such header) can never be routed, so the send is refused for good
 * (SinkRefusedError: the row goes to the DLQ with the reason) instead of retried forever.
 */
export type Destination = string | ((message: RelayMessage) => string);

/** A compiled destination: the string for one row. Throws SinkRefusedError when the row cannot fill it. */
export type DestinationOf = (message: RelayMessage) => string;

const FIELDS = ['queue', 'orderingKey', 'messageId', 'id'] as const;
type Field = (typeof FIELDS)[number];

type Part = { readonly text: string } | { readonly field: Field } | { readonly header: string };

const PLACEHOLDER = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g;

function parse(option: string, template: string, shown: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const match of template.matchAll(PLACEHOLDER)) {
    const index = match.index;
    if (index > last) parts.push({ text: template.slice(last, index) });
    last = index + match[0].length;
    if (match[0] === '{{' || match[0] === '}}') {
      parts.push({ text: match[0] === '{{' ? '{' : '}' });
      continue;
    }
    const name = match[1];
    if (name !== undefined && (FIELDS as readonly string[]).includes(name)) parts.push({ field: name as Field });
    else if (name?.startsWith('headers.') === true && name.length > 'headers.'.length) parts.push({ header: name.slice(8) });
    else
      throw new InvalidOptionError({
        option,
        value: shown,
        expected: `a template naming only ${FIELDS.map((f) => `{${f}}`).join(', ')} or {headers.<name>} (literal braces as {{ and }})`,
        fix: `Correct or escape ${JSON.stringify(match[0])}, or pass a function (message) => string.`,
      });
  }
  if (last < template.length) parts.push({ text: template.slice(last) });
  return parts;
}

/**
 * A template with every placeholder filled by `filler`: the template's own text as a sink checks it
 * at creation (a NATS subject's wildcard written into it refuses every row, not one).
 */
export function templateFilledWith(option: string, template: string, filler: string): string {
  return parse(option, template, template)
    .map((part) => ('text' in part ? part.text : filler))
    .join('');
}

/**
 * Compiles a destination option once, at sink creation. `sink` names the sink in refusals; an
 * empty result (an empty header, say) is refused too: no broker routes to "".
 *
 * `encode`, when given, escapes each value a template fills in (never the template's own text, nor
 * a function's result): a URL's sink percent-encodes them, so a header value `../admin` or `a?b=c`
 * stays inside its path segment instead of steering the request. It may throw SinkRefusedError.
 * `shown` is how a template is quoted in errors and refusals, which reach logs and the DLQ: a URL's
 * sink leaves out its query, which may carry a token.
 */
export function compileDestination(
  sink: string,
  option: string,
  destination: Destination,
  encode: (value: string) => string = (value) => value,
  shown: (template: string) => string = (template) => template,
): DestinationOf {
  if (typeof destination === 'function') {
    return (message) => {
      const value = destination(message);
      if (typeof value !== 'string' || value === '')
        throw new SinkRefusedError(
          sink,
          // renderValue, not JSON.stringify: a function returning 10n must be refused, not throw a TypeError (a retry).
          `${option} returned ${renderValue(value)} for message ${message.messageId}, not a non-empty string`,
        );
      return value;
    };
  }
  if (typeof destination !== 'string' || destination === '') {
    throw new InvalidOptionError({
      option,
      value: destination,
      expected: 'a non-empty string, a template such as "orders.{queue}", or a function (message) => string',
      fix: `Set ${option}.`,
    });
  }
  const parts = parse(option, destination, shown(destination));
  if (parts.every((p) => 'text' in p)) {
    const fixed = parts.map((p) => ('text' in p ? p.text : '')).join('');
    return () => fixed;
  }
  const quoted = shown(destination);
  return (message) => {
    let out = '';
    for (const part of parts) {
      if ('text' in part) out += part.text;
      else if ('field' in part) {
        const value = message[part.field];
        if (value === null || value === '')
          throw new SinkRefusedError(
            sink,
            `${option} ${JSON.stringify(quoted)} names {${part.field}}, which message ${message.messageId} does not have`,
          );
        out += encode(value);
      } else {
        // Own headers only: row headers are a plain object from JSON, and `{headers.constructor}`
        // would otherwise read Object.prototype's function and route to its source text.
        const value = Object.hasOwn(message.headers, part.header) ? message.headers[part.header] : undefined;
        if (value === undefined || value === '')
          throw new SinkRefusedError(
            sink,
            `${option} ${JSON.stringify(quoted)} names header ${JSON.stringify(part.header)}, which message ${message.messageId} does not have`,
          );
        out += encode(value);
      }
    }
    return out;
  };
}
