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
}

export function statement(kind: string, text: string): Statement {
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  return { name: `txoutbox_${kind}_${hash}`, text };
}
