import assert from 'node:assert/strict';
import { test } from 'node:test';

import { toQuestionMarks } from '../../src/adapters/shared/positional-placeholders.js';

test('each $n becomes ? with its value, in text order: repeated and out-of-order uses', () => {
  const buffer = Buffer.from([0, 255]);
  assert.deepEqual(toQuestionMarks('SELECT $2::text, $1::bytea, $2::text, $10::int', ['a', buffer, 3, 4, 5, 6, 7, 8, 9, 10]), {
    text: 'SELECT ?::text, ?::bytea, ?::text, ?::int',
    values: [buffer, 'a', buffer, 10],
  });
});

test('values are passed through untouched: the same Buffer, arrays, null', () => {
  const buffer = Buffer.from('x');
  const array = [1, 2];
  const { values } = toQuestionMarks('SELECT $1, $2, $3', [buffer, array, null]);
  assert.equal(values[0], buffer);
  assert.equal(values[1], array);
  assert.equal(values[2], null);
});

test('a literal ? is escaped as \\? everywhere, since Knex and MikroORM scan the text without knowing SQL quoting', () => {
  assert.deepEqual(toQuestionMarks(`SELECT $1::jsonb ? 'k', '?' || $2, "a?b" -- why?\n/* ?? */`, ['{}', 'x']), {
    text: `SELECT ?::jsonb \\? 'k', '\\?' || ?, "a\\?b" -- why\\?\n/* \\?\\? */`,
    values: ['{}', 'x'],
  });
});

test('$n inside literals, quoted identifiers, dollar quotes and comments is text, not a parameter', () => {
  const text = `SELECT '$1', 'it''s $2', E'\\' $1', "$1", $$ $1 $$, $tag$ $2 $tag$, $3 -- $1\n/* $2 */`;
  const { text: rewritten, values } = toQuestionMarks(text, ['a', 'b', 'c']);
  assert.equal(rewritten, text.replace('$3', '?'));
  assert.deepEqual(values, ['c']);
});

test('a $n beyond the values given is a programming error, reported at once', () => {
  assert.throws(() => toQuestionMarks('SELECT $2', ['only one']), RangeError);
  assert.throws(() => toQuestionMarks('SELECT $0', ['x']), RangeError);
});
