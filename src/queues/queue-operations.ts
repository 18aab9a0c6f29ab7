import { DeadLetters } from '../dlq/dead-letters.js';
import { buildDlqSql } from '../dlq/dlq-sql.js';
import { InvalidOptionError } from '../errors.js';
import { peek, type PeekContext, type PeekOptions, type PeekPage, type PeekPreviewPage, peekPreviews } from './peek.js';
import { buildPeekSql } from './peek-sql.js';
import { QueueControls, type QueueControlsDeps } from './queue-controls.js';

/**
 * The operator's side of an Outbox (architecture/operations.md): the DLQ, peek, pause/resume and
 * status, each built on first use (an Outbox that only publishes builds none of their
 * statements). Kept out of the Outbox, which only checks its state and delegates.
 */
export class QueueOperations {
  readonly #deps: QueueControlsDeps;
  #deadLetters: DeadLetters | undefined;
  #peek: PeekContext | undefined;
  #controls: QueueControls | undefined;

  constructor(deps: QueueControlsDeps) {
    this.#deps = deps;
  }

  /** outbox.dlq. Throws InvalidOptionError naming `dlqTable` when the Outbox has no DLQ. */
  get deadLetters(): DeadLetters {
    const { names, db, signalLocal } = this.#deps;
    if (names.dlq === undefined) {
      throw new InvalidOptionError({
        option: 'dlqTable',
        value: false,
        expected: 'a DLQ table for outbox.dlq to read and move rows from',
        fix: 'Construct the Outbox without `dlqTable: false` (the default is `<table>_dlq`) and run migrate().',
      });
    }
    this.#deadLetters ??= new DeadLetters({
      db,
      table: names.dlq,
      sql: buildDlqSql({ ...names, dlq: names.dlq }),
      channel: names.channel,
      signalLocal,
    });
    return this.#deadLetters;
  }

  peek(queue: string, options?: PeekOptions): Promise<PeekPage> {
    return peek(this.#peekContext(), queue, options);
  }

  peekPreviews(queue: string, options?: PeekOptions): Promise<PeekPreviewPage> {
    return peekPreviews(this.#peekContext(), queue, options);
  }

  #peekContext(): PeekContext {
    this.#peek ??= { db: this.#deps.db, sql: buildPeekSql(this.#deps.names) };
    return this.#peek;
  }

  /** pause(), resume() and status(). */
  get controls(): QueueControls {
    this.#controls ??= new QueueControls(this.#deps);
    return this.#controls;
  }
}
