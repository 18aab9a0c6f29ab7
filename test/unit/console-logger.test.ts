import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { consoleLogger } from '../../src/util/logger.js';

describe('consoleLogger', () => {
  test('a line carries no control character a terminal acts on: DEL and C1 are escaped as JSON escapes', () => {
    // Reported (review): JSON.stringify escapes C0 but leaves DEL and C1 raw, and the dashboard logs
    // each action with the queue's name: `q\u009b2J` (U+009B, a one-character CSI) reached the terminal.
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string) => {
      written.push(chunk);
      return true;
    };
    try {
      consoleLogger('info').info({ queue: 'q\u009b2J\u007f\u001b[31m' }, 'dashboard: paused a queue');
    } finally {
      process.stderr.write = write;
    }
    const [line] = written;
    assert.ok(line !== undefined);
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    assert.doesNotMatch(line.trimEnd(), /[\u0000-\u001f\u007f-\u009f]/);
    assert.equal(
      (JSON.parse(line) as { queue: string }).queue,
      'q\u009b2J\u007f\u001b[31m',
      'the escapes read back as the value',
    );
  });
});
