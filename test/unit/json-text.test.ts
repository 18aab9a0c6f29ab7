import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { indentJsonText } from '../../src/envelope/json-text.js';

describe('indentJsonText', () => {
  test('lays a document out as JSON.stringify(value, null, 2) does, whatever its spacing', () => {
    const documents = [
      '{"a":1,"b":[1,2,{"c":null}],"d":{},"e":[],"f":"x"}',
      ' { "a" : [ ] ,\n\t"b" : { } , "c" : [ { } , [ ] ] } ',
      '[true,false,null,-1500,"{[,:]}"]',
      '"just a string"',
      '42',
      '{"quote \\" and brace }":"\\\\","nested":{"deeper":{"deepest":[1,[2,[3]]]}}}',
      '{"unicode":"é ✓ \\u00e9"}',
    ];
    for (const text of documents) {
      assert.equal(indentJsonText(text), JSON.stringify(JSON.parse(text), null, 2).replace('"é ✓ é"', '"é ✓ \\u00e9"'), text);
    }
  });

  test('keeps every number digit for digit and every string with its escapes', () => {
    // Reported (review): parsed and printed again, the id became 12345678901234567000 and 10.50 became 10.5.
    assert.equal(
      indentJsonText('{"id":12345678901234567891,"amount":10.50,"tiny":1E-400,"s":"\\u00e9"}'),
      '{\n  "id": 12345678901234567891,\n  "amount": 10.50,\n  "tiny": 1E-400,\n  "s": "\\u00e9"\n}',
    );
  });
});
