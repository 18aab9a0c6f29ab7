import { childPath, type ConfigIssues, isSection } from './config-issues.js';

/**
 * `${VAR}` and `${VAR:-default}` in string values (not keys), after parsing: a value can never
 * change the file's structure. `$${` is a literal `${`. `:-` applies when VAR is unset or empty, as
 * in the shell; an unset VAR without a default is an error at the value's path (naming only the
 * variable, never its neighbours' values).
 *
 * A value that is exactly one plain reference (`port: ${METRICS_PORT}`) takes the type its text
 * has, as YAML types a plain scalar: an integer or decimal becomes a number, `true`/`false` a
 * boolean. A quoted one (`queue: "${QUEUE}"`, a QuotedReference from the YAML parser) stays text
 * whatever its value, and so does a reference inside a longer string. So does an integer past
 * 2^53 − 1: as a number it would change (a 20-digit token in `${API_TOKEN}` came out as
 * 12345678901234567000), and no option takes a number that large. A whole reference whose text
 * reads as a number or boolean is noted on the issues, quoted or not: an issue about its type then
 * says how it was read and how to write it the other way.
 */

/** A quoted YAML scalar that is exactly one reference: its value stays text. */
export class QuotedReference {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const BODY = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;
export const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;
const NUMBER = /^[-+]?(?:0|[1-9][0-9]*)(\.[0-9]+)?$/;

function typed(text: string): unknown {
  const number = NUMBER.exec(text);
  if (number !== null) {
    const value = Number(text);
    if (number[1] !== undefined || Number.isSafeInteger(value)) return value;
    return text;
  }
  if (text === 'true') return true;
  if (text === 'false') return false;
  return text;
}

function interpolateString(
  text: string,
  env: NodeJS.ProcessEnv,
  path: string,
  issues: ConfigIssues,
  typeWhole: boolean,
): unknown {
  if (!text.includes('${')) return text;
  const problems: string[] = [];
  const fail = (message: string) => {
    problems.push(message);
    return '';
  };
  const result = text.replace(REFERENCE, (match, body: string | undefined) => {
    if (match === '$${') return '${';
    if (body === undefined) return fail('an unterminated ${: write ${NAME} or ${NAME:-default} ($${ for a literal ${)');
    const parts = BODY.exec(body);
    if (parts === null) return fail(`expected \${NAME} or \${NAME:-default}, got \${${body}}`);
    const [, name = '', fallback] = parts;
    const set = env[name];
    if (fallback !== undefined) return set === undefined || set === '' ? fallback : set;
    if (set === undefined) return fail(`environment variable ${name} is not set (use \${${name}:-default} for a default)`);
    return set;
  });
  if (problems.length > 0) {
    issues.add(path, problems.join('; '));
    return text;
  }
  if (!WHOLE_REFERENCE.test(text)) return result;
  const value = typed(result);
  if (typeof value !== 'string') issues.fromEnv(path, text, typeof value === 'number' ? 'a number' : 'a boolean', !typeWhole);
  return typeWhole ? value : result;
}

/** A copy of `value` with every string interpolated; problems go to `issues` (the raw string stays). */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, issues: ConfigIssues, path = ''): unknown {
  if (typeof value === 'string') return interpolateString(value, env, path, issues, true);
  if (value instanceof QuotedReference) return interpolateString(value.text, env, path, issues, false);
  if (Array.isArray(value)) return value.map((item: unknown, index) => interpolateEnv(item, env, issues, childPath(path, index)));
  if (isSection(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolateEnv(item, env, issues, childPath(path, key))]),
    );
  }
  return value;
}
