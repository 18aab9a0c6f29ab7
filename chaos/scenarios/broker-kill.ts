/**
 * A broker SIGKILLed and restarted under a running relay (issue 16: "the broker stopped mid-relay
 * and restarted"). Two relay workers (`outbox.relay()` with the product's sink and the relay's
 * defaults: 64 sends in flight, claims of 100, retry from 1 s doubling, never giving up) relay the
 * chain queue, half of it under 64 ordering keys, while the load publishes; a backlog is committed
 * and the broker is killed while it drains, down OUTAGE_MS, then started again on the same data.
 * In a full run it is killed a second time under the steady load alone, down LONG_OUTAGE_MS.
 *
 * Accounted for at the broker (relay-accounting.ts): every committed row stored at least once,
 * copies stored twice counted (explained by the kill where the broker cannot deduplicate, never
 * where it can), per-key order as stored, the table empty after the final drain. While the broker
 * is down, ping() must say so; after the restart, every row committed before it must be confirmed
 * within relayRecoveryBoundMs(outage).
 */
import { until } from '../lib/bounded.js';
import type { BrokerKind, ChaosBroker } from '../lib/broker.js';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import type { WorkerProcess } from '../lib/worker-process.js';
import { relayRecoveryBoundMs } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

const OUTAGE_MS = 2_000;
const LONG_OUTAGE_MS = 8_000;
/** Ordering keys over the keyed half of the roots. */
const KEYS = 64;
/** Roots a second from the load generator (each is one relayed row: no handler publishes follow-ups). */
const RATE = 100;

interface Kill {
  readonly what: string;
  readonly outageMs: number;
  /** A backlog committed just before, killed while it drains. */
  readonly backlog: number;
}

async function killAndRestart(
  ctx: ScenarioContext,
  broker: ChaosBroker,
  workers: readonly WorkerProcess[],
  kill: Kill,
): Promise<void> {
  if (kill.backlog > 0) {
    ctx.step(`a backlog of ${String(kill.backlog)}`);
    await ctx.load.preload(kill.backlog);
    // Killed while the relay is in the middle of it: sends in flight, rows still to claim.
    const started = await until(async () => (await ctx.outboxRows()) <= kill.backlog * 0.6, 30_000, 20);
    if (!started) ctx.note(`${kill.what}: the relay had not sent 40 % of the backlog within 30 s; killed anyway`);
  }
  ctx.step(`${kill.what}: SIGKILL to ${broker.name}`);
  const down = ctx.faults.begin('broker killed', `${broker.name} SIGKILL, down ${String(kill.outageMs / 1000)} s`, true);
  await broker.kill();
  const killedAt = Date.now();
  // The sinks see the connection close at once: ping() must say the broker is down.
  const pongs = await Promise.all(workers.map((w) => w.ping(kill.outageMs - 500)));
  for (const [i, pong] of pongs.entries()) {
    if (pong?.ok === true)
      ctx.finding(`${kill.what}: worker ${String(i + 1)}'s ping() answered true while ${broker.name} was down`);
    if (pong === undefined)
      ctx.note(`${kill.what}: worker ${String(i + 1)}'s ping() did not answer while ${broker.name} was down`);
  }
  await ctx.pause(kill.outageMs - (Date.now() - killedAt));
  ctx.note(`${kill.what}: ${String(await ctx.outboxRows())} rows waited in the table at the end of the outage`);
  ctx.step(`${kill.what}: starting ${broker.name} again`);
  await broker.restart();
  const up = down.end();
  const upTo = await ctx.lastOutboxId();
  ctx.step(`${kill.what}: waiting for the rows committed before the restart to reach ${broker.name}`);
  const bound = relayRecoveryBoundMs(kill.outageMs);
  ctx.recordRecovery(
    `${kill.what}: every row committed before the restart confirmed`,
    await ctx.backlogGone(upTo, up, bound + 30_000),
    bound,
  );
  // Confirms flow again: ping() must say the broker is up again (a /readyz that stays 503 pulls a healthy relay).
  const after = await Promise.all(workers.map((w) => w.ping(10_000)));
  for (const [i, pong] of after.entries()) {
    if (pong?.ok === false)
      ctx.finding(`${kill.what}: worker ${String(i + 1)}'s ping() still false after the backlog was confirmed`);
    if (pong === undefined) ctx.note(`${kill.what}: worker ${String(i + 1)}'s ping() did not answer after the recovery`);
  }
}

export function brokerKill(kind: BrokerKind, options: { readonly id: string; readonly quick: boolean }): Scenario {
  const name = kind === 'redis' ? 'redis-server' : 'nats-server (JetStream)';
  return {
    id: options.id,
    title:
      `${name} SIGKILLed mid-relay (2 relay workers × 64 in flight, ${String(RATE)}/s + a 3,000-row backlog, half under ${String(KEYS)} ordering keys), ` +
      `restarted ${String(OUTAGE_MS / 1000)} s later; full run: again under load alone, down ${String(LONG_OUTAGE_MS / 1000)} s. Accounted for at the broker`,
    quick: options.quick,
    leaseTtlMs: 10_000,
    timeoutMs: (quick) => (quick ? 150_000 : 240_000),
    async run(ctx) {
      ctx.step(`starting ${name}`);
      const broker = await ctx.startBroker(kind);
      ctx.load.keyed(KEYS);
      ctx.step('two relay workers');
      const relay = { relay: broker.relay, subscribe: { concurrency: 64, fetchBatchSize: 100 } };
      const workers = await Promise.all([ctx.startWorker(relay), ctx.startWorker(relay)]);
      ctx.load.start(RATE);
      await ctx.pause(1_000);
      await killAndRestart(ctx, broker, workers, { what: 'kill 1 (mid-backlog)', outageMs: OUTAGE_MS, backlog: 3_000 });
      if (!ctx.quick) {
        await ctx.pause(3_000);
        await killAndRestart(ctx, broker, workers, { what: 'kill 2 (under load)', outageMs: LONG_OUTAGE_MS, backlog: 0 });
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
