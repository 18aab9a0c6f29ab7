import { isMap, isSeq, type Node, parseDocument, type Range } from 'yaml';

import type { ConfigIssue } from '../../errors.js';

/** `consumers.orders.queues[1]`, `consumers["a.b"]` (childPath's spellings) → its keys and indexes. */
export function pathSegments(path: string): (string | number)[] {
  const segments: (string | number)[] = [];
  const token = /([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\./gy;
  let match: RegExpExecArray | null;
  while ((match = token.exec(path)) !== null) {
    if (match[1] !== undefined) segments.push(match[1]);
    else if (match[2] !== undefined) segments.push(Number(match[2]));
    else if (match[3] !== undefined) segments.push(JSON.parse(match[3]) as string);
    if (token.lastIndex === path.length) break;
  }
  return segments;
}

/**
 * Where in the text a path is: the key of its entry when the entry exists (an unknown or wrong key
 * points at itself), else the deepest section that does exist (a missing key points at the section
 * it belongs in). Undefined when not even the first segment is there.
 */
function rangeOf(root: unknown, segments: readonly (string | number)[]): Range | undefined {
  let node: unknown = root;
  let found: Range | undefined;
  for (const segment of segments) {
    if (isMap(node)) {
      const pair = node.items.find((item) => (item.key as { value?: unknown } | null)?.value === segment);
      if (pair === undefined) return found;
      found = (pair.key as Node | null)?.range ?? found;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (item === undefined) return found;
      found = item.range ?? found;
      node = item;
    } else {
      return found;
    }
  }
  return found;
}

/** 1-based line and column of a character offset. */
export function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}

/**
 * Adds `line`/`column` to each issue whose path can be found in the file's text. JSON is YAML 1.2,
 * so one parser places both. Issues that already have a position, or none to find, stay as they are.
 */
export function locateIssues(text: string, issues: readonly ConfigIssue[]): ConfigIssue[] {
  const document = parseDocument(text, { prettyErrors: false, keepSourceTokens: false });
  if (document.errors.length > 0) return [...issues];
  return issues.map((issue) => {
    if (issue.line !== undefined || issue.path === '') return issue;
    const range = rangeOf(document.contents, pathSegments(issue.path));
    return range === undefined ? issue : { ...issue, ...position(text, range[0]) };
  });
}
