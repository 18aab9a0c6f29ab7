/**
 * A broker killed, restarted and cut off under a running relay (issue 16: "the broker stopped
 * mid-relay and restarted"). Two relay workers (`outbox.relay()` with the product's sink and the
 * relay's defaults: 64 sends in flight, claims of 100, retry from 1 s doubling, never giving up)
 * relay the chain queue, half of it under 64 ordering keys, while the load publishes. They reach the
 * broker through a TCP proxy of the harness's.
 *
 * 1. A backlog is committed and the broker is SIGKILLed while it drains, down OUTAGE_MS, then
 *    started again on the same data (quick and full).
 * 2. Full run: killed again under the steady load alone, down LONG_OUTAGE_MS.
 * 3. Full run: every relay connection to the broker frozen FREEZE_MS, longer than the sinks' 5 s
 *    confirm timeout, then thawed: the sends in flight time out and are retried while the
 *    originals are held, so the broker receives both. This is the fault a broker's deduplication
 *    is for (a kill leaves almost no message stored with its confirm lost: the broker replies as
 *    it stores).
 *
 * Accounted for at the broker (relay-accounting.ts): every committed row stored at least once,
 * copies stored twice counted (explained by the fault where the broker cannot deduplicate, never
 * where it can), per-key order as stored, the table empty after the final drain. While the broker
 * is down or cut off, ping() must not say it is up, and after it must; every row committed before
 * the fault was lifted must be confirmed within relayRecoveryBoundMs(outage).
 */
import type { TcpProxy } from '../../test/support/tcp-proxy.js';
import { until } from '../lib/bounded.js';
import type { BrokerKind, ChaosBroker } from '../lib/broker.js';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import type { WorkerProcess } from '../lib/worker-process.js';
import { relayRecoveryBoundMs } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

const OUTAGE_MS = 2_000;
const LONG_OUTAGE_MS = 8_000;
/** Longer than the sinks' default confirmTimeoutMs (5 s): the sends in flight time out and are retried. */
const FREEZE_MS = 7_000;
/** Ordering keys over the keyed half of the roots. */
const KEYS = 64;
/** Roots a second from the load generator (each is one relayed row: no handler publishes follow-ups). */
const RATE = 100;
const BACKLOG = 3_000;

interface Outage {
  readonly what: string;
  readonly ms: number;
  /** ping() is asked this long into the outage. */
  readonly pingAfterMs: number;
  /** Starts the fault; returns what lifts it. */
  begin(): Promise<() => Promise<void>>;
}

/** Injects one outage under the workers, checks ping() during and after it, and times the recovery. */
async function outage(ctx: ScenarioContext, broker: ChaosBroker, workers: readonly WorkerProcess[], o: Outage): Promise<void> {
  ctx.step(o.what);
  const failedSends = (): number => workers.reduce((n, w) => n + (w.heartbeat?.events['relayed:failed'] ?? 0), 0);
  const failedBefore = failedSends();
  const lift = await o.begin();
  const began = Date.now();
  await ctx.pause(o.pingAfterMs);
  // The sinks must not report the broker up meanwhile (a /readyz that stays 200 hides the outage).
  const pongs = await Promise.all(workers.map((w) => w.ping(o.ms - o.pingAfterMs - 500)));
  for (const [i, pong] of pongs.entries()) {
    if (pong?.ok === true)
      ctx.finding(`${o.what}: worker ${String(i + 1)}'s ping() answered true while ${broker.name} was unreachable`);
    if (pong === undefined)
      ctx.note(
        `${o.what}: worker ${String(i + 1)}'s ping() had not answered ${String((o.ms - 500) / 1000)} s into the outage (asked ${String(o.pingAfterMs / 1000)} s in)`,
      );
  }
  await ctx.pause(o.ms - (Date.now() - began));
  ctx.note(`${o.what}: ${String(await ctx.outboxRows())} rows waited in the table at the end of the outage`);
  ctx.step(`${o.what}: lifting it`);
  await lift();
  const up = Date.now();
  const upTo = await ctx.lastOutboxId();
  ctx.step(`${o.what}: waiting for the rows committed before it was lifted to reach ${broker.name}`);
  const bound = relayRecoveryBoundMs(o.ms);
  ctx.recordRecovery(
    `${o.what}: every row committed before it was lifted confirmed`,
    await ctx.backlogGone(upTo, up, bound + 30_000),
    bound,
  );
  // Confirms flow again: ping() must say so (a /readyz that stays 503 takes a healthy relay out).
  ctx.note(`${o.what}: ${String(failedSends() - failedBefore)} sends failed and were retried`);
  const after = await Promise.all(workers.map((w) => w.ping(10_000)));
  for (const [i, pong] of after.entries()) {
    if (pong?.ok === false)
      ctx.finding(`${o.what}: worker ${String(i + 1)}'s ping() still false after the backlog was confirmed`);
    if (pong === undefined) ctx.note(`${o.what}: worker ${String(i + 1)}'s ping() did not answer after the recovery`);
  }
}

function kill(ctx: ScenarioContext, broker: ChaosBroker, what: string, ms: number): Outage {
  return {
    what,
    ms,
    // At once: the sinks see the connection close.
    pingAfterMs: 0,
    async begin() {
      const down = ctx.faults.begin('broker killed', `${broker.name} SIGKILL, down ${String(ms / 1000)} s`, true);
      await broker.kill();
      return async () => {
        await broker.restart();
        down.end();
      };
    },
  };
}

function freeze(ctx: ScenarioContext, broker: ChaosBroker, proxy: TcpProxy, what: string, ms: number): Outage {
  return {
    what,
    ms,
    // Not first: on a silent connection ioredis keeps one auto-pipeline in flight and queues the
    // rest unsent, their timeouts not started; a PING sent first would hold the sends behind it
    // past the freeze, so none would time out, be retried, and be stored twice.
    pingAfterMs: 1_000,
    begin() {
      const frozen = ctx.faults.begin(
        'broker connections frozen',
        `every relay connection to ${broker.name} frozen ${String(ms / 1000)} s, then thawed`,
        true,
      );
      proxy.freeze();
      return Promise.resolve(() => {
        proxy.thaw();
        frozen.end();
        return Promise.resolve();
      });
    },
  };
}

/** A backlog committed at once; resolves once the relay is in the middle of it (sends in flight, rows to claim). */
async function backlog(ctx: ScenarioContext, rows: number): Promise<void> {
  ctx.step(`a backlog of ${String(rows)}`);
  await ctx.load.preload(rows);
  if (!(await until(async () => (await ctx.outboxRows()) <= rows * 0.6, 30_000, 20)))
    ctx.note(`the relay had not sent 40 % of the backlog within 30 s; the fault came anyway`);
}

export function brokerKill(kind: BrokerKind, options: { readonly id: string; readonly quick: boolean }): Scenario {
  const name = kind === 'redis' ? 'redis-server' : 'nats-server (JetStream)';
  return {
    id: options.id,
    title:
      `${name} SIGKILLed mid-relay (2 relay workers × 64 in flight, ${String(RATE)}/s + a ${BACKLOG.toLocaleString('en')}-row backlog, ` +
      `half under ${String(KEYS)} ordering keys), restarted ${String(OUTAGE_MS / 1000)} s later; full run: killed again under load, ` +
      `down ${String(LONG_OUTAGE_MS / 1000)} s, and the relay's connections frozen ${String(FREEZE_MS / 1000)} s. Accounted for at the broker`,
    quick: options.quick,
    leaseTtlMs: 10_000,
    injects: ['broker killed', 'broker connections frozen'],
    timeoutMs: (quick) => (quick ? 150_000 : 300_000),
    async run(ctx) {
      ctx.step(`starting ${name}`);
      const broker = await ctx.startBroker(kind);
      const proxy = await ctx.startProxy(broker.port);
      ctx.load.keyed(KEYS);
      ctx.step('two relay workers');
      const relay = { relay: broker.relay(proxy.port), subscribe: { concurrency: 64, fetchBatchSize: 100 } };
      const workers = await Promise.all([ctx.startWorker(relay), ctx.startWorker(relay)]);
      ctx.load.start(RATE);
      await ctx.pause(1_000);
      await backlog(ctx, BACKLOG);
      await outage(ctx, broker, workers, kill(ctx, broker, 'kill 1 (mid-backlog)', OUTAGE_MS));
      if (!ctx.quick) {
        await ctx.pause(3_000);
        await outage(ctx, broker, workers, kill(ctx, broker, 'kill 2 (under load)', LONG_OUTAGE_MS));
        await ctx.pause(2_000);
        await backlog(ctx, BACKLOG);
        await outage(ctx, broker, workers, freeze(ctx, broker, proxy, 'freeze (mid-backlog)', FREEZE_MS));
      }
      await ctx.pause(1_000);
      await drainWithWorkers(ctx, workers);
      for (const [i, worker] of workers.entries()) {
        const events = worker.heartbeat?.events ?? {};
        ctx.note(
          `worker ${String(i + 1)}: ${String(events['relayed:confirmed'] ?? 0)} sends confirmed, ${String(events['relayed:failed'] ?? 0)} failed and retried; ` +
            `sink stats ${JSON.stringify(worker.heartbeat?.sinkStats ?? {})}`,
        );
      }
    },
  };
}
