/** Re-renders the report of a results JSON: `node --import tsx src/render.ts results/full-….json`. */
import { readFileSync, writeFileSync } from 'node:fs';

import { type BenchResults, renderReport } from './report.js';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: render.ts <results.json>');
const report = renderReport(JSON.parse(readFileSync(path, 'utf8')) as BenchResults);
writeFileSync(path.replace(/\.json$/, '.md'), report);
console.log(report);
