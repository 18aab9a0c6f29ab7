import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

import { ConfigError, type ConfigIssue, errorMessage } from '../../errors.js';
import { ConfigIssues } from './config-issues.js';
import { reportEmptyValues } from './empty-values.js';
import { interpolateEnv } from './interpolate-env.js';
import { locateIssues } from './locate-issues.js';
import { parseConfigText } from './parse-config-text.js';
import type { RunnerConfig } from './runner-config.js';
import { scrubSecrets, secretsIn } from './scrub-secrets.js';
import { validateRunnerConfig } from './validate-config.js';

/**
 * Reads a `txoutbox run` config (`.yaml`, `.yml` or `.json`), interpolates `${VAR}` from `env`,
 * validates every value and applies the defaults. Everything wrong is collected into one
 * ConfigError (each issue with its path, the bad value and what was expected), so nothing starts
 * from a config that is partly wrong. No message shows the database password.
 */
export async function loadRunnerConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<RunnerConfig> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the config file: ${errorMessage(error)}` }]);
  }
  const issues = new ConfigIssues();
  const fail = (found: readonly ConfigIssue[], interpolated?: unknown): ConfigError => {
    // Longest first: a secret that contains another is masked whole.
    const secrets = [...secretsIn([text, JSON.stringify(interpolated ?? null)]), ...issues.secrets()].sort(
      (a, b) => b.length - a.length,
    );
    return new ConfigError(file, scrubSecrets(locateIssues(text, found), secrets));
  };

  const parsed = parseConfigText(file, text);
  if (!parsed.ok) throw fail([parsed.issue]);
  const interpolated = interpolateEnv(parsed.value, env, issues);
  const config = await validateRunnerConfig(interpolated, file, issues);
  // After the validation: an unknown key's "did you mean" and a validator's own word come first.
  reportEmptyValues(issues, interpolated);
  if (config === undefined || issues.count > 0) throw fail(issues.list(), interpolated);
  return config;
}
