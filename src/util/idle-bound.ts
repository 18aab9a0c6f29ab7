/**
 * A bound on how long a transaction that holds outbox rows locked may sit idle on the server (the
 * server waiting for its client): `SET LOCAL idle_in_transaction_session_timeout`, sent with the
 * transaction's BEGIN. A row-lock batch (architecture/row-lock-mode.md) and a transactional
 * delivery (architecture/transactional-consume.md) hold their rows by the lock alone; a client that
 * is gone without the server knowing (a half-open connection: a NAT or firewall dropped it, the
 * client's host vanished) would otherwise keep them locked, where no claim can take them, until
 * TCP keepalive noticed: hours by default. Past the bound the server ends the session, rolls the
 * transaction back, and the rows are claimable again.
 */

/**
 * The least margin past leaseTtlMs such a transaction may sit idle. Both holders are bounded by
 * leaseTtlMs from the claim (a statement's own time is not idle time), but a synchronous handler
 * cannot be interrupted and a blocked event loop sends nothing: the margin is leaseTtlMs itself when
 * that is longer, so only a run that blocks for twice its bound has its transaction ended (a
 * row-lock batch then rolls back whole and runs again: architecture/row-lock-mode.md).
 */
export const IDLE_MARGIN_MS = 5_000;

/**
 * The SET LOCAL command (for a simple query inside the transaction block): idle for leaseTtlMs +
 * max(IDLE_MARGIN_MS, leaseTtlMs). A literal, because SET takes no parameter: an integer made from
 * a validated option.
 */
export function idleBound(leaseTtlMs: number): string {
  return `SET LOCAL idle_in_transaction_session_timeout = ${String(idleBoundMs(leaseTtlMs))}`;
}

/** The bound itself, in ms (idleBound's value). */
export function idleBoundMs(leaseTtlMs: number): number {
  const lease = Math.ceil(leaseTtlMs);
  return lease + Math.max(IDLE_MARGIN_MS, lease);
}

/**
 * The server's own probes of a client that may be silent for long: after 10 s without traffic,
 * every 5 s, giving up after 3 unanswered ones, so a client whose host vanished or whose path a NAT
 * dropped is found within ~25 s instead of the operating system's default of over two hours. A live
 * client's kernel answers them whatever its process does. They test the link to the next hop only
 * (behind PgBouncer, the pooler), and are ignored on a Unix socket, where a dead peer is seen at
 * once. Used by the queue-state leader's session (its advisory lock) and by a transactional run
 * under renewal (below).
 */
export const KEEPALIVE_SETTINGS = [
  ['tcp_keepalives_idle', '10'],
  ['tcp_keepalives_interval', '5'],
  ['tcp_keepalives_count', '3'],
] as const;

/**
 * For a lock holder that may be idle as long as it likes (a transactional run under lease
 * renewal): no idle bound, but KEEPALIVE_SETTINGS for the transaction's length (SET LOCAL: applied
 * to the connection's socket at once, reverted when the transaction ends).
 */
export const KEEPALIVE_PROBES = KEEPALIVE_SETTINGS.map(([name, value]) => `SET LOCAL ${name} = ${value}`).join('; ');

/** How long KEEPALIVE_SETTINGS take to give up on a silent client: idle, then every probe unanswered (25 s). */
export const KEEPALIVE_GIVES_UP_MS =
  1000 * (Number(KEEPALIVE_SETTINGS[0][1]) + Number(KEEPALIVE_SETTINGS[1][1]) * Number(KEEPALIVE_SETTINGS[2][1]));
