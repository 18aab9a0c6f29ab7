/**
 * HTML built so that a value from a row can never become markup: every value interpolated into an
 * `html` template is escaped, unless it is itself `Html` (a fragment already built by `html`, or
 * wrapped by `raw`). Bodies, headers, exception texts and queue names come from whoever publishes;
 * the dashboard is where an operator with rights to redrive and purge reads them (architecture/dashboard.md).
 */
export class Html {
  readonly #text: string;

  /** @internal Only `html` and `raw` build one. */
  constructor(text: string) {
    this.#text = text;
  }

  toString(): string {
    return this.#text;
  }
}

/** What a template accepts: no objects (a Date or an Error must be formatted on purpose). */
export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes text for an element's content and for a quoted attribute value alike (quotes included):
 * templates always quote attributes with `"`, so one escape serves both contexts.
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}

function render(value: HtmlValue): string {
  if (value instanceof Html) return value.toString();
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(render).join('');
  // false and nullish render nothing, so `${condition && html`…`}` reads naturally.
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

/** A template whose every interpolated value is escaped (arrays are joined, each item escaped). */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i += 1) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** The one way around escaping: for markup the dashboard itself wrote, never for a row's value. */
export function raw(trusted: string): Html {
  return new Html(trusted);
}
