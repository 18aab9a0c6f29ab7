import { InvalidOptionError } from '../errors.js';
import type { OutboxOptions } from '../outbox-options.js';
import type { Message } from '../subscriber/message.js';
import { type AckPolicy, resolveAckPolicy } from '../subscriber/subscription-options.js';
import { type BodySchemas, resolveBodySchemas } from '../typed-events/body-schemas.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { consoleLogger, isLogger, type Logger } from '../util/logger.js';

export interface HandlerContextOptions {
  /** ctx.subscriber. @default 'test' */
  readonly subscriber?: string;
  /** How a return without a decision reads ('manual': a forgotten nack). @default 'nack_on_error' */
  readonly ackPolicy?: AckPolicy;
  /** Aborts ctx.signal, as shutdown or a lost lease would. */
  readonly signal?: AbortSignal;
  /** Where ctx's warnings go (a decision after settling). @default warnings on stderr */
  readonly logger?: Logger;
  /** The message being handled: ctx.publish() and ctx.causedBy() name it as the cause. runHandler() passes its own. */
  readonly message?: Message;
  /**
   * The Outbox's `schemas`: ctx.publish() validates a follow-up's body against its queue's schema,
   * as the real one does. The message handed to the handler is not validated (it is yours).
   */
  readonly schemas?: OutboxOptions['schemas'];
}

export interface ResolvedHandlerContextOptions {
  readonly subscriber: string;
  readonly ackPolicy: AckPolicy;
  readonly signal: AbortSignal | undefined;
  readonly logger: Logger;
  readonly message: Message | undefined;
  readonly schemas: BodySchemas | undefined;
}

const KNOWN = ['subscriber', 'ackPolicy', 'signal', 'logger', 'message', 'schemas'];

/**
 * createHandlerContext()'s and runHandler()'s options, checked as subscribe() checks its own (the
 * real ackPolicy and schemas resolvers): unchecked, `ackPolicy: 'Manual'` ran as nack_on_error, so
 * a forgotten decision read as an ack in the test where subscribe() refuses the option outright.
 * `message`: runHandler's own, which replaces the option's.
 */
export function resolveHandlerContextOptions(options: unknown, message?: unknown): ResolvedHandlerContextOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of handler context options' });
  }
  const raw = (options ?? {}) as Record<string, unknown>;
  rejectUnknownOptions(raw, 'handler context', KNOWN);
  const subscriber = raw.subscriber ?? 'test';
  if (typeof subscriber !== 'string' || subscriber.length === 0 || subscriber.length > 255) {
    throw new InvalidOptionError({
      option: 'subscriber',
      value: subscriber,
      expected: 'a non-empty string of at most 255 characters',
      fix: "Name the subscription as subscribe()'s `name` would, or leave it out for 'test'.",
    });
  }
  const { signal, logger } = raw;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidOptionError({
      option: 'signal',
      value: signal,
      expected: 'an AbortSignal',
      fix: 'Pass an AbortController’s signal and abort() it to stand for shutdown or a lost lease.',
    });
  }
  if (logger !== undefined && !isLogger(logger)) {
    throw new InvalidOptionError({
      option: 'logger',
      value: logger,
      expected: 'an object with debug, info, warn and error methods',
    });
  }
  return {
    subscriber,
    ackPolicy: resolveAckPolicy(raw.ackPolicy),
    signal,
    logger: logger ?? consoleLogger(),
    message: checkMessage(message ?? raw.message),
    schemas: resolveBodySchemas(raw.schemas),
  };
}

function checkMessage(message: unknown): Message | undefined {
  if (message === undefined) return undefined;
  if (typeof message !== 'object' || message === null || typeof (message as Partial<Message>).queue !== 'string') {
    throw new InvalidOptionError({
      option: 'message',
      value: message,
      expected: 'a Message (an object with its queue, id, headers…)',
      fix: 'Build one with testMessage(queue, body).',
    });
  }
  return message as Message;
}
