import { createHash } from 'node:crypto';

/**
 * A named (prepared) statement. node-postgres prepares a name once per connection and reuses the
 * plan, which saves the parse and plan on every hot-path call. The name carries a hash of the
 * text, so two outboxes (two tables) never collide on one connection, and the same text always
 * gets the same name.
 */
export interface Statement {
  readonly name: string;
  readonly text: string;
  /** Rows as arrays of the server's text values, no node-postgres type parsing: see textRows. */
  readonly textRows?: true;
  /** Run with one generic plan per connection, under the generic-plan settings: see plannedOnce. */
  readonly plannedOnce?: true;
}

export function statement(kind: string, text: string): Statement {
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  return { name: `txoutbox_${kind}_${hash}`, text };
}

/**
 * `statement`, whose rows come back as arrays of the server's texts (NULL as null), in its
 * select-list order, for a caller that decodes them itself (the claim: subscriber/claimed-row.ts).
 * Cheaper than node-postgres' row objects and type parsers on the hottest path, and immune to the
 * type parsers an application sets globally (pg.types.setTypeParser).
 */
export function textRows(of: Statement): Statement {
  return { ...of, textRows: true };
}

/**
 * `statement` (a textRows one, run outside a transaction by StatementRunner.decoded), planned once
 * per connection: sent right after the generic-plan settings (util/generic-plan.ts
 * GENERIC_PLAN_PRELUDE) in the same round trip and implicit transaction, so its cached generic plan
 * (index scans) is reused on a pool whose sessions plan every execution (force_custom_plan). For a
 * statement whose planning costs about as much as its execution (the lease-mode claims of a
 * subscription over several queues: 1.1 ms of planning for claimMany, 0.5 for claimOneReported;
 * BENCHMARKS.md issue 18 b). Only when it is prepared (a named statement)
 * and runs on a client of this package's node-postgres (DecodedQuery); otherwise it is planned as
 * the session says.
 */
export function plannedOnce(of: Statement): Statement {
  return { ...of, plannedOnce: true };
}
