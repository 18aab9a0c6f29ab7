import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { USAGE } from '../../src/cli/usage.js';

// `txoutbox --help` is the short form of architecture/cli.md: the dashboard's flags there are on
// its usage line.
const PAGE = readFileSync(new URL('../../architecture/cli.md', import.meta.url), 'utf8');

describe('txoutbox --help', () => {
  test('the dashboard entry has every flag architecture/cli.md gives `txoutbox dashboard`', () => {
    const row = PAGE.split('\n').find((line) => line.startsWith('| `txoutbox dashboard '));
    const flags: string[] = (row?.split(' | ')[0] ?? '').match(/--[a-z][a-z-]*/g) ?? [];
    assert.ok(flags.includes('--lease-ttl-ms'), `the page's flags: ${flags.join(' ')}`);
    const entry = USAGE.slice(USAGE.indexOf('  txoutbox dashboard'), USAGE.indexOf('  txoutbox dev'));
    assert.deepEqual(
      flags.filter((flag) => !entry.includes(flag)),
      [],
      entry,
    );
  });
});
