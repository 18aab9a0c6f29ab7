/**
 * The text of one message a node-postgres client was given (client.query's first argument): a
 * simple query's string (several statements joined by `; `), a config's or a Query's text, or a
 * pipelined DecodedQuery's statements — its preludes, then its own — joined the same way. One
 * message is one round trip.
 */
export function messageText(query: unknown): string {
  if (typeof query === 'string') return query;
  const { text, preludes = [] } = (query ?? {}) as { text?: unknown; preludes?: readonly { text: string }[] };
  return [...preludes.map((prelude) => prelude.text), typeof text === 'string' ? text : ''].join('; ');
}
