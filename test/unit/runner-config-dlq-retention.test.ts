/** `dlqRetention` in txoutbox.yaml: the values it takes and the messages for the ones it refuses. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { ConfigError } from '../../src/errors.js';
import { loadRunnerConfig } from '../../src/runner/config/load-config.js';
import { formatDurationMs, parseDurationMs } from '../../src/util/duration.js';

const dir = mkdtempSync(join(tmpdir(), 'txoutbox-retention-'));
writeFileSync(join(dir, 'handler.js'), 'export default async () => {};\n');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let written = 0;
function configFile(top: string[]): string {
  written += 1;
  const path = join(dir, `config-${written}.yaml`);
  const lines = ['database:', '  url: postgres://app:pw-secret@localhost/app', ...top, 'consumers:', '  orders:'];
  writeFileSync(path, [...lines, '    handler: ./handler.js', '    queues: [orders]', ''].join('\n'));
  return path;
}

async function issue(top: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const error = await loadRunnerConfig(configFile(top), env).then(
    () => assert.fail('the config was accepted'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ConfigError, String(error));
  const found = error.issues.find((i) => i.path === 'dlqRetention');
  assert.ok(found, JSON.stringify(error.issues));
  return found.message;
}

describe('dlqRetention', () => {
  test('absent: no retention; a duration or milliseconds: the retention in ms', async () => {
    assert.equal((await loadRunnerConfig(configFile([]), {})).dlqRetentionMs, undefined);
    const cases: [string, number][] = [
      ['14d', 14 * 86_400_000],
      ['12h', 12 * 3_600_000],
      ['"90m"', 90 * 60_000],
      ['3600s', 3_600_000],
      ['600000', 600_000],
    ];
    for (const [value, ms] of cases) {
      assert.equal((await loadRunnerConfig(configFile([`dlqRetention: ${value}`]), {})).dlqRetentionMs, ms, value);
    }
    const fromEnv = await loadRunnerConfig(configFile(['dlqRetention: ${RETENTION}']), { RETENTION: '7d' });
    assert.equal(fromEnv.dlqRetentionMs, 7 * 86_400_000);
  });

  test('bad values name the key, the value and the fix', async () => {
    const unit = await issue(['dlqRetention: 14 days']);
    assert.match(unit, /^expected a duration such as 14d, 12h, 30m or 90s \(units d, h, m, s, ms\)/);
    assert.match(unit, /got "14 days"\. Write the unit: 14d keeps two weeks/);
    // A bare 14 is 14 ms: too short to be what anyone meant.
    const bare = await issue(['dlqRetention: 14']);
    assert.match(bare, /from 1m to 36500d, got 14\. 14ms is too short\. Write the unit: 14d/);
    assert.match(await issue(['dlqRetention: 30s']), /got "30s"\. 30s is too short/);
    assert.match(await issue(['dlqRetention: -1d']), /got "-1d"/);
    assert.match(await issue(['dlqRetention: 1.5d']), /got "1.5d"/);
    assert.match(await issue(['dlqRetention: 36501d']), /to 36500d, got "36501d"/);
    assert.match(await issue(['dlqRetention: true']), /got true/);
    assert.match(await issue(['dlqRetention: [14d]']), /got \["14d"\]/);
    assert.match(await issue(['dlqRetention: ${RETENTION}'], { RETENTION: 'soon' }), /got "soon"/);
  });

  test('a retention without a DLQ is an error, not ignored', async () => {
    const message = await issue(['dlqTable: false', 'dlqRetention: 14d']);
    assert.match(message, /no DLQ to enforce a retention on \(dlqTable: false\), got "14d"\. Remove dlqRetention/);
  });

  test('a misspelt key gets a did-you-mean', async () => {
    const error = await loadRunnerConfig(configFile(['dlqRetension: 14d']), {}).then(
      () => assert.fail('accepted'),
      (e: unknown) => e as ConfigError,
    );
    assert.match(error.message, /dlqRetension: .*dlqRetention/);
  });
});

test('parseDurationMs and formatDurationMs', () => {
  assert.equal(parseDurationMs('250ms'), 250);
  assert.equal(parseDurationMs(' 2 h '), 7_200_000);
  assert.equal(parseDurationMs('1d12h'), undefined);
  assert.equal(parseDurationMs('9'.repeat(20) + 'd'), undefined);
  assert.equal(parseDurationMs(Number.NaN), undefined);
  assert.equal(formatDurationMs(14 * 86_400_000), '14d');
  assert.equal(formatDurationMs(5_400_000), '90m');
  assert.equal(formatDurationMs(1_500), '1500ms');
});
