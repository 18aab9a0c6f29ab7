/**
 * The no-op handler W6 runs inside `txoutbox run` children. Each child counts deliveries per
 * sequence number and writes the counts to $BENCH_W6_OUT/<pid>.bin (every 200 ms and at exit), so
 * the bench can check exactly-once across processes without adding a write per message.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const outDir = process.env.BENCH_W6_OUT;
const total = Number(process.env.BENCH_W6_TOTAL ?? '0');
const counts = new Uint16Array(total);
let dirty = false;

function flush(): void {
  if (outDir === undefined || !dirty) return;
  dirty = false;
  writeFileSync(join(outDir, `${process.pid}.bin`), counts);
}

setInterval(flush, 200).unref();
process.on('exit', flush);

export function handle(message: { body: unknown }): void {
  const n = (message.body as { n: number }).n;
  if (n >= 0 && n < total) counts[n] = (counts[n] ?? 0) + 1;
  dirty = true;
}
