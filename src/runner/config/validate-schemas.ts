import { childPath, type ConfigIssues, isSection } from './config-issues.js';
import { moduleFile } from './module-file.js';
import { RUNNER_DEFAULTS, type SchemasConfig } from './runner-config.js';

const SCHEMAS_KEYS = ['module', 'export'];
const WHAT = 'schemas module';

/**
 * `schemas:` — the module whose export maps queue names to body schemas (architecture/typed-events.md),
 * given to every child's Outbox: `schemas: ./events.ts` (its `schemas` export) or
 * `schemas: { module: ./events.ts, export: eventSchemas }`. Undefined when absent or wrong (then
 * with an issue). The export itself is checked by each child as it loads, as a handler's is.
 */
export function schemasConfig(issues: ConfigIssues, value: unknown, configDir: string): SchemasConfig | undefined {
  if (value === undefined) return undefined;
  if (!isSection(value)) {
    const path = moduleFile(issues, 'schemas', value, configDir, WHAT);
    return path === undefined ? undefined : { path, export: RUNNER_DEFAULTS.schemasExport };
  }
  const section = issues.section('schemas', value, SCHEMAS_KEYS, 'a module path, or a section { module, export }');
  if (section === undefined) return undefined;
  const path = moduleFile(issues, childPath('schemas', 'module'), section.module, configDir, WHAT);
  const name = issues.string(childPath('schemas', 'export'), section.export, { fallback: RUNNER_DEFAULTS.schemasExport });
  return path === undefined || name === undefined ? undefined : { path, export: name };
}
