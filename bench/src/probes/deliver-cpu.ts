/**
 * Node CPU of deliver() alone, per delivery, no database (issue 18): the delivery path an
 * asynchronous or a plain handler takes, with or without Prometheus observing, in one or more
 * builds of the library compared side by side. An ack writer that does nothing stands in for the
 * database (mocked: the figure is deliver()'s own cost, not a drain's; `bench:drain-cpu` and
 * `bench:seams` measure those).
 *
 *   npm run bench:deliver-cpu -- [dist dir …]          (default: dist/, built first by `npm run build`)
 *   DELIVER_HANDLER=plain|async  DELIVER_MIDDLEWARE=none|prometheus  DELIVER_PROCESSES=4  DELIVER_ROUNDS=12
 *
 * Each build runs in processes of its own (two builds in one process share prom-client and skewed
 * each other's figures by up to ~0.8 µs: BENCHMARKS.md, "Round nineteen"), alternated, DELIVER_PROCESSES
 * per build. A process runs DELIVER_ROUNDS rounds of 200,000 deliveries one after another (each
 * awaited to its end: a build from before round nineteen by awaiting the promise deliver()
 * returned, a later one by a loop of awaits until its DeliveryEnds heard the end, so the two waits
 * differ a little) and reports its fastest three; the table gives each build's median of those,
 * in ns per delivery. Dist dirs: copies of an earlier `dist/` inside this repository (so they
 * resolve the same node_modules), e.g. `.tmp/base-dist`.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type * as CustomStatsModule from '../../../src/instrumentation/custom-stats.js';
import type * as ChainModule from '../../../src/instrumentation/middleware-chain.js';
import type * as PrometheusModule from '../../../src/prometheus/index.js';
import type * as DeliverModule from '../../../src/subscriber/deliver.js';
import type * as SignalModule from '../../../src/subscriber/delivery-signal.js';
import type * as OptionsModule from '../../../src/subscriber/subscription-options.js';
import { firstDelivery } from './first-delivery.js';

const DELIVERIES = 200_000;
const handlerKind = process.env.DELIVER_HANDLER === 'plain' ? 'plain' : 'async';
const middleware = process.env.DELIVER_MIDDLEWARE === 'prometheus' ? 'prometheus' : 'none';

async function from<M>(dir: string, path: string): Promise<M> {
  return (await import(pathToFileURL(resolve(dir, path)).href)) as M;
}

/** One process: rounds of deliveries through the build in `dir`; prints its fastest three, ns each. */
async function child(dir: string, rounds: number): Promise<void> {
  const { deliver } = await from<typeof DeliverModule>(dir, 'subscriber/deliver.js');
  const { DeliverySignal } = await from<typeof SignalModule>(dir, 'subscriber/delivery-signal.js');
  const { resolveSubscribeOptions } = await from<typeof OptionsModule>(dir, 'subscriber/subscription-options.js');
  const { MiddlewareChain } = await from<typeof ChainModule>(dir, 'instrumentation/middleware-chain.js');
  const { CustomStatKeys } = await from<typeof CustomStatsModule>(dir, 'instrumentation/custom-stats.js');
  const { prometheusMiddleware } = await from<typeof PrometheusModule>(dir, 'prometheus/index.js');
  const { Registry } = await import('prom-client');
  const handler = handlerKind === 'async' ? () => Promise.resolve() : () => undefined;
  const noop = (): undefined => undefined;
  const logger = { debug: noop, info: noop, warn: noop, error: noop };
  const options = resolveSubscribeOptions('q', handler, {}, true);
  const deps = {
    options,
    handler,
    logger,
    emit: undefined,
    writer: { ack: noop, retry: () => Promise.resolve('written' as const), terminal: () => Promise.resolve('written' as const) },
    middlewares: new MiddlewareChain(
      middleware === 'prometheus' ? [prometheusMiddleware({ registry: new Registry() })] : [],
      logger,
    ),
    customStats: new CustomStatKeys(0, logger, noop),
  };
  const record = firstDelivery('1', 'q', Buffer.from('{"a":1}'), { 'content-type': 'application/json' }, new Date());
  const state = { ended: false };
  const ends = {
    ended: (): void => {
      state.ended = true;
    },
    failed: (): void => {
      state.ended = true;
    },
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    gc?.();
    const before = process.cpuUsage();
    for (let i = 0; i < DELIVERIES; i++) {
      state.ended = false;
      const lease = { record, token: 't', leasedAt: 0 };
      // A build from before round nineteen returns its delivery's promise (or undefined) instead.
      const returned: unknown = (deliver as (...args: unknown[]) => unknown)(
        lease,
        new DeliverySignal(),
        () => false,
        deps,
        ends,
      );
      if (returned instanceof Promise) await returned;
      else if (returned === false) while (!state.ended) await Promise.resolve();
    }
    const used = process.cpuUsage(before);
    times.push(((used.user + used.system) * 1000) / DELIVERIES);
  }
  console.log(JSON.stringify(times.sort((a, b) => a - b).slice(0, 3)));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const rounds = Number(process.env.DELIVER_ROUNDS ?? 12);
if (process.argv[2] === '--child') await child(process.argv[3] as string, rounds);
else {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['dist'];
  const processes = Number(process.env.DELIVER_PROCESSES ?? 4);
  const fastest = new Map<string, number[]>(dirs.map((dir) => [dir, []]));
  const self = fileURLToPath(import.meta.url);
  for (let p = 0; p < processes; p++)
    for (const dir of dirs) {
      const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', self, '--child', dir], { encoding: 'utf8' });
      const three = JSON.parse(out.trim().split('\n').at(-1) as string) as number[];
      fastest.get(dir)?.push(...three);
      console.log(`process ${p + 1}/${processes} ${dir}: ${three.map((ns) => ns.toFixed(0)).join(' ')} ns`);
    }
  console.log(
    `\n${handlerKind} handler, middleware ${middleware}: ns per delivery, median of each process's fastest three rounds`,
  );
  console.log('| build | ns per delivery |\n| --- | ---: |');
  for (const [dir, values] of fastest) console.log(`| ${dir} | ${median(values).toFixed(0)} |`);
}
