/**
 * Three workers (lease, row-lock and transactional) behind a real PgBouncer in transaction mode
 * (`transactionPooling: true`, LISTEN on a direct connection, the handlers' own pool through
 * PgBouncer too: architecture/pgbouncer.md), through what a pooler does in production:
 *
 * 1. `PAUSE` for 4 s, then `RESUME` (a switchover: PgBouncer lets running transactions finish,
 *    then holds every new statement);
 * 2. `KILL` of the database (every client and server connection dropped at once, mid-statement
 *    and mid-transaction), `RESUME` 0.5 s later; four times;
 * 3. PgBouncer SIGKILLed (its pod replaced), started again 2 s later on the same port;
 * 4. full run: PostgreSQL stopped immediately behind it, started 3 s later, PgBouncer holding the
 *    clients' connections and logging in again (`server_login_retry = 1`, see below);
 * 5. `PAUSE` again with stop() called 1 s in: stop() must return within gracefulTimeoutMs + 2 s
 *    while every statement waits in PgBouncer's queue; `RESUME` after 10 s whatever it did.
 *
 * After each of 1–4 every worker completes a claim within its bound. Nothing may be lost, no
 * message may reach the DLQ for a fault, and every duplicate must follow one.
 */
import { within } from '../lib/bounded.js';
import type { Scenario, ScenarioContext, WorkerOptions } from '../lib/scenario.js';
import type { WorkerProcess } from '../lib/worker-process.js';
import { RESUME_AFTER_FREEZE_MS, RESUME_AFTER_RESTART_MS, ROW_LOCK_WORKER, TRANSACTIONAL_WORKER } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

/** The scenario's database name on PgBouncer's `[databases]` wildcard (the harness's `chaos`). */
const DATABASE = 'chaos';
/** KILLs in a row: each meets whatever statements, transactions and COMMITs are in flight then. */
const KILLS = 4;

async function resumed(
  ctx: ScenarioContext,
  workers: readonly WorkerProcess[],
  what: string,
  since: number,
  boundMs: number,
): Promise<void> {
  ctx.step(`waiting for claims to resume (${what})`);
  ctx.recordRecovery(what, await ctx.claimResumed(workers, since, boundMs + 20_000), boundMs);
}

export const pgbouncer: Scenario = {
  id: 'pgbouncer',
  title:
    '3 workers (lease, row-lock and transactional) behind PgBouncer in transaction mode: PAUSE/RESUME, KILL of the database, PgBouncer SIGKILLed and restarted, PostgreSQL restarted behind it (full), PAUSE during stop()',
  quick: false,
  leaseTtlMs: 5_000,
  injects: ['PgBouncer PAUSE', 'PgBouncer KILL', 'PgBouncer SIGKILL', 'server stopped'],
  timeoutMs: (quick) => (quick ? 300_000 : 420_000),
  async run(ctx) {
    // Enough server connections for every transaction the workers and their handlers' pools hold
    // at once (transactional handlers and row-lock batches hold one each for their whole run), so
    // that the pool's queue is the faults', not a shortage's. A login retried after 1 s instead of
    // PgBouncer's 15: what a production config behind a server that restarts sets.
    const bouncer = await ctx.startPgBouncer({ defaultPoolSize: 60, serverLoginRetrySeconds: 1 });
    // Each handler's 20 ms of work is a statement in its transaction, so that the faults below
    // meet statements in flight on ctx.client and on the application's connections.
    const behind: WorkerOptions = {
      databaseUrl: bouncer.urlFor(ctx.databaseUrl),
      transactionPooling: true,
      listenDatabaseUrl: ctx.databaseUrl,
      handlerDelayMs: 20,
      handlerSleepsOnServer: true,
    };
    const workers = [
      await ctx.startWorker(behind),
      await ctx.startWorker({ ...ROW_LOCK_WORKER, ...behind }),
      await ctx.startWorker({ ...TRANSACTIONAL_WORKER, ...behind }),
    ];
    ctx.load.start(30);
    await ctx.pause(3_000);

    ctx.step('PAUSE for 4 s');
    const paused = ctx.faults.begin('PgBouncer PAUSE', 'every statement held 4 s, then RESUME', true);
    await bouncer.admin('PAUSE');
    await ctx.pause(4_000);
    await bouncer.admin('RESUME');
    await resumed(ctx, workers, 'claims after PAUSE/RESUME', paused.end(), RESUME_AFTER_FREEZE_MS);
    await ctx.pause(2_000);

    for (let kill = 1; kill <= KILLS; kill += 1) {
      ctx.step(`KILL ${DATABASE} (${String(kill)} of ${String(KILLS)})`);
      const killed = ctx.faults.begin('PgBouncer KILL', `every connection to ${DATABASE} dropped, RESUME 0.5 s later`, true);
      await bouncer.admin(`KILL ${DATABASE}`);
      await ctx.pause(500);
      // A killed database stays paused (new connections to it wait) until it is resumed by name.
      await bouncer.admin(`RESUME ${DATABASE}`);
      await resumed(ctx, workers, `claims after KILL/RESUME ${String(kill)}`, killed.end(), RESUME_AFTER_RESTART_MS);
      await ctx.pause(1_500);
    }

    ctx.step('PgBouncer SIGKILLed');
    const crashed = ctx.faults.begin('PgBouncer SIGKILL', 'down 2 s, restarted on the same port', true);
    await bouncer.stop('SIGKILL');
    await ctx.pause(2_000);
    await bouncer.restart();
    await resumed(ctx, workers, 'claims after PgBouncer restarted', crashed.end(), RESUME_AFTER_RESTART_MS);
    await ctx.pause(2_000);

    if (!ctx.quick) {
      ctx.step('PostgreSQL stopped behind PgBouncer');
      const down = ctx.faults.begin('server stopped', 'pg_ctl stop -m immediate behind PgBouncer, down 3 s', true);
      await ctx.server.stopImmediate();
      await ctx.pause(3_000);
      await ctx.server.startAgain(60_000);
      await resumed(ctx, workers, 'claims after PostgreSQL restarted behind PgBouncer', down.end(), RESUME_AFTER_RESTART_MS);
      await ctx.pause(2_000);
    }

    ctx.step('PAUSE, then stop()');
    const last = ctx.faults.begin('PgBouncer PAUSE', 'every statement held, stop() called 1 s in, RESUME 10 s in', true);
    await bouncer.admin('PAUSE');
    await ctx.pause(1_000);
    const stopping = Promise.all(
      workers.map((worker, i) => ctx.stopWorker(worker, `stop() of worker ${String(i + 1)} while PgBouncer is paused`)),
    );
    // RESUME after 10 s whatever stop() does: a stop() that only returns then is over its budget.
    await within(stopping, 9_000);
    await bouncer.admin('RESUME');
    last.end();
    await stopping;

    await drainWithWorkers(ctx, []);
  },
};
