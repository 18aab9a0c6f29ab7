/** Every scenario, in the order a full run takes them. */
import type { Scenario } from '../lib/scenario.js';
import { appDeploy } from './app-deploy.js';
import { connectionFreeze } from './connection-freeze.js';
import { halfOpen } from './half-open.js';
import { killChildren } from './kill-children.js';
import { pgRestart } from './pg-restart.js';
import { pgbouncer } from './pgbouncer.js';
import { relayNatsKill } from './relay-nats-kill.js';
import { relayRedisKill } from './relay-redis-kill.js';
import { reloads } from './reloads.js';
import { rollingDeploy } from './rolling-deploy.js';
import { serverFreezeStop } from './server-freeze-stop.js';
import { slowHandlers } from './slow-handlers.js';
import { terminateBackends } from './terminate-backends.js';

export const SCENARIOS: readonly Scenario[] = [
  killChildren,
  terminateBackends,
  rollingDeploy,
  appDeploy,
  slowHandlers,
  reloads,
  pgRestart,
  connectionFreeze,
  halfOpen,
  serverFreezeStop,
  pgbouncer,
  relayRedisKill,
  relayNatsKill,
];
