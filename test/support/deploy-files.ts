import { readdir, readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseAllDocuments } from 'yaml';

/**
 * The container and Kubernetes files of deploy/ as the tests read them: the Dockerfile's
 * instructions per stage, and every manifest parsed with the `yaml` package (a syntax error or a
 * duplicate key fails the read, as it would fail `kubectl apply`).
 */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const DOCKERFILE = join(REPO, 'deploy/docker/Dockerfile');
export const KUBERNETES = join(REPO, 'deploy/kubernetes');

export interface Instruction {
  /** Upper case: FROM, RUN, COPY, USER, … */
  readonly keyword: string;
  /** The rest of the instruction, continuation lines joined. */
  readonly args: string;
  /** The exec form (`["txoutbox", "run"]`) when the arguments are a JSON array. */
  readonly exec: readonly string[] | undefined;
}

export interface Stage {
  /** `AS <name>`, or the stage's index. */
  readonly name: string;
  /** The image it starts from, ARG defaults substituted. */
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

function execForm(args: string): readonly string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw new Error(`not an exec form: ${args}`);
  }
  return parsed;
}

/**
 * Enough of the Dockerfile grammar for these files: comments, `\` continuations, instructions,
 * stages, and the global ARGs' defaults in FROM (no heredocs, no escape directive).
 */
export function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    lines.push(`${pending}${line}`.trim());
    pending = '';
  }
  const args = new Map<string, string>();
  const stages: { name: string; from: string; instructions: Instruction[] }[] = [];
  for (const line of lines) {
    if (line === '') continue;
    const match = /^(\w+)\s+(.*)$/s.exec(line);
    if (match === null) throw new Error(`unparseable Dockerfile line: ${line}`);
    const keyword = (match[1] ?? '').toUpperCase();
    const rest = match[2] ?? '';
    if (keyword === 'ARG' && stages.length === 0) {
      const [name = '', value = ''] = rest.split('=', 2);
      args.set(name, value);
      continue;
    }
    if (keyword === 'FROM') {
      const [image = '', as, name] = rest.split(/\s+/);
      const from = image.replace(/\$\{(\w+)\}/g, (_, arg: string) => args.get(arg) ?? '');
      stages.push({
        name: as?.toUpperCase() === 'AS' && name !== undefined ? name : String(stages.length),
        from,
        instructions: [],
      });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`${keyword} before any FROM`);
    stage.instructions.push({ keyword, args: rest, exec: execForm(rest) });
  }
  return stages;
}

export async function dockerStages(): Promise<Stage[]> {
  return parseDockerfile(await readFile(DOCKERFILE, 'utf8'));
}

/** The one instruction of this keyword in the stage (the last, as Docker applies them). */
export function last(stage: Stage, keyword: string): Instruction {
  const found = stage.instructions.filter((i) => i.keyword === keyword).at(-1);
  if (found === undefined) throw new Error(`stage ${stage.name} has no ${keyword}`);
  return found;
}

/** A Kubernetes object, as far as the tests read it. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly labels?: Record<string, string>;
    readonly annotations?: Record<string, string>;
  };
  readonly [field: string]: unknown;
}

/** Every `.yaml` of deploy/kubernetes by file name, each file's documents in order. */
export async function manifests(): Promise<Map<string, unknown[]>> {
  const files = (await readdir(KUBERNETES)).filter((file) => file.endsWith('.yaml')).sort();
  const byFile = new Map<string, unknown[]>();
  for (const file of files) {
    const documents = parseAllDocuments(await readFile(join(KUBERNETES, file), 'utf8'), { uniqueKeys: true });
    if (!Array.isArray(documents)) throw new Error(`${file}: no YAML documents`);
    const values: unknown[] = [];
    for (const document of documents) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
      values.push(document.toJS());
    }
    byFile.set(file, values);
  }
  return byFile;
}

/** The one object of this kind in the file. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the shape it reads: parsed YAML has no type
export function find<T = Manifest>(all: Map<string, unknown[]>, file: string, kind: string): T {
  const found = (all.get(file) ?? []).filter((doc) => (doc as Partial<Manifest> | null)?.kind === kind);
  if (found.length !== 1) throw new Error(`${file}: expected one ${kind}, found ${found.length}`);
  return found[0] as T;
}

/** The pieces of a Deployment the tests check. */
export interface Container {
  readonly name: string;
  readonly image: string;
  readonly args?: readonly string[];
  readonly env?: readonly {
    readonly name: string;
    readonly value?: string;
    readonly valueFrom?: { readonly secretKeyRef?: { readonly name: string; readonly key: string } };
  }[];
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly readOnly?: boolean }[];
  readonly securityContext?: Record<string, unknown>;
  readonly resources?: { readonly requests?: Record<string, string>; readonly limits?: Record<string, string> };
}

export interface Probe {
  readonly httpGet: { readonly path: string; readonly port: number | string };
}

export interface Deployment extends Manifest {
  readonly spec: {
    readonly replicas?: number;
    readonly selector: { readonly matchLabels: Record<string, string> };
    readonly template: {
      readonly metadata: { readonly labels: Record<string, string> };
      readonly spec: {
        readonly terminationGracePeriodSeconds: number;
        readonly securityContext: Record<string, unknown>;
        readonly initContainers?: readonly Container[];
        readonly containers: readonly Container[];
        readonly volumes: readonly { readonly name: string; readonly configMap?: { readonly name: string } }[];
      };
    };
  };
}

/** A probe's or a Service's port as a number: a named port is looked up in the container. */
export function portNumber(container: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = container.ports?.find((p) => p.name === port);
  if (named === undefined) throw new Error(`container ${container.name} has no port named ${port}`);
  return named.containerPort;
}

/**
 * The address the kubelet would probe a pod on, played by this machine's first non-loopback IPv4;
 * undefined when it has none.
 */
export function podAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return undefined;
}
