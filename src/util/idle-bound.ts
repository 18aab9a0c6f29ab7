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
 * How much longer than leaseTtlMs such a transaction may sit idle: room for a stalled event loop
 * and the last statements of a run that ended at its deadline. Both holders are bounded by
 * leaseTtlMs from the claim, and a statement's own time is not idle time.
 */
export const IDLE_MARGIN_MS = 5_000;

/**
 * The SET LOCAL command (for a simple query inside the transaction block). A literal, because SET
 * takes no parameter: an integer made from a validated option.
 */
export function idleBound(leaseTtlMs: number): string {
  return `SET LOCAL idle_in_transaction_session_timeout = ${String(Math.ceil(leaseTtlMs) + IDLE_MARGIN_MS)}`;
}

/**
 * For a lock holder that may be idle as long as it likes (a transactional run under lease
 * renewal): no idle bound, but the server probes the client itself while the transaction lasts —
 * after 30 s without traffic, every 10 s, giving up after 3 unanswered probes (`tcp_keepalives_*`,
 * applied to the connection's socket at once and reverted when the transaction ends). A client
 * whose host vanished or whose path a NAT dropped is then found within about a minute instead of
 * the operating system's default of over two hours. A live client's kernel answers the probes
 * whatever its handler does. Ignored on a Unix-domain socket.
 */
export const KEEPALIVE_PROBES = [
  'SET LOCAL tcp_keepalives_idle = 30',
  'SET LOCAL tcp_keepalives_interval = 10',
  'SET LOCAL tcp_keepalives_count = 3',
].join('; ');
