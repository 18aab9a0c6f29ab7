import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { Registry } from 'prom-client';
import { stringify } from 'yaml';

import { ConfigError } from '../../src/errors.js';
import { serveMetrics } from '../../src/prometheus/serve-metrics.js';
import { RUNNER_DEFAULTS } from '../../src/runner/config/runner-config.js';
import { longestStopMs } from '../../src/runner/runner.js';
import { useTestDatabase } from '../support/database.js';
import { loadConfigMapConfig } from '../support/deploy-config.js';
import {
  type Container,
  type Deployment,
  dockerStages,
  find,
  KUBERNETES,
  last,
  type Manifest,
  manifests,
  podAddress,
  portNumber,
} from '../support/deploy-files.js';
import { metricFamily, registeredMetricNames } from '../support/metric-names.js';
import { outboxFactory } from '../support/outboxes.js';
import { promtool } from '../support/promtool.js';
import { inTransaction } from '../support/transaction.js';

/**
 * deploy/kubernetes agrees with the runner and the image (issue 19): every manifest parses; the
 * ConfigMap's txoutbox.yaml passes the runner's own loader; probes, ports, the Service and the
 * termination period match that config and the Dockerfile; the KEDA PostgreSQL query returns the
 * ready depth on a real database; the Prometheus variant's queries parse (promtool) and name only
 * metrics the code registers. Nothing here talks to a Kubernetes API server or to KEDA: none runs
 * on this machine (architecture/deployment.md, "What is not tested here").
 */
const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const ENV = { DATABASE_URL: 'postgres://app:not-a-real-password@postgres.db.svc:5432/app' };

interface ScaledObject extends Manifest {
  readonly spec: {
    readonly scaleTargetRef: { readonly name: string; readonly envSourceContainerName?: string };
    readonly minReplicaCount: number;
    readonly maxReplicaCount: number;
    readonly triggers: readonly {
      readonly type: string;
      readonly metricType?: string;
      readonly metadata: Readonly<Record<string, string>>;
    }[];
  };
}

interface Service extends Manifest {
  readonly spec: {
    readonly selector: Record<string, string>;
    readonly publishNotReadyAddresses?: boolean;
    readonly ports: readonly { readonly name: string; readonly port: number; readonly targetPort: number | string }[];
  };
}

async function setup() {
  const all = await manifests();
  const stages = await dockerStages();
  const runtime = stages.at(-1);
  if (runtime === undefined) throw new Error('the Dockerfile has no stage');
  const deployment = find<Deployment>(all, 'deployment.yaml', 'Deployment');
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c) => c.name === 'txoutbox');
  if (container === undefined) throw new Error('the Deployment has no container named txoutbox');
  const config = await loadConfigMapConfig(all, runtime, ENV);
  return { all, runtime, deployment, pod, container, config };
}

test('every manifest parses, and kustomization.yaml lists the ones applied by default (the others are named in its comment)', async () => {
  const all = await manifests();
  const kustomization = find<{ resources: string[] }>(all, 'kustomization.yaml', 'Kustomization');
  const comment = await readFile(join(KUBERNETES, 'kustomization.yaml'), 'utf8');
  for (const [file, documents] of all) {
    assert.ok(documents.length > 0, `${file} holds a document`);
    for (const doc of documents) {
      const object = doc as Partial<Manifest>;
      assert.equal(typeof object.apiVersion, 'string', `${file}: apiVersion`);
      assert.equal(typeof object.kind, 'string', `${file}: kind`);
      if (object.kind !== 'Kustomization') assert.equal(typeof object.metadata?.name, 'string', `${file}: metadata.name`);
      // A Secret holds the password: it is created out of band, never shipped here.
      assert.notEqual(object.kind, 'Secret', `${file} must not hold a Secret`);
    }
    if (file === 'kustomization.yaml') continue;
    assert.ok(
      kustomization.resources.includes(file) || comment.includes(file),
      `${file} is a resource of kustomization.yaml or named in its comment`,
    );
  }
  for (const resource of kustomization.resources)
    assert.ok(all.has(resource), `kustomization.yaml lists ${resource}, which exists`);
  // No literal connection string with a password anywhere.
  for (const file of await readdir(KUBERNETES)) {
    assert.doesNotMatch(await readFile(join(KUBERNETES, file), 'utf8'), /postgres(ql)?:\/\/[^\s$'"]*:[^\s@$'"]+@/, file);
  }
});

test("the ConfigMap's txoutbox.yaml is a valid config for the runner's loader, with metrics on every interface", async () => {
  const { config, container } = await setup();
  assert.equal(config.database.url, ENV.DATABASE_URL, 'database.url comes from $DATABASE_URL');
  assert.equal(config.metrics.prometheus.enabled, true);
  // Probes and Prometheus come in on the pod IP: the default 127.0.0.1 would fail every probe.
  assert.equal(config.metrics.prometheus.host, '0.0.0.0');
  assert.equal(config.dashboard, undefined, 'no dashboard: off loopback it would need a token');
  const secret = container.env?.find((e) => e.name === 'DATABASE_URL');
  assert.deepEqual(
    secret?.valueFrom?.secretKeyRef,
    { name: 'txoutbox-database', key: 'url' },
    'DATABASE_URL comes from the Secret',
  );
  assert.equal(secret?.value, undefined, 'never a literal value');
});

test('without DATABASE_URL (the Secret not wired) the config is refused at database.url, naming the variable, with no password echoed', async () => {
  const all = await manifests();
  const runtime = (await dockerStages()).at(-1);
  assert.ok(runtime !== undefined);
  await assert.rejects(loadConfigMapConfig(all, runtime, {}), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'INVALID_CONFIG');
    const issue = error.issues.find((i) => i.path === 'database.url');
    assert.match(issue?.message ?? '', /environment variable DATABASE_URL is not set/);
    return true;
  });
});

test("a probe on the pod's address reaches /healthz with the ConfigMap's host, and not with the runner's default 127.0.0.1", async (t) => {
  const { config } = await setup();
  const address = podAddress();
  if (address === undefined) {
    t.skip('this machine has no non-loopback IPv4 address to play the pod IP');
    return;
  }
  const probe = async (host: string) => {
    const served = await serveMetrics({ registry: new Registry(), host, port: 0 });
    try {
      return await fetch(`http://${address}:${served.port}/healthz`).then(
        (response) => response.status,
        (error: unknown) => (error as { cause?: { code?: string } }).cause?.code ?? 'failed',
      );
    } finally {
      await served.close();
    }
  };
  assert.equal(await probe(config.metrics.prometheus.host), 200);
  assert.equal(await probe(RUNNER_DEFAULTS.prometheus.host), 'ECONNREFUSED', 'the default host refuses the kubelet');
});

test('probes, ports and the metrics Service agree with the config and the Dockerfile', async () => {
  const { all, runtime, container, config, deployment } = await setup();
  const port = config.metrics.prometheus.port;
  assert.equal(portNumber(container, 'metrics'), port, 'the container port is the config port');
  assert.deepEqual(last(runtime, 'EXPOSE').args.split(/\s+/), [String(port)], 'EXPOSE is the config port');

  const liveness = container.livenessProbe?.httpGet;
  const readiness = container.readinessProbe?.httpGet;
  assert.equal(liveness?.path, '/healthz');
  assert.equal(readiness?.path, '/readyz');
  assert.equal(portNumber(container, liveness.port), port);
  assert.equal(portNumber(container, readiness.port), port);

  const service = find<Service>(all, 'service.yaml', 'Service');
  const [servicePort] = service.spec.ports;
  assert.ok(servicePort !== undefined);
  assert.equal(portNumber(container, servicePort.targetPort), port, "the Service's targetPort is the config port");
  assert.equal(service.metadata.annotations?.['prometheus.io/port'], String(port));
  assert.equal(service.metadata.annotations['prometheus.io/path'], '/metrics');
  assert.equal(service.spec.publishNotReadyAddresses, true, 'a pod whose database is down is still scraped');

  // Every selector picks the pods of the Deployment.
  const podLabels = deployment.spec.template.metadata.labels;
  const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
  assert.ok(selects(deployment.spec.selector.matchLabels), 'the Deployment selects its own pods');
  assert.ok(selects(service.spec.selector), 'the Service selects the pods');
  const pdb = find<Manifest & { spec: { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } } }>(
    all,
    'pdb.yaml',
    'PodDisruptionBudget',
  );
  assert.ok(selects(pdb.spec.selector.matchLabels), 'the PodDisruptionBudget selects the pods');
  assert.equal(pdb.spec.maxUnavailable, 1, 'a single replica still lets a node drain');
  const monitor = find<Manifest & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } }>(
    all,
    'servicemonitor.yaml',
    'ServiceMonitor',
  );
  assert.ok(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels?.[k] === v));
  assert.equal(monitor.spec.endpoints[0]?.port, servicePort.name);
});

test('terminationGracePeriodSeconds covers the longest stop of the config (gracefulTimeoutMs + the runner bounds)', async () => {
  const { pod, config } = await setup();
  const longest = longestStopMs(config.gracefulTimeoutMs);
  const period = pod.terminationGracePeriodSeconds * 1000;
  assert.ok(period >= longest, `${period} ms >= ${longest} ms: the kubelet never SIGKILLs a drain the runner still bounds`);
  // And no more than a margin above it: a pod that takes minutes to go slows every rollout.
  assert.ok(period <= longest + 10_000, `${period} ms is within 10 s of ${longest} ms`);
});

test('the Deployment runs the image as the Dockerfile builds it: entrypoint, args, mounts, non-root, read-only root', async () => {
  const { runtime, pod, container, all } = await setup();
  assert.deepEqual(last(runtime, 'ENTRYPOINT').exec, ['txoutbox']);
  assert.deepEqual(last(runtime, 'CMD').exec, ['run', '/config/txoutbox.yaml']);
  assert.deepEqual(container.args, ['run', '/config/txoutbox.yaml']);
  assert.equal(last(runtime, 'STOPSIGNAL').args, 'SIGTERM');

  const [uid, gid] = last(runtime, 'USER').args.split(':').map(Number);
  assert.ok(uid !== undefined && Number.isInteger(uid) && uid > 0, 'USER is a numeric non-root uid (runAsNonRoot can verify it)');
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, uid);
  assert.equal(pod.securityContext.runAsGroup, gid);

  const init = pod.initContainers?.find((c) => c.name === 'migrate');
  assert.ok(init !== undefined, 'an init container applies the migrations');
  assert.deepEqual(init.args, ['migrate', '--config', '/config/txoutbox.yaml']);
  const configMap = find(all, 'configmap.yaml', 'ConfigMap').metadata.name;
  for (const c of [container, init] as Container[]) {
    assert.equal(c.image, container.image, `${c.name} runs the same image`);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: read-only root filesystem`);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    const mount = c.volumeMounts?.find((m) => m.mountPath === '/config');
    const volume = pod.volumes.find((v) => v.name === mount?.name);
    assert.equal(volume?.configMap?.name, configMap, `${c.name}: /config is the ConfigMap`);
  }
  assert.ok(
    container.volumeMounts?.some((m) => m.mountPath === '/tmp'),
    'handlers get a writable /tmp',
  );
  assert.ok(container.resources?.requests?.memory !== undefined && container.resources.limits?.memory !== undefined);
});

/** The PostgreSQL trigger of keda-scaledobject.yaml. */
async function kedaQuery(): Promise<{ scaled: ScaledObject; query: string }> {
  const scaled = find<ScaledObject>(await manifests(), 'keda-scaledobject.yaml', 'ScaledObject');
  const trigger = scaled.spec.triggers.find((t) => t.type === 'postgresql');
  const query = trigger?.metadata.query;
  if (query === undefined) throw new Error('keda-scaledobject.yaml has no postgresql trigger with a query');
  return { scaled, query };
}

test('the KEDA ScaledObject targets the Deployment and reads the connection from its Secret-backed env', async () => {
  const { deployment, container, config } = await setup();
  const { scaled } = await kedaQuery();
  assert.equal(scaled.spec.scaleTargetRef.name, deployment.metadata.name);
  assert.equal(deployment.spec.replicas, undefined, 'no replicas field to fight the autoscaler');
  assert.ok(scaled.spec.minReplicaCount >= 1 && scaled.spec.maxReplicaCount > scaled.spec.minReplicaCount);
  const trigger = scaled.spec.triggers.find((t) => t.type === 'postgresql');
  assert.equal(scaled.spec.scaleTargetRef.envSourceContainerName, container.name);
  const env = container.env?.find((e) => e.name === trigger?.metadata.connectionFromEnv);
  assert.ok(env?.valueFrom?.secretKeyRef !== undefined, 'connectionFromEnv names the Secret-backed variable');
  // The cap must stay above what the largest replica count would ask for.
  const target = Number(trigger?.metadata.targetQueryValue);
  const cap = Number(/LIMIT (\d+)/.exec(trigger?.metadata.query ?? '')?.[1]);
  assert.ok(cap >= scaled.spec.maxReplicaCount * target, `cap ${cap} >= maxReplicaCount × target`);
  const queues = /queue IN \(([^)]*)\)/.exec(trigger?.metadata.query ?? '')?.[1]?.match(/'[^']*'/g);
  assert.deepEqual(
    queues?.map((q) => q.slice(1, -1)),
    [...(config.consumers.get('orders')?.queues ?? [])],
    "the query's queues are the consumer's",
  );
  assert.match(trigger?.metadata.query ?? '', new RegExp(`FROM ${config.table.replace('.', '\\.')} o`), "the config's table");
});

test('the KEDA PostgreSQL query returns the ready depth on a real database: due, unleased, of unpaused configured queues, capped', async () => {
  const { config } = await setup();
  const { query } = await kedaQuery();
  const outbox = newOutbox({ pool: db.pool, table: config.table });
  await outbox.migrate();
  const depth = async () => {
    const { rows } = await db.pool.query<{ count: string }>(query);
    assert.equal(rows.length, 1, 'one row: KEDA reads one number');
    return Number(rows[0]?.count);
  };
  assert.equal(await depth(), 0, 'an empty table');

  const publish = (queue: string, count: number) =>
    inTransaction(db.pool, (c) =>
      outbox.publishBatch(
        c,
        queue,
        Array.from({ length: count }, (_, n) => ({ n })),
      ),
    );
  await publish('orders', 12);
  await publish('refunds', 4);
  await publish('invoices', 9); // not a queue of this consumer
  // 3 orders scheduled for later (a retry's backoff), 2 leased (a handler holds them).
  await db.pool.query(
    `UPDATE ${config.table} SET next_attempt_at = now() + interval '1 hour' WHERE id IN (SELECT id FROM ${config.table} WHERE queue = 'orders' ORDER BY id LIMIT 3)`,
  );
  await db.pool.query(
    `UPDATE ${config.table} SET acquired_token = gen_random_uuid(), acquired_at = now() WHERE id IN (SELECT id FROM ${config.table} WHERE queue = 'orders' AND next_attempt_at <= now() ORDER BY id LIMIT 2)`,
  );
  assert.equal(await depth(), 7 + 4, '7 ready orders and 4 ready refunds; scheduled, leased and other queues left out');

  await outbox.pause('refunds', { reason: 'deploy test' });
  assert.equal(await depth(), 7, "a paused queue's rows ask for no pod: none may claim them");
  await outbox.resume('refunds');
  assert.equal(await depth(), 11);

  await db.pool.query(`INSERT INTO ${config.table} (queue, payload) SELECT 'orders', '\\x00' FROM generate_series(1, 10050)`);
  assert.equal(await depth(), 10_000, 'the count stops at the cap: bounded on any backlog');

  // The predicate matches the ready partial index, so the count is an index scan (with sequential
  // scans priced out, a predicate the index does not cover would still plan a Seq Scan).
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_seqscan = off');
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query}`);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    assert.match(plan, /outbox_ready_idx/, plan);
    assert.doesNotMatch(plan, /Seq Scan on outbox\b/, plan);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
});

test("the Prometheus variant's queries parse (promtool) and name only metrics the code registers", async (t) => {
  const { config, deployment } = await setup();
  const scaled = find<ScaledObject>(await manifests(), 'keda-scaledobject-prometheus.yaml', 'ScaledObject');
  const queries = scaled.spec.triggers.map((trigger) => {
    assert.equal(trigger.type, 'prometheus');
    const query = trigger.metadata.query;
    assert.ok(query !== undefined);
    return query;
  });
  assert.equal(queries.length, 2);
  assert.equal(scaled.spec.scaleTargetRef.name, deployment.metadata.name);
  const registered = registeredMetricNames(newOutbox({ pool: db.pool, table: 'names_only' }));
  const named = queries.flatMap((query) => [...query.matchAll(/\btxoutbox_[a-z_]+\b/g)].map(([name]) => name));
  assert.ok(named.includes('txoutbox_queue_oldest_ready_age_seconds') && named.includes('txoutbox_queue_messages'));
  for (const name of named) assert.ok(registered.has(metricFamily(name)), `${name} is registered by the code`);
  const queues = [...(config.consumers.get('orders')?.queues ?? [])].join('|');
  for (const query of queues.length > 0 ? queries : []) {
    for (const [, matcher] of query.matchAll(/queue=~"([^"]*)"/g)) assert.equal(matcher, queues, "the consumer's queues");
  }

  const tool = await promtool();
  if (tool.skip !== undefined) {
    t.skip(tool.skip);
    return;
  }
  // promtool checks PromQL inside a rules file: one recording rule per query.
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-keda-'));
  const rules = join(dir, 'keda.yml');
  try {
    await writeFile(
      rules,
      stringify({ groups: [{ name: 'keda', rules: queries.map((expr, i) => ({ record: `keda:trigger:${i}`, expr })) }] }),
    );
    const { stdout } = await promisify(execFile)(tool.path, ['check', 'rules', rules]);
    assert.match(stdout, new RegExp(`SUCCESS: ${queries.length} rules found`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
