/**
 * Every control character a terminal acts on: C0 (ESC starts CSI and OSC sequences; OSC 52 writes
 * the clipboard), DEL, and C1 (U+0080–U+009F: U+009B is a one-character CSI).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;
// eslint-disable-next-line no-control-regex -- the same, newline and tab left alone
const CONTROLS_BUT_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `\u001b`: visible, and the escape JSON itself uses (so jsonLine can run its output through here). */
function visible(control: string): string {
  return `\\u${control.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * A string from a row (a queue name, a body, a header, an exception, a pause reason: whatever a
 * publisher or a handler wrote) made safe to print in the CLI's text output: each control character
 * becomes a visible escape (`ESC` → `\u001b`), so a hostile value is shown, never run. With
 * `keepLines` (a body, a stack trace) newline and tab stay. jsonLine() runs its output through
 * here too: JSON.stringify escapes C0 but leaves DEL and C1 raw.
 */
export function terminalSafe(text: string, options: { readonly keepLines?: boolean } = {}): string {
  return text.replace(options.keepLines === true ? CONTROLS_BUT_LINES : CONTROLS, visible);
}
