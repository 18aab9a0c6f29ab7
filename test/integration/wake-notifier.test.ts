/**
 * The wake-up notifier's connection failures (decision 0004): a connection that stops answering
 * and one that never finishes connecting. A TCP proxy between the notifier and the real server
 * stands in for the network (it freezes the sockets it already carries, as a half-open connection
 * does); there is no other way to make a real PostgreSQL connection hang on purpose.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';

import { WakeNotifier } from '../../src/producer/wake-notifier.js';
import { silentLogger } from '../../src/util/logger.js';
import { useTestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const CHANNEL = 'txoutbox.notifier_test';

describe('the wake-up notifier and this process', () => {
  test('wakes local subscriptions before sending, and backendPid is the pid its notifications carry', async () => {
    const listener = await listen(db.url, CHANNEL);
    const local: string[] = [];
    const notifier = new WakeNotifier({
      clientConfig: { connectionString: db.url },
      channel: CHANNEL,
      logger: silentLogger,
      preparedStatements: true,
      signalLocal: (queue) => void local.push(queue),
    });
    try {
      assert.equal(notifier.backendPid, undefined, 'no connection before the first wake-up');
      notifier.request('pid.q');
      assert.deepEqual(local, ['pid.q'], 'woken locally at once, before any statement');
      await listener.waitFor('pid.q');
      const pid = listener.senders[listener.payloads.indexOf('pid.q')];
      assert.equal(typeof pid, 'number');
      assert.equal(notifier.backendPid, pid, "the Outbox's LISTEN skips exactly this pid");
    } finally {
      await notifier.stop();
      await listener.close();
    }
  });

  test('a signalLocal that throws is logged; the NOTIFY for other processes still goes out', async () => {
    const listener = await listen(db.url, CHANNEL);
    const warnings: string[] = [];
    const notifier = new WakeNotifier({
      clientConfig: { connectionString: db.url },
      channel: CHANNEL,
      logger: { ...silentLogger, warn: (_fields: object, message: string) => void warnings.push(message) },
      preparedStatements: true,
      signalLocal: () => {
        throw new Error('a subscription blew up');
      },
    });
    try {
      assert.doesNotThrow(() => {
        notifier.request('throw.q');
      });
      await listener.waitFor('throw.q');
      assert.deepEqual(warnings, ['waking local subscriptions failed; polling finds the row']);
    } finally {
      await notifier.stop();
      await listener.close();
    }
  });
});

describe('the wake-up notifier when its connection fails', () => {
  test('a statement that never answers is abandoned after the timeout, logged, and the notifier reconnects', async () => {
    const proxy = await TcpProxy.start(Number(new URL(db.url).port));
    const listener = await listen(db.url, CHANNEL);
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_fields: object, message: string) => warnings.push(message),
      error: () => undefined,
    };
    const notifier = new WakeNotifier({
      clientConfig: { connectionString: proxy.via(db.url) },
      channel: CHANNEL,
      logger,
      preparedStatements: true,
      statementTimeoutMs: 300,
    });
    try {
      // Asked again until heard: on a loaded machine the first connect through the proxy can take
      // longer than the 300 ms bound, and a wake-up that fails is dropped, not retried.
      await waitFor(
        () => {
          notifier.request('before');
          return listener.payloads.includes('before');
        },
        { what: 'a wake-up through the first connection', timeoutMs: 10_000 },
      );
      // Counted from here: the first phase may have seen a failure of its own.
      const failed = () => warnings.filter((m) => m.startsWith('wake-up NOTIFY failed')).length;
      const failedBefore = failed();
      proxy.dropHalfOpen();
      notifier.request('lost');
      await waitFor(() => failed() > failedBefore, { what: 'the timeout warning' });
      // After the reconnect pause, a new connection (not frozen) carries the next wake-up.
      await waitFor(
        () => {
          notifier.request('after');
          return listener.payloads.includes('after');
        },
        { what: 'a wake-up through a fresh connection', timeoutMs: 5_000 },
      );
      assert.ok(!listener.payloads.includes('lost'), 'the frozen statement never reached the server');
    } finally {
      await notifier.stop();
      await proxy.close();
      await listener.close();
    }
  });

  test('a connection that never completes does not keep the process alive after stop()', async () => {
    // A server that accepts TCP and never answers the startup packet; the child requests a wake-up
    // (so the notifier is connecting), stops, and must then exit on its own.
    const script = `
      import net from 'node:net';
      import { WakeNotifier } from './src/producer/wake-notifier.ts';
      const silent = net.createServer(() => undefined);
      silent.listen(0, '127.0.0.1', async () => {
        silent.unref();
        const url = 'postgres://app:s3cret@127.0.0.1:' + silent.address().port + '/db';
        const quiet = () => undefined;
        const notifier = new WakeNotifier({ clientConfig: { connectionString: url, connectionTimeoutMillis: 60_000 }, channel: 'c',
          logger: { debug: quiet, info: quiet, warn: quiet, error: quiet }, preparedStatements: true });
        notifier.request('q');
        await new Promise((resolve) => setTimeout(resolve, 200));
        await notifier.stop();
        console.log('stopped');
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    child.stderr.on('data', (data: Buffer) => (output += data.toString()));
    const exitedWithin = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
      }, 8_000);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    child.kill('SIGKILL');
    assert.ok(exitedWithin, `the process exited after stop() (output: ${output.trim()})`);
    assert.match(output, /stopped/);
  });
});
