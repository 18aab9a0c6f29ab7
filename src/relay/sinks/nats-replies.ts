/**
 * What the NATS sink reads out of JetStream's replies, as pure functions of the decoded reply
 * (architecture/relay.md, "NATS JetStream sink"): whether a publish reply is a PubAck, what
 * `$JS.API.STREAM.NAMES` says about a subject, whether `$JS.API.INFO` says JetStream serves the
 * account, and which API errors no retry can fix.
 */

/** JetStream API error codes (nats-server's errors.json) that no retry can fix. */
const REFUSED_API_ERRORS = new Map<number, string>([
  [10054, "the message is larger than the stream's max_msg_size"], // JSStreamMessageExceedsMaximumErr
  [10060, 'the subject is captured by another stream than the one named by the stream option'], // JSStreamNotMatchErr
  // The sink sends no expectation headers but Nats-Expected-Stream, and drops row headers named
  // Nats-*: these can only come from a client or server that sets them anyway, the same way each time.
  [10070, 'an expected last message id did not match'], // JSStreamWrongLastMsgIDErr
  [10071, 'an expected last sequence did not match'], // JSStreamWrongLastSequenceErr
  [10111, 'a rollup header was refused'], // JSStreamRollupFailedErr
]);

/** Why a JetStream API error code refuses the row, or undefined when a retry may succeed. */
export function refusedApiError(errCode: number): string | undefined {
  return REFUSED_API_ERRORS.get(errCode);
}

/**
 * Why a publish reply is not a PubAck, or undefined when it is one. nats.js only rejects
 * `stream: ""`, so any JSON reply without an error — a plain request/reply service listening on the
 * subject — would otherwise confirm a row that no stream stored.
 */
export function ackProblem(ack: unknown, stream: string | undefined): string | undefined {
  const named = (ack as { stream?: unknown } | null | undefined)?.stream;
  if (typeof named !== 'string' || named === '') return `the reply names no stream: ${shown(ack)}`;
  if (stream !== undefined && named !== stream) return `the reply names stream ${JSON.stringify(named)}, not "${stream}"`;
  return undefined;
}

/** What `$JS.API.STREAM.NAMES` answered for a subject. */
export type StreamLookup =
  /** JetStream answered without an error: no stream captures the subject. */
  | { readonly kind: 'none' }
  | { readonly kind: 'streams'; readonly streams: readonly string[] }
  /** No usable answer: an error (a cluster without a meta leader: 503/10008), or an unreadable reply. */
  | { readonly kind: 'unavailable'; readonly why: string };

/**
 * The verdict of a decoded STREAM.NAMES reply. "none" needs JetStream's own word: no `error` and
 * `total: 0`. A leaderless cluster also answers `streams: null`, with an error beside it; reading
 * that as "none" would dead-letter healthy rows.
 */
export function streamNamesVerdict(reply: unknown): StreamLookup {
  if (typeof reply !== 'object' || reply === null) return { kind: 'unavailable', why: `an unreadable reply: ${shown(reply)}` };
  const { error, streams, total } = reply as { error?: unknown; streams?: unknown; total?: unknown };
  if (error !== undefined && error !== null) {
    const { description, err_code: errCode } = error as { description?: unknown; err_code?: unknown };
    return { kind: 'unavailable', why: `${String(description)} (err_code ${String(errCode)})` };
  }
  if (Array.isArray(streams) && streams.length > 0) return { kind: 'streams', streams: streams.map(String) };
  if (total === 0 && (streams === null || streams === undefined || Array.isArray(streams))) return { kind: 'none' };
  return { kind: 'unavailable', why: `an unexpected reply: ${shown(reply)}` };
}

/**
 * Why a decoded `$JS.API.INFO` reply says JetStream cannot take publishes now, or undefined when it
 * can. The API answers errors as ordinary replies: an account without JetStream (503/10039) and a
 * cluster without a meta leader (503/10008) reply in time, and a check that only awaited the reply
 * said up while every send failed.
 */
export function accountInfoProblem(reply: unknown): string | undefined {
  if (typeof reply !== 'object' || reply === null) return `an unreadable reply: ${shown(reply)}`;
  const { error } = reply as { error?: unknown };
  if (error === undefined || error === null) return undefined;
  const { description, err_code: errCode } = error as { description?: unknown; err_code?: unknown };
  return `${String(description)} (err_code ${String(errCode)})`;
}

/** A reply as shown in a reason: bounded, since a foreign responder may send anything. */
function shown(value: unknown): string {
  // JSON.stringify(undefined) is undefined, whatever its declared type says.
  const text = (JSON.stringify(value) as string | undefined) ?? String(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
