/**
 * A JSON document's text indented by two spaces, as `JSON.stringify(value, null, 2)` lays it out,
 * with every token kept as it was written. What the dashboard and `dlq show` print of a JSON body:
 * parsed and printed again, `{"id":12345678901234567891,"amount":10.50}` became
 * `12345678901234567000` and `10.5`, so the row disagreed with its own excerpt and an operator
 * copied a wrong id. `text` must be valid JSON (the caller parsed it); strings are copied with their
 * escapes, numbers digit for digit.
 */
export function indentJsonText(text: string): string {
  let out = '';
  let depth = 0;
  const newline = (): string => `\n${'  '.repeat(depth)}`;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i] as string;
    if (char === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end - 1;
    } else if (char === '{' || char === '[') {
      const next = nextToken(text, i + 1);
      if (text[next] === (char === '{' ? '}' : ']')) {
        out += char === '{' ? '{}' : '[]';
        i = next;
      } else {
        depth += 1;
        out += char + newline();
      }
    } else if (char === '}' || char === ']') {
      depth -= 1;
      out += newline() + char;
    } else if (char === ',') {
      out += `,${newline()}`;
    } else if (char === ':') {
      out += ': ';
    } else if (!isJsonSpace(char)) {
      out += char;
    }
  }
  return out;
}

function isJsonSpace(char: string | undefined): boolean {
  return char === ' ' || char === '\n' || char === '\r' || char === '\t';
}

/** The index after the string that opens at `start` (its closing quote included). */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i += 1) {
    if (text[i] === '\\') i += 1;
    else if (text[i] === '"') return i + 1;
  }
  return text.length;
}

/** The index of the first character at or after `from` that is not JSON whitespace. */
function nextToken(text: string, from: number): number {
  let i = from;
  while (isJsonSpace(text[i])) i += 1;
  return i;
}
