import { ConfigError, errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { applicationName } from './application-name.js';
import { reportConnectionBudget, reportReloadBudget } from './budget-report.js';
import { consumerPlans } from './config/consumer-plans.js';
import { loadRunnerConfig } from './config/load-config.js';
import { electsQueueStateLeader } from './config/queue-state-election.js';
import type { RunnerConfig } from './config/runner-config.js';
import { outboxConnectionOptions } from './config/validate-connection.js';
import { restartOnlyChanges } from './restart-only-changes.js';
import { Runner } from './runner.js';

/** A Runner started from a config file, and the SIGHUP path that re-reads it. */
export interface ConfiguredRunner {
  readonly runner: Runner;
  /** Re-reads the file and applies it; an invalid file is logged and the running config stays. */
  readonly reload: () => Promise<void>;
}

/**
 * Validates the config (nothing starts when it is wrong) and starts the runner. Reloads are
 * serialised: one never races the previous one.
 */
export async function runnerFromConfig(path: string, env: NodeJS.ProcessEnv, logger: Logger): Promise<ConfiguredRunner> {
  const config = await loadRunnerConfig(path, env);
  await reportConnectionBudget(config, logger);
  const runner = await Runner.start({
    connection: outboxConnectionOptions(config.database, applicationName(undefined)),
    plans: consumerPlans(config),
    databaseUrl: config.database.url,
    queryTimeoutMs: config.database.queryTimeoutMs,
    table: config.table,
    dlqTable: config.dlqTable,
    dlqRetentionMs: config.dlqRetentionMs,
    metrics: { ...config.metrics.prometheus, queueStateLeader: electsQueueStateLeader(config) },
    dashboard: config.dashboard,
    logger,
  });
  let reloads = Promise.resolve();
  /** What the consumers run now: the reload budget compares the next config with it. */
  let running = config;
  const apply = async (): Promise<void> => {
    try {
      const next = await loadRunnerConfig(path, env);
      await reportReloadBudget(running, next, logger);
      const { interrupted, failed } = await runner.reload(consumerPlans(next));
      running = inEffect(running, next, failed);
      // Compared with the config the runner started with: what it holds itself never changed since.
      const restartOnly = restartOnlyChanges(config, next);
      const pending = restartOnly.length === 0 ? {} : { restartOnly };
      const untilRestart = restartOnly.length === 0 ? '' : `; these changes apply on restart only: ${restartOnly.join(', ')}`;
      if (interrupted) logger.info({ config: path }, 'config reload cut short: the runner is stopping');
      else if (failed.length > 0) {
        logger.error(
          { config: path, failed, ...pending },
          `config reloaded, except for consumers whose new processes could not start: they keep running the previous config${untilRestart}`,
        );
      } else if (restartOnly.length > 0) logger.warn({ config: path, ...pending }, `config reloaded${untilRestart}`);
      else logger.info({ config: path }, 'config reloaded');
    } catch (error) {
      const detail = error instanceof ConfigError ? error.message : errorMessage(error);
      logger.error({ config: path, err: detail }, 'config reload failed; the running config stays in effect');
    }
  };
  return {
    runner,
    reload: () => (reloads = reloads.then(apply)),
  };
}

/**
 * The config the processes run after a reload to `next`: a consumer or relay whose rollout failed
 * keeps its previous entry, as Runner.reload keeps its previous plan. The next reload's budget
 * (reportReloadBudget) compares with this: with `next` a retried rollout looked like no change.
 */
function inEffect(running: RunnerConfig, next: RunnerConfig, failed: readonly string[]): RunnerConfig {
  if (failed.length === 0) return next;
  const kept = <T>(nextEntries: ReadonlyMap<string, T>, runningEntries: ReadonlyMap<string, T>): ReadonlyMap<string, T> =>
    new Map([...nextEntries].map(([name, entry]) => [name, failed.includes(name) ? (runningEntries.get(name) ?? entry) : entry]));
  return { ...next, consumers: kept(next.consumers, running.consumers), relays: kept(next.relays, running.relays) };
}
