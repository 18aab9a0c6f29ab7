import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { parseDocument } from 'yaml';

import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import type { RunnerConfig } from '../../src/runner/config/runner-config.js';
import { find, type Manifest, REPO, type Stage } from './deploy-files.js';

/** The txoutbox.yaml the ConfigMap holds, as text. */
export function configMapConfig(all: Map<string, unknown[]>): string {
  const map = find<Manifest & { data?: Record<string, string> }>(all, 'configmap.yaml', 'ConfigMap');
  const text = map.data?.['txoutbox.yaml'];
  if (text === undefined) throw new Error('the ConfigMap has no txoutbox.yaml key');
  return text;
}

/** Where the image's COPY instruction that fills `imagePath` takes it from in the repository. */
export function copiedFrom(runtime: Stage, imagePath: string): string {
  for (const copy of runtime.instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
    const [source, destination] = copy.args.split(/\s+/);
    if (source === undefined || destination === undefined || !destination.endsWith('/')) continue;
    if (imagePath.startsWith(destination)) return join(REPO, source, imagePath.slice(destination.length));
  }
  throw new Error(`no COPY of the runtime stage fills ${imagePath}`);
}

/**
 * The ConfigMap's config with its handler paths moved from the image to `root` (a directory laid
 * out as the image's /app is), and `edit` applied (e.g. the metrics port), written to a file of
 * its own: the real loader then judges it, handler files included.
 */
export async function writeConfigFor(
  text: string,
  mapHandler: (imagePath: string) => string,
  edit: (set: (path: readonly string[], value: unknown) => void) => void = () => undefined,
): Promise<string> {
  const document = parseDocument(text, { uniqueKeys: true });
  const consumers = document.get('consumers', true) as { items?: { key: { value: string } }[] } | undefined;
  for (const item of consumers?.items ?? []) {
    const path = ['consumers', item.key.value, 'handler'];
    const handler = document.getIn(path);
    if (typeof handler !== 'string') throw new Error(`consumers.${item.key.value}.handler is not a path`);
    document.setIn(path, mapHandler(handler));
  }
  edit((path, value) => {
    document.setIn(path, value);
  });
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-deploy-config-'));
  const file = join(dir, 'txoutbox.yaml');
  await writeFile(file, document.toString(), { mode: 0o644 });
  return file;
}

/** The ConfigMap's config loaded by the runner's own loader, handlers read from the repository. */
export async function loadConfigMapConfig(
  all: Map<string, unknown[]>,
  runtime: Stage,
  env: NodeJS.ProcessEnv,
): Promise<RunnerConfig> {
  const file = await writeConfigFor(configMapConfig(all), (handler) => copiedFrom(runtime, handler));
  try {
    return await loadRunnerConfig(file, env);
  } finally {
    await rm(dirname(file), { recursive: true, force: true });
  }
}
