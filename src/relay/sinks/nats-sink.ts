import type * as Nats from 'nats';

import { SinkRefusedError, SinkUnavailableError } from '../../errors.js';
import type { RelayMessage, RelaySink, SendContext } from '../sink.js';
import { abortable } from './abortable.js';
import { loadPeer } from './load-peer.js';
import { describe, NatsConnector, type NatsLink, type NatsModule } from './nats-connection.js';
import {
  isPublishableSubject,
  NATS_SINK,
  type NatsSinkOptions,
  type ResolvedNatsOptions,
  resolveNatsOptions,
} from './nats-options.js';
import { accountInfoProblem, ackProblem, refusedApiError, type StreamLookup, streamNamesVerdict } from './nats-replies.js';

export type { NatsSinkOptions } from './nats-options.js';

/** A NATS JetStream sink, with the counters that show what JetStream did with the sends. */
export interface NatsSink extends RelaySink {
  /**
   * Since creation: `confirmed` sends (a PubAck came back), and how many of those acks said
   * `duplicate: true` — JetStream recognised the Nats-Msg-Id of a message it already stored (a resend
   * after a lost ack or a relay crash) and kept the one copy. The proof that a resend cost nothing.
   */
  readonly stats: { readonly confirmed: number; readonly duplicates: number };
  /** Connected and JetStream answering (an account-info request), within confirmTimeoutMs; false at once when the connection drops meanwhile. Never throws. */
  check(): Promise<boolean>;
}

/** The JetStream API subject that lists the streams capturing a subject (used only after a 503 or a reply that is no PubAck). */
const STREAM_NAMES_API = '$JS.API.STREAM.NAMES';
/** The JetStream API subject that answers only while JetStream serves this account: check()'s probe. */
const ACCOUNT_INFO_API = '$JS.API.INFO';

/**
 * Relays rows to NATS JetStream (architecture/relay.md, "NATS JetStream sink"): one `js.publish()`
 * per row, resolved by the stream's PubAck. `Nats-Msg-Id` is the row's stable messageId, so the
 * stream deduplicates a resend (after a lost ack, a relay crash) within its duplicate window.
 *
 * Concurrent sends share writes: the client coalesces every publish of a microtask turn into one
 * socket write, and the acks come back as they are stored (no send waits for another).
 */
export function natsSink(options: NatsSinkOptions): NatsSink {
  const resolved = resolveNatsOptions(options);
  return createNatsSink(resolved, () => loadPeer('nats', 'natsSink()'));
}

/**
 * natsSink() with the client loader as a parameter (tests point it at a module that does not exist).
 * The loader's result is typed `unknown` on purpose: this file's declarations are the public ones
 * (txoutbox/relay), and they must not name the client's types, which a TypeScript user without
 * `nats` installed could not resolve.
 */
export function createNatsSink(resolved: ResolvedNatsOptions, loadClient: () => Promise<unknown>): NatsSink {
  const connector = new NatsConnector(resolved, async () => clientOf(await loadClient()));
  const stats = { confirmed: 0, duplicates: 0 };

  async function send(message: RelayMessage, context: SendContext): Promise<void> {
    context.signal.throwIfAborted();
    const subject = resolved.subjectOf(message);
    refuseUnpublishableSubject(subject, message, resolved.systemSubjects);
    const link = await abortable(connector.link(), context.signal);
    const headers = headersOf(link.nats, message);
    let ack: Nats.PubAck | undefined;
    try {
      ack = await abortable(
        connector.untilLost(
          link.js.publish(subject, message.payload, {
            msgID: message.messageId,
            headers,
            timeout: resolved.confirmTimeoutMs,
            ...(resolved.stream === undefined ? {} : { expect: { streamName: resolved.stream } }),
          }),
        ),
        context.signal,
      );
    } catch (error) {
      if (context.signal.aborted) throw error;
      throw await classify(error, link, subject, message);
    }
    const problem = ackProblem(ack, resolved.stream);
    if (problem !== undefined) throw await notAnAck(problem, link, subject);
    stats.confirmed += 1;
    if (ack.duplicate) stats.duplicates += 1;
  }

  /** A publish failure as the relay must see it: SinkRefusedError when no retry can help, else retryable. */
  async function classify(error: unknown, link: NatsLink, subject: string, message: RelayMessage): Promise<Error> {
    // The connector's own verdict (the connection dropped with the publish in flight): already retryable.
    if (error instanceof SinkUnavailableError) return error;
    const code = (error as { code?: unknown } | null)?.code;
    const apiError = (error as { api_error?: { err_code?: unknown; description?: unknown } } | null)?.api_error;
    if (code === link.nats.ErrorCode.MaxPayloadExceeded) {
      return new SinkRefusedError(
        NATS_SINK,
        `message ${message.messageId} (${message.payload.length} bytes of payload, plus headers) exceeds the server's max_payload of ${link.nc.info?.max_payload ?? '?'} bytes`,
        { cause: error },
      );
    }
    if (typeof apiError?.err_code === 'number') {
      const why = refusedApiError(apiError.err_code);
      const said = `${String(apiError.description)} (JetStream err_code ${apiError.err_code})`;
      if (why !== undefined) return new SinkRefusedError(NATS_SINK, `${said}: ${why}; subject "${subject}"`, { cause: error });
      return new SinkUnavailableError(NATS_SINK, `JetStream did not store the message on "${subject}": ${said}`, {
        cause: error,
      });
    }
    if (code === link.nats.ErrorCode.NoResponders || code === link.nats.ErrorCode.JetStreamNotEnabled) {
      return await noResponders(error, link, subject);
    }
    if (code === link.nats.ErrorCode.Timeout) {
      return new SinkUnavailableError(NATS_SINK, `no JetStream ack for "${subject}" within ${resolved.confirmTimeoutMs} ms`, {
        cause: error,
      });
    }
    return new SinkUnavailableError(NATS_SINK, `the publish to "${subject}" failed: ${describe(error)}`, { cause: error });
  }

  /**
   * 503 "no responders": nothing answered the publish. That is a config problem when no stream
   * captures the subject — refused, so the rows wait in the DLQ (nothing lost) until a stream exists
   * and they are redriven, instead of retrying forever into nothing. But a 503 also comes from a
   * JetStream that is not serving right now (starting, a stream without a leader): those rows must
   * stay and be retried. So the sink asks JetStream itself which streams capture the subject, and
   * refuses only on its answer "none".
   */
  async function noResponders(error: unknown, link: NatsLink, subject: string): Promise<Error> {
    const lookup = await streamsCapturing(link, subject);
    switch (lookup.kind) {
      case 'none':
        return new SinkRefusedError(
          NATS_SINK,
          `no JetStream stream captures subject "${subject}" (503 no responders); create a stream whose subjects include it, then redrive the dead letters`,
          { cause: error },
        );
      case 'streams':
        return new SinkUnavailableError(
          NATS_SINK,
          `stream ${JSON.stringify(lookup.streams)} captures "${subject}" but did not answer (503 no responders): it may have no leader right now`,
          { cause: error },
        );
      case 'unavailable':
        return new SinkUnavailableError(
          NATS_SINK,
          `no JetStream answered the publish to "${subject}" (503 no responders), and the JetStream API did not say which streams capture it (${lookup.why}): is JetStream enabled and ready?`,
          { cause: error },
        );
    }
  }

  /**
   * The publish got a reply that is no PubAck: something else than JetStream answered on the
   * subject (a request/reply service), so nothing says the message was stored. Refused when no
   * stream captures the subject (every retry would get the same reply); otherwise retried, since a
   * stream does capture it and its ack may win the next time.
   */
  async function notAnAck(problem: string, link: NatsLink, subject: string): Promise<Error> {
    const lookup = await streamsCapturing(link, subject);
    const said = `the reply to the publish on "${subject}" is not a JetStream ack (${problem})`;
    if (lookup.kind === 'none') {
      return new SinkRefusedError(
        NATS_SINK,
        `${said}, and no JetStream stream captures subject "${subject}": a responder other than JetStream listens on it; create a stream whose subjects include it, then redrive the dead letters`,
      );
    }
    const streams = lookup.kind === 'streams' ? `stream ${JSON.stringify(lookup.streams)} captures it` : lookup.why;
    return new SinkUnavailableError(NATS_SINK, `${said}; ${streams}`);
  }

  /** JetStream's own word on which streams capture `subject` ($JS.API.STREAM.NAMES, bounded by confirmTimeoutMs). */
  async function streamsCapturing(link: NatsLink, subject: string): Promise<StreamLookup> {
    try {
      const reply = await connector.untilLost(
        link.nc.request(STREAM_NAMES_API, JSON.stringify({ subject }), { timeout: resolved.confirmTimeoutMs }),
      );
      return streamNamesVerdict(JSON.parse(new TextDecoder().decode(reply.data)) as unknown);
    } catch (lookupError) {
      return { kind: 'unavailable', why: describe(lookupError) };
    }
  }

  return {
    name: NATS_SINK,
    stats,
    send,
    async check(): Promise<boolean> {
      try {
        const link = await connector.link();
        const reply = await connector.untilLost(link.nc.request(ACCOUNT_INFO_API, '', { timeout: resolved.confirmTimeoutMs }));
        return accountInfoProblem(JSON.parse(new TextDecoder().decode(reply.data)) as unknown) === undefined;
      } catch {
        return false;
      }
    },
    close: () => connector.close(),
  };
}

/** The client's exports: a CommonJS module seen through import() may carry them on `default` only. */
function clientOf(module: unknown): NatsModule {
  const candidates = [module, (module as { default?: unknown } | null)?.default];
  const client = candidates.find((c) => typeof (c as { connect?: unknown } | null | undefined)?.connect === 'function');
  if (client === undefined) throw new Error('the "nats" module has no connect(): is it the NATS client, version 2.x?');
  return client as NatsModule;
}

/**
 * A subject the server would misread (whitespace splits the protocol line) or treat as a wildcard
 * can never be published for this row: refused. Empty tokens (`a..b`, a trailing dot) likewise.
 */
function refuseUnpublishableSubject(subject: string, message: RelayMessage, systemSubjects: boolean): void {
  if (!isPublishableSubject(subject)) {
    throw new SinkRefusedError(
      NATS_SINK,
      `subject ${JSON.stringify(subject)} of message ${message.messageId} is not a publishable NATS subject (no whitespace, no empty tokens, no '*' or '>' tokens)`,
    );
  }
  if (!systemSubjects && subject.startsWith('$'))
    throw new SinkRefusedError(
      NATS_SINK,
      `subject ${JSON.stringify(subject)} of message ${message.messageId} is a NATS system subject ($…), which only a subject option that starts with "$" (or a function) may name`,
    );
}

/**
 * Every row header but those named `Nats-*` (any case), then `correlation-id` when the row's headers
 * lack it. NATS reserves that prefix for JetStream's control headers: a row's
 * `Nats-Expected-Last-Sequence` would fail every retry (10071), a `Nats-Rollup` would purge the
 * subject on a stream that allows rollups. The client sets `Nats-Msg-Id` from msgID after these.
 * A header that NATS cannot carry (a CR/LF in a value, a key with ':' or a space) refuses the row:
 * it would fail the same way on every retry.
 */
function headersOf(nats: NatsModule, message: RelayMessage): Nats.MsgHdrs {
  const headers = nats.headers();
  let name = '';
  try {
    for (const [key, value] of Object.entries(message.headers)) {
      if (/^nats-/i.test(key)) continue;
      name = key;
      headers.set(key, value);
    }
    name = 'correlation-id';
    if (!headers.has('correlation-id')) headers.set('correlation-id', message.correlationId);
  } catch (error) {
    throw new SinkRefusedError(
      NATS_SINK,
      `header ${JSON.stringify(name)} of message ${message.messageId} cannot be a NATS header: ${describe(error)}`,
      { cause: error },
    );
  }
  return headers;
}
