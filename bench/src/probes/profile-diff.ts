/**
 * Where two sets of V8 CPU profiles differ, per message: self time by file and by function, B − A,
 * in µs per message (issue 18, round ten: what a W5 seam variant costs above seams off, from
 * `npm run bench -- --only W5 --cpu-profile <dir>`, which writes one profile per variant run).
 *
 *   npm run bench:profile-diff -- <messages per profile> <A profiles…> -- <B profiles…>
 *   e.g. npm run bench:profile-diff -- 100000 prof/W5-seams-off-* -- prof/W5-Prometheus-only-*
 *
 * A profile samples the main thread by wall clock: `(idle)` is waiting, `writev` includes time the
 * thread was descheduled inside a socket write, `(garbage collector)` is the main thread's share of
 * collection only. Compare CPU figures from the bench itself; use this for where the time goes.
 */
import { readFileSync } from 'node:fs';

import { shortPath } from '../cpu-profile.js';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

interface SelfTimes {
  readonly byFile: Map<string, number>;
  readonly byFunction: Map<string, number>;
}

/** Self time in µs per message, summed over `files` and divided by messages × profiles. */
function selfTimes(files: readonly string[], messages: number): SelfTimes {
  const byFile = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, us: number): void => {
    map.set(key, (map.get(key) ?? 0) + us / (messages * files.length));
  };
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const sampled = new Map<number, number>();
    // timeDeltas[i] is the time before sample i: sample i ran until the next one (DevTools' reading).
    profile.samples.forEach((id, i) => sampled.set(id, (sampled.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0)));
    for (const node of profile.nodes) {
      const us = sampled.get(node.id) ?? 0;
      if (us === 0) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      const path = shortPath(url);
      add(byFile, path === '' ? functionName : path, us);
      add(byFunction, `${functionName || '(anonymous)'} ${path}:${lineNumber + 1}`, us);
    }
  }
  return { byFile, byFunction };
}

function printDifference(title: string, a: Map<string, number>, b: Map<string, number>, top: number): void {
  const rows = [...new Set([...a.keys(), ...b.keys()])]
    .map((key) => ({ key, a: a.get(key) ?? 0, b: b.get(key) ?? 0 }))
    .sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a))
    .slice(0, top);
  console.log(`\n| ${title} | B − A | A | B |\n| --- | ---: | ---: | ---: |`);
  for (const row of rows)
    console.log(`| ${row.key} | ${(row.b - row.a).toFixed(2)} | ${row.a.toFixed(2)} | ${row.b.toFixed(2)} |`);
}

const [messagesArg, ...rest] = process.argv.slice(2);
const split = rest.indexOf('--');
const messages = Number(messagesArg);
if (!(messages > 0) || split <= 0 || split === rest.length - 1) {
  console.error('usage: npm run bench:profile-diff -- <messages per profile> <A profiles…> -- <B profiles…>');
  process.exit(2);
}
const a = selfTimes(rest.slice(0, split), messages);
const b = selfTimes(rest.slice(split + 1), messages);
const total = (times: SelfTimes): number => [...times.byFile.values()].reduce((sum, us) => sum + us, 0);
console.log(`sampled µs per message: A ${total(a).toFixed(2)}, B ${total(b).toFixed(2)}`);
printDifference('file', a.byFile, b.byFile, 20);
printDifference('function (self time)', a.byFunction, b.byFunction, 30);
