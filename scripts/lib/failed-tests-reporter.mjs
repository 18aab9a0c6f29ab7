/**
 * A node:test reporter that writes only the failed tests: file, name and the error, one block each.
 *
 * `npm test` prints TAP for every test; a failure in a run of a thousand tests is one `not ok` line
 * somewhere in the middle, and a CI log that keeps only its beginning and end loses it. The test
 * runner (scripts/run-tests.ts) sends this reporter to a file and prints that file last, so the
 * failures are the run's final lines.
 */
// Plain JavaScript: node loads reporters before `--import tsx` could teach it TypeScript.
import { inspect } from 'node:util';

/** @param {AsyncIterable<{ type: string, data: any }>} source node:test's event stream */
export default async function* failedTests(source) {
  // Names of the enclosing suites by nesting level, per file (files run concurrently and their events
  // interleave), so a failure reads "suite > test".
  /** @type {Map<string | undefined, string[]>} */
  const paths = new Map();
  for await (const event of source) {
    if (event.type === 'test:start') {
      const { name, nesting, file } = event.data;
      const path = paths.get(file) ?? [];
      path.length = nesting;
      path[nesting] = name;
      paths.set(file, path);
      continue;
    }
    if (event.type !== 'test:fail') continue;
    const { data } = event;
    // A suite fails because a test inside it did; that test has its own block already.
    if (data.details.error.failureType === 'subtestsFailed') continue;
    // A todo that fails is a known gap, reported as such in the TAP; it fails no run.
    if (data.todo !== undefined && data.todo !== false) continue;
    // The file only: under tsx its line numbers are the compiled ones. The stack has the real place.
    const where = data.file === undefined ? '' : ` (${data.file})`;
    const name = [...(paths.get(data.file) ?? []).slice(0, data.nesting), data.name].join(' > ');
    const error = data.details.error.cause ?? data.details.error;
    yield `not ok: ${name}${where}\n${indent(inspect(error, { depth: 4 }))}\n\n`;
  }
}

/** @param {string} text */
function indent(text) {
  return text.replace(/^/gm, '    ');
}
