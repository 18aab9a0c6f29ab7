import { rowHeaders } from '../envelope/headers.js';
import type { RowFields } from '../util/decoded-query.js';
import type { ClaimedRecord } from './message.js';

/**
 * One row of a claim as it arrives (StatementRunner.decoded, or a textRows statement): the
 * server's texts in the select-list order of sql.ts claimedColumns, after `id`. NULL is null.
 */
export type ClaimedRowTexts = RowFields;

/** A column the claim's SQL never returns NULL for: a null here means the select list and this file disagree. */
function required(row: ClaimedRowTexts, index: number): string {
  const value = row[index];
  if (value === null || value === undefined) throw new Error(`claim row: column ${index} is missing or NULL`);
  return value;
}

function dateOrNull(text: string | null | undefined): Date | null {
  return text === null || text === undefined ? null : new Date(Number(text));
}

/**
 * A claimed row decoded: ids and counts from their texts, the payload from base64, the headers from
 * their jsonb text, timestamps from epoch milliseconds (sql.ts epochMs). What node-postgres' own
 * parsers did, without their per-column dispatch and their timestamp parser (issue 18).
 */
export function decodeClaimedRow(row: ClaimedRowTexts): ClaimedRecord {
  return {
    id: required(row, 0),
    queue: required(row, 1),
    payload: Buffer.from(required(row, 2), 'base64'),
    headers: rowHeaders(JSON.parse(required(row, 3))),
    created_at: new Date(Number(required(row, 4))),
    deliveries_count: Number(required(row, 5)),
    attempts_count: Number(required(row, 6)),
    first_attempt_at: dateOrNull(row[7]),
    timer_id: row[8] ?? null,
    last_exception_type: row[9] ?? null,
    ordering_key: row[10] ?? null,
  };
}
