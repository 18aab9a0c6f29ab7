/**
 * Runs one scenario from a clean slate to a verdict:
 *
 *   start a fresh embedded server → schema (the product's migrate()) and ledger → the scenario,
 *   raced against its bound → whatever happened, kill every process it started, lift every fault
 *   (thaw the server, close proxies) → a relay scenario's broker read back (started again if the
 *   scenario left it down) and stopped → account for every message (at the broker for a relay
 *   scenario) → stop the server.
 *
 * A scenario that overruns its bound is reported as hung at the step it was in; the accounting still
 * runs, so what the hang cost (rows stuck, chains cut) is in the same result.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

import { type PgBouncer, startPgBouncer } from '../../test/support/pgbouncer.js';
import { TcpProxy } from '../../test/support/tcp-proxy.js';
import type { WorkerSpec } from '../worker/protocol.js';
import { account, type Accounting, type FailureRow, type MessageRow } from './accounting.js';
import { bounded, pause, until, within } from './bounded.js';
import { type Arrival, type ChaosBroker, readBackAndClose, startBroker } from './broker.js';
import { ChaosServer, HARNESS_APP } from './chaos-server.js';
import {
  ACCOUNT_FAILURES,
  ACCOUNT_MESSAGES,
  COUNT_OUTBOX,
  COUNT_OUTBOX_UP_TO,
  COUNT_PUBLISHED,
  CREATE_LEDGER,
  DLQ_TABLE,
  HANDLED_SO_FAR,
  MAX_OUTBOX_ID,
  OUTBOX_TABLE,
  RUN_STARTS_BETWEEN,
  UNKNOWN_ROWS,
} from './ledger-sql.js';
import { Load } from './load.js';
import type { Product } from './product.js';
import { accountRelay } from './relay-accounting.js';
import { RunnerProcess, type RunnerShape, writeRunnerConfig } from './runner-process.js';
import { CHAIN_LENGTH, type Scenario, type ScenarioContext, type ScenarioResult } from './scenario.js';
import { ScenarioGuard } from './scenario-guard.js';
import { ScenarioRecord } from './scenario-record.js';
import { stopRunner, stopWorker } from './timed-stops.js';
import { WorkerProcess } from './worker-process.js';

/** Starting a runner or a worker under tsx on a busy 2-core machine. */
const START_BOUND_MS = 60_000;
/**
 * How long after the cleanup an abandoned run may take to settle: its waits on processes end when
 * they are killed, its polls and pauses at once, and the query it may be in within query_timeout.
 */
const RUN_SETTLE_MS = 30_000;

export interface RunSettings {
  readonly product: Product;
  readonly quick: boolean;
  /** Where the scenario's logs and runner configs go (kept after the run). */
  readonly logRoot: string;
  onStatus(text: string): void;
}

/** Lines matching `pattern` in the scenario's log files (the consumers' JSON logs). */
function countLogLines(logDir: string, pattern: RegExp): number {
  let count = 0;
  for (const file of readdirSync(logDir).filter((f) => f.endsWith('.log'))) {
    for (const line of readFileSync(join(logDir, file), 'utf8').split('\n')) if (pattern.test(line)) count += 1;
  }
  return count;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function runScenario(scenario: Scenario, settings: RunSettings): Promise<ScenarioResult> {
  const { product, quick } = settings;
  const started = Date.now();
  const logDir = join(settings.logRoot, scenario.id);
  mkdirSync(logDir, { recursive: true });
  const record = new ScenarioRecord();
  const { faults } = record;
  const abort = new AbortController();
  // Aborted when the scenario is over, at its bound or at its end: from then on its run, if still
  // going, is refused everything (scenario-guard.ts) and what it records is dropped.
  const guard = new ScenarioGuard(abort.signal);
  const scenarioFaults = guard.wrap(record.faults, 'faults');
  const scenarioRecord = record.view(scenarioFaults, () => guard.over);
  /** The scenario's run, awaited (bounded) after the cleanup even when abandoned at its bound. */
  let running: Promise<void> | undefined;
  const runners: RunnerProcess[] = [];
  const shapes = new Map<RunnerProcess, { shape: RunnerShape; path: string }>();
  const workers: WorkerProcess[] = [];
  const proxies: TcpProxy[] = [];
  const bouncers: PgBouncer[] = [];
  let broker: ChaosBroker | undefined;
  /** What the broker held at the end; undefined when it could not be read. */
  let arrivals: Arrival[] | undefined;
  let current = 'starting the server';
  let server: ChaosServer | undefined;
  let ledger: pg.Pool | undefined;
  let load: Load | undefined;
  let accounting: Accounting | null = null;
  let ticker: NodeJS.Timeout | undefined;
  const status = async (): Promise<void> => {
    let counts = '';
    if (ledger !== undefined) {
      const [published, handled] = await Promise.all([
        ledger.query<{ n: number }>(COUNT_PUBLISHED),
        ledger.query<{ n: number }>(HANDLED_SO_FAR),
      ]).catch(() => [undefined, undefined]);
      counts = ` · ${published?.rows[0]?.n ?? '?'} published, ${handled?.rows[0]?.n ?? '?'} handler runs`;
    }
    settings.onStatus(`${current}${counts}`);
  };

  try {
    const serverDir = mkdtempSync(join(tmpdir(), `txoutbox-chaos-${scenario.id}-`));
    // As root the server runs as `postgres`, which must be able to enter it (src/embedded).
    chmodSync(serverDir, 0o711);
    server = await ChaosServer.start(serverDir);
    const url = await server.createDatabase('chaos');
    current = 'creating the schema and the ledger';
    const setup = new product.pg.Pool({ connectionString: url, max: 1, application_name: HARNESS_APP });
    try {
      const outbox = new product.txoutbox.Outbox({ pool: setup, table: OUTBOX_TABLE, dlqTable: DLQ_TABLE, listen: false });
      await outbox.migrate();
      await outbox.stop();
      await setup.query(CREATE_LEDGER);
    } finally {
      await setup.end();
    }
    ledger = new pg.Pool({ connectionString: url, max: 2, application_name: HARNESS_APP, query_timeout: 5_000 });
    ledger.on('error', () => undefined);
    const ledgerPool = ledger;
    const liveServer = server;
    load = new Load(product, url, CHAIN_LENGTH);
    let runnerCount = 0;
    let workerCount = 0;
    /** When the final drain began: the faults before it are what the scenario injected. */
    let finalDrainAt: number | undefined;

    const ctx: ScenarioContext = {
      quick,
      product,
      server: guard.wrap(server, 'server'),
      databaseUrl: url,
      load: guard.wrap(load, 'load'),
      faults: scenarioFaults,
      signal: abort.signal,
      step(text) {
        if (guard.over) return;
        current = text;
        void status();
      },
      finding(text) {
        scenarioRecord.finding(text);
      },
      note(text) {
        scenarioRecord.note(text);
      },
      pause: (ms) => pause(ms, abort.signal),
      async startRunner(shape) {
        guard.check('startRunner()');
        runnerCount += 1;
        const path = join(logDir, `runner-${String(runnerCount)}.yaml`);
        writeRunnerConfig(path, shape);
        const runner = RunnerProcess.spawn(
          product.root,
          path,
          {
            CHAOS_DATABASE_URL: url,
            CHAOS_PRODUCT_ROOT: product.root,
            CHAOS_HANDLER_DELAY_MS: String(shape.handlerDelayMs),
            CHAOS_HANDLER_POOL_SIZE: String(shape.concurrency + 2),
          },
          join(logDir, `runner-${String(runnerCount)}.log`),
        );
        runners.push(runner);
        shapes.set(runner, { shape, path });
        const runnerNumber = runnerCount;
        void runner.exited.then((exit) => {
          if (!runner.crashed) return;
          faults.add('crash', `runner ${String(runnerNumber)} exited on its own`, true);
          record.finding(`runner ${String(runnerNumber)} exited on its own: ${JSON.stringify(exit)} (see ${logDir})`);
        });
        const up = await runner.waitRunning(shape.processes, START_BOUND_MS);
        // Killed by the cleanup meanwhile (it is in `runners`): the scenario does not go on with it.
        guard.check('startRunner()');
        if (!up) {
          throw new Error(
            `runner ${String(runnerCount)} did not have ${String(shape.processes)} consumers running within ${String(START_BOUND_MS / 1000)} s` +
              (runner.exitStatus === undefined ? '' : ` (it exited: ${JSON.stringify(runner.exitStatus)})`),
          );
        }
        return guard.wrap(runner, `runner ${String(runnerNumber)}`);
      },
      rewriteRunnerConfig(scenarioRunner, shape) {
        guard.check('rewriteRunnerConfig()');
        const runner = guard.unwrap(scenarioRunner);
        const entry = shapes.get(runner);
        if (entry === undefined) throw new Error('not a runner of this scenario');
        writeRunnerConfig(entry.path, shape);
        shapes.set(runner, { shape, path: entry.path });
      },
      async startWorker(options = {}) {
        guard.check('startWorker()');
        workerCount += 1;
        const databaseUrl = options.databaseUrl ?? url;
        const spec: WorkerSpec = {
          productRoot: product.root,
          databaseUrl,
          appDatabaseUrl: options.appDatabaseUrl ?? databaseUrl,
          poolSize: options.poolSize ?? 4,
          gracefulTimeoutMs: options.gracefulTimeoutMs ?? 3_000,
          handlerDelayMs: options.handlerDelayMs ?? 10,
          subscribe: {
            concurrency: 4,
            fetchBatchSize: 10,
            leaseTtlMs: scenario.leaseTtlMs,
            minPollIntervalMs: 100,
            maxPollIntervalMs: 1_000,
            ...options.subscribe,
          },
          ...(options.relay === undefined ? {} : { relay: options.relay }),
          ...(options.transactionPooling === undefined ? {} : { transactionPooling: options.transactionPooling }),
          ...(options.listenDatabaseUrl === undefined ? {} : { listenDatabaseUrl: options.listenDatabaseUrl }),
          ...(options.handlerSleepsOnServer === undefined ? {} : { handlerSleepsOnServer: options.handlerSleepsOnServer }),
        };
        const worker = await WorkerProcess.start(spec, join(logDir, `worker-${String(workerCount)}.log`), START_BOUND_MS);
        if (guard.over) {
          // Started while the cleanup ran: it never saw this one.
          worker.kill();
          guard.check('startWorker()');
        }
        workers.push(worker);
        const workerNumber = workerCount;
        void worker.exited.then((exit) => {
          if (!worker.crashed) return;
          faults.add('crash', `worker ${String(workerNumber)} crashed`, true);
          record.finding(
            `worker ${String(workerNumber)} (pid ${String(worker.pid)}) crashed with ${JSON.stringify(exit)}: ${worker.crashReason()}`,
          );
        });
        return guard.wrap(worker, `worker ${String(workerNumber)}`);
      },
      async startProxy(targetPort) {
        guard.check('startProxy()');
        const proxy = await TcpProxy.start(targetPort ?? liveServer.port);
        if (guard.over) await proxy.close();
        guard.check('startProxy()');
        proxies.push(proxy);
        return guard.wrap(proxy, 'proxy');
      },
      async startPgBouncer(options = {}) {
        guard.check('startPgBouncer()');
        const bouncer = await startPgBouncer({ ...options, serverUrl: url });
        if ('skip' in bouncer) throw new Error(bouncer.skip);
        if (guard.over) await within(bouncer.close(), 15_000);
        guard.check('startPgBouncer()');
        bouncers.push(bouncer);
        return guard.wrap(bouncer, 'pgbouncer');
      },
      async startBroker(kind) {
        guard.check('startBroker()');
        if (broker !== undefined) throw new Error('one broker per scenario');
        const started = await startBroker(kind);
        if (guard.over) await within(started.close(), 15_000);
        guard.check('startBroker()');
        broker = started;
        return guard.wrap(started, started.name);
      },
      async outboxRows() {
        guard.check('outboxRows()');
        return (await ledgerPool.query<{ n: number }>(COUNT_OUTBOX)).rows[0]?.n ?? 0;
      },
      async lastOutboxId() {
        guard.check('lastOutboxId()');
        return (await ledgerPool.query<{ id: string }>(MAX_OUTBOX_ID)).rows[0]?.id ?? '0';
      },
      async backlogGone(upToId, since, ms) {
        guard.check('backlogGone()');
        const gone = await until(
          async () => (await ledgerPool.query<{ n: number }>(COUNT_OUTBOX_UP_TO, [upToId])).rows[0]?.n === 0,
          ms,
          50,
          abort.signal,
        );
        guard.check('backlogGone()');
        return gone ? Math.max(0, Date.now() - since) : null;
      },
      async stopRunner(runner, what) {
        guard.check('stopRunner()');
        const raw = guard.unwrap(runner);
        await stopRunner(scenarioRecord, raw, shapes.get(raw)?.shape.gracefulTimeoutMs ?? 0, what);
      },
      async stopWorker(worker, what) {
        guard.check('stopWorker()');
        await stopWorker(scenarioRecord, guard.unwrap(worker), what);
      },
      recordRecovery(what, ms, boundMs) {
        scenarioRecord.recovery(what, ms, boundMs);
      },
      async drain(ms) {
        guard.check('drain()');
        finalDrainAt ??= Date.now();
        const drained = await until(
          async () => (await ledgerPool.query<{ n: number }>(COUNT_OUTBOX)).rows[0]?.n === 0,
          ms,
          250,
          abort.signal,
        );
        guard.check('drain()');
        return drained;
      },
      async claimResumed(list, since, ms) {
        guard.check('claimResumed()');
        // A worker that crashed is reported as a crash, not waited for.
        const live = (): WorkerProcess[] => list.filter((w) => w.alive);
        const resumed = await until(
          () => live().length > 0 && live().every((w) => (w.heartbeat?.lastFetchedAt ?? 0) >= since),
          ms,
          100,
          abort.signal,
        );
        guard.check('claimResumed()');
        if (!resumed) return null;
        return Math.max(0, ...live().map((w) => (w.heartbeat?.lastFetchedAt ?? since) - since));
      },
      async longestGap(from, to) {
        guard.check('longestGap()');
        const { rows } = await ledgerPool.query<{ t: number }>(RUN_STARTS_BETWEEN, [from, to]);
        let longest = 0;
        let previous = from;
        for (const row of [...rows, { t: to }]) {
          longest = Math.max(longest, row.t - previous);
          previous = row.t;
        }
        return longest;
      },
    };

    ticker = setInterval(() => void status(), 2_000);
    current = 'running';
    running = scenario.run(ctx);
    const outcome = await within(
      running.then(() => 'ran' as const),
      scenario.timeoutMs(quick),
    ).catch((error: unknown) => {
      record.finding(`the scenario failed during "${current}": ${message(error)}`);
      return { value: 'failed' as const };
    });
    // A scenario that ran to its end without injecting its fault (a kill with no victim, a loop
    // that never ran) would pass on a quiet run.
    const injected = faults.faults.filter((f) => scenario.injects.includes(f.kind) && f.start < (finalDrainAt ?? Infinity));
    if (outcome?.value === 'ran' && scenario.injects.length > 0 && injected.length === 0)
      record.finding(`no ${scenario.injects.join(' / ')} fault was injected before the final drain: the scenario tested nothing`);
    if (outcome === undefined) {
      record.finding(
        `hung: "${current}" had not finished when the scenario's bound (${String(scenario.timeoutMs(quick) / 1000)} s) ran out; every process was killed`,
      );
    }
  } catch (error) {
    record.finding(`harness error during "${current}": ${message(error)}`);
  } finally {
    abort.abort();
    clearInterval(ticker);
    current = 'cleaning up';
    await within(load?.stop() ?? Promise.resolve(), 10_000);
    for (const runner of runners) {
      if (runner.exitStatus === undefined) faults.add('SIGKILL', 'cleanup: a runner still running', true);
      runner.kill();
    }
    for (const worker of workers) {
      if (worker.alive) faults.add('SIGKILL', 'cleanup: a worker still running', true);
      worker.kill();
    }
    // A consumer that crashed or died of a signal nobody sent is restarted by the runner and never
    // shows in its exit: only the runner's log says so.
    for (const [i, runner] of runners.entries()) {
      await runner.outputRead(5_000);
      const { unexplained, escalations } = runner.consumerExits();
      for (const exit of unexplained)
        record.finding(`runner ${String(i + 1)}: ${exit}, which neither a clean exit nor the harness explains (see ${logDir})`);
      if (escalations.length > 0)
        record.note(
          `runner ${String(i + 1)} SIGKILLed consumer pid(s) ${escalations.join(', ')} that had not drained by their deadline`,
        );
    }
    for (const proxy of proxies) await proxy.close();
    for (const bouncer of bouncers) await within(bouncer.close(), 15_000);
    server?.thaw();
    faults.close();
    if (broker !== undefined) {
      current = `reading ${broker.name} back`;
      arrivals = await readBackAndClose(broker, record);
    }
  }

  // A run abandoned at its bound settles once the cleanup has killed what it waited on and the
  // guard refuses its next step; until then it must meet neither the accounting nor the next scenario.
  if (
    running !== undefined &&
    (await within(
      running.catch(() => undefined),
      RUN_SETTLE_MS,
    )) === undefined
  )
    record.note(`the scenario's abandoned run had not settled ${String(RUN_SETTLE_MS / 1000)} s after the cleanup`);

  if (ledger !== undefined && server !== undefined) {
    current = 'accounting';
    try {
      const pool = ledger;
      const [rows, failures, unknown] = await bounded(
        Promise.all([
          pool.query<MessageRow>(ACCOUNT_MESSAGES),
          pool.query<FailureRow>(ACCOUNT_FAILURES),
          pool.query<{ outbox: number; dlq: number; handled: number; failed: number; handled_ids: string[] }>(UNKNOWN_ROWS),
        ]),
        60_000,
      );
      if (broker === undefined) {
        accounting = account(
          rows.rows,
          failures.rows,
          faults,
          scenario.leaseTtlMs,
          CHAIN_LENGTH,
          unknown.rows[0] ?? { outbox: 0, dlq: 0 },
        );
      } else if (arrivals !== undefined && load !== undefined) {
        const liveLoad = load;
        const relayed = accountRelay(rows.rows, arrivals, faults, {
          deduplicates: broker.deduplicates,
          orderingKeyOf: (key) => liveLoad.orderingKeyOf(key),
        });
        accounting = relayed.accounting;
        for (const [detail, count] of Object.entries(relayed.explainedBy))
          record.note(`${String(count)} message(s) stored twice after: ${detail}`);
        if (relayed.outOfOrder > 0)
          record.finding(`${String(relayed.outOfOrder)} message(s) stored at the broker after a later one of their ordering key`);
        if (relayed.altered > 0)
          record.finding(`${String(relayed.altered)} message(s) stored with a body that was not committed`);
        if (relayed.unknown > 0)
          record.finding(`${String(relayed.unknown)} message(s) at the broker that the ledger never saw committed`);
      }
      if (accounting?.messages === 0) record.finding('no message was published: the scenario tested nothing');
      const stray = unknown.rows[0];
      if (stray !== undefined && stray.outbox + stray.dlq > 0)
        record.finding(`${String(stray.outbox)} outbox and ${String(stray.dlq)} DLQ row(s) that the ledger never saw published`);
      // Gone from the outbox by now, so only the handlers' own records show them: a copy of a row
      // under a new id, or a second row from one publish, would otherwise pass with 0 duplicates.
      if (stray !== undefined && stray.handled + stray.failed > 0)
        record.finding(
          `${String(stray.handled)} handler run(s) and ${String(stray.failed)} failed run(s) of row id(s) the ledger never saw published ` +
            `(ids ${stray.handled_ids.join(', ')}${stray.handled_ids.length >= 5 ? ' among others' : ''}): rows no publish returned were delivered`,
        );
    } catch (error) {
      record.finding(`the accounting failed (is the server up?): ${message(error)}`);
    }
  }
  const claimFailures = countLogLines(logDir, /"msg":"claim failed/);
  if (claimFailures > 0)
    record.note(`${String(claimFailures)} failed claims logged by the consumers (each is retried after a pause)`);
  await within(load?.close() ?? Promise.resolve(), 10_000);
  await ledger?.end().catch(() => undefined);
  await within(server?.stop() ?? Promise.resolve(), 90_000);

  const a = accounting;
  const pass =
    record.findings.length === 0 &&
    a !== null &&
    a.lost === 0 &&
    a.dlqUnexpected === 0 &&
    a.stuck === 0 &&
    a.duplicates === a.explained &&
    a.effectsTwice === 0 &&
    a.handlerErrorsUnexpected === 0;
  return {
    id: scenario.id,
    title: scenario.title,
    pass,
    seconds: (Date.now() - started) / 1000,
    accounting,
    // Copies: nothing written later (a run that never settled) reaches a result already returned.
    stops: [...record.stops],
    recoveries: [...record.recoveries],
    findings: [...record.findings],
    notes: [...record.notes],
    publishFailures: load?.failed ?? 0,
    faults: faults.faults.map((f) => ({
      kind: f.kind,
      detail: f.detail,
      at: Number(((f.start - started) / 1000).toFixed(2)),
      seconds: Number(((f.end - f.start) / 1000).toFixed(2)),
      explains: f.explains,
    })),
    logDir,
    ...(broker === undefined ? {} : { accountedAt: broker.name }),
  };
}
