import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';

import { bodyPreviewOf } from '../../src/queues/peek.js';

describe('bodyPreviewOf', () => {
  test('bytes are measured as stored, not as their UTF-8 reading', () => {
    // Reported (review): every byte that is not UTF-8 reads as U+FFFD (3 bytes), so a 10 KB protobuf
    // was reported cut at 16 KiB ("the first 16.0 KiB of 9.8 KiB") and a 100-byte body at 120.
    const binary = Buffer.alloc(10_000, 0xff);
    assert.equal(bodyPreviewOf(binary, 16_384).bodyPreviewTruncated, false);
    assert.equal(bodyPreviewOf(randomBytes(100), 120).bodyPreviewTruncated, false);
    const cut = bodyPreviewOf(Buffer.concat([Buffer.from('ab'), Buffer.from('é'), Buffer.alloc(200, 0xff)]), 3);
    assert.deepEqual(cut, { bodyPreview: 'ab', bodyPreviewTruncated: true }, 'cut before the character that does not fit');
  });

  test('text and JSON values are measured in UTF-8 bytes', () => {
    assert.deepEqual(bodyPreviewOf('héllo', 6), { bodyPreview: 'héllo', bodyPreviewTruncated: false });
    assert.deepEqual(bodyPreviewOf('héllo', 2), { bodyPreview: 'h', bodyPreviewTruncated: true });
    assert.deepEqual(bodyPreviewOf({ a: 1 }, 100), { bodyPreview: '{"a":1}', bodyPreviewTruncated: false });
  });
});
