import { childPath, type ConfigIssues, isSection } from './config-issues.js';

/**
 * Reports every empty value below the top (`table:` with nothing after it, `- ` in a list, `~`,
 * `null`): YAML reads each as null, and options that default on a missing value (`?? default`)
 * took null for missing, so `table:` ran on the default table without a word. No key of the config
 * means anything by null; the issue says to write the value or remove the key. Run after the
 * validation: a path that already has an issue (an unknown key, a validator's "empty, expected …")
 * keeps that one.
 */
export function reportEmptyValues(issues: ConfigIssues, value: unknown, path = ''): void {
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((item: unknown, index) => [index, item])
    : isSection(value)
      ? Object.entries(value)
      : [];
  for (const [key, item] of entries) {
    const itemPath = childPath(path, key);
    if (item === null) {
      issues.add(
        itemPath,
        typeof key === 'number'
          ? 'an empty list item: write its value, or remove the item'
          : 'empty: write a value, or remove the key to take its default',
      );
    } else reportEmptyValues(issues, item, itemPath);
  }
}
