import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DEFAULT_TABLE, resolveSchemaNames } from '../../src/schema/schema-names.js';
import type { ClaimedRecord } from '../../src/subscriber/message.js';
import { idRange } from '../../src/subscriber/row-lock-batch.js';
import { buildRowLockSql } from '../../src/subscriber/row-lock-sql.js';

const rows = (...ids: string[]) => ids.map((id) => ({ id }) as ClaimedRecord);

describe("a row-lock batch's id range (the other loop's claim skips it)", () => {
  test('lowest and highest by value, not by text: 9 < 10 < 100', () => {
    assert.deepEqual(idRange(rows('10', '9', '11', '12')), ['9', '12']);
    assert.deepEqual(idRange(rows('99', '100', '101')), ['99', '101']);
  });

  test('none for an empty batch, ids spread wider than twice the batch (a retried old row), or negative ids', () => {
    assert.equal(idRange([]), undefined);
    assert.equal(idRange(rows('5', '1000', '1001')), undefined);
    assert.deepEqual(idRange(rows('1000', '1001', '1004')), ['1000', '1004']);
    assert.equal(idRange(rows('-1', '2')), undefined);
  });

  test('ids past 2^53 compare exactly', () => {
    assert.deepEqual(idRange(rows('9007199254740993', '9007199254740992')), ['9007199254740992', '9007199254740993']);
  });
});

describe("the batch's ack DELETE (ids spliced into the COMMIT message's text)", () => {
  const { ackBatch } = buildRowLockSql(resolveSchemaNames(DEFAULT_TABLE, undefined));

  test('integers only: anything else is refused before it reaches SQL text', () => {
    assert.match(ackBatch(['1', '22', '-3']), /WHERE id = ANY\('\{1,22,-3\}'::bigint\[\]\)$/);
    assert.throws(() => ackBatch(["1}'::bigint[]); DROP TABLE x; --"]), /not a list of row ids/);
    assert.throws(() => ackBatch(['1', '']), /not a list of row ids/);
  });
});
