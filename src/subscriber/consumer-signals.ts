import type pg from 'pg';

import { errorMessage } from '../errors.js';
import type { ResolvedOutboxOptions } from '../outbox-options.js';
import { WAKE } from '../producer/wake-notifier.js';
import { duePayload, readSignal } from '../queues/channel-signal.js';
import { readPausedAmong } from '../queues/pause-sql.js';
import type { ConsumerDiagnostics } from '../schema/consumer-diagnostics.js';
import { backoffMs } from '../util/backoff.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../util/deadline.js';
import { DueAlarm } from './due-alarm.js';
import { readDueTimes } from './due-times-sql.js';
import { NotifyListener } from './listener.js';
import { UntilFirstWait } from './until-first-wait.js';

/**
 * The LISTEN connection and the setup diagnostics wait for a subscription's first idle claim, at
 * most this long after start() (until-first-wait.ts): a pause signal sent before LISTEN is read
 * back after it, and a consumer busy for longer than this is woken by NOTIFY when it idles.
 */
export const DEFERRED_START_MAX_MS = 1_000;

/**
 * stop()'s share of its CLOSE_TIMEOUT_MS for handing the retries over (two statements on a live
 * connection: a few ms); the LISTEN connection's close gets the rest.
 */
const HAND_OVER_MS = 400;

/**
 * A read of due times that failed (a migration's lock, past the connection's lock_timeout) is
 * tried again this much later, doubling up to DUE_READ_RETRY_MAX_MS while it keeps failing: each
 * try may hold the LISTEN connection for its lock_timeout, and notifications wait behind it.
 */
const DUE_READ_RETRY_MS = 1_000;
const DUE_READ_RETRY_MAX_MS = 30_000;

/** What ConsumerSignals needs of a subscription (Subscription, RowLockSubscription). */
export interface SignalledSubscription {
  readonly options: { readonly queues: readonly string[] };
  /** Its queue (or all of them, undefined) may have rows now. */
  wake(queue?: string): void;
  /** `queue` was paused: rows claimed but not started go back. */
  releasePaused(queue: string): void;
}

export interface ConsumerSignalsDeps {
  readonly options: ResolvedOutboxOptions;
  /** The Outbox's subscriptions, as they are added. */
  readonly subscriptions: readonly SignalledSubscription[];
  readonly diagnostics: ConsumerDiagnostics;
  /** The backend of this Outbox's own notifier (its wake-ups reached here before they were sent). */
  readonly ownNotifierPid: () => number | undefined;
  /** False once stop() began: nothing more opens. */
  readonly running: () => boolean;
}

/**
 * What reaches an Outbox's subscriptions from outside their own claims: wake-ups (a local publish,
 * a resume, a redrive, another process's NOTIFY) and pause signals, through the one LISTEN
 * connection this class opens once a subscription first waits for work (until-first-wait.ts),
 * together with the diagnostics that read the database. After every LISTEN (re)connect it reads
 * what the signals sent while nobody listened would have said: which queues are paused
 * (architecture/operations.md, "Buffered rows go back") and when their delayed rows come due
 * (architecture/subscriber.md, "Delayed messages and timers").
 */
export class ConsumerSignals {
  readonly #deps: ConsumerSignalsDeps;
  readonly #untilFirstWait: UntilFirstWait;
  #listener: NotifyListener | undefined;
  /** Per queue served here: when its delayed rows come due, as announced on the channel or read after LISTEN. */
  readonly #due = new Map<string, DueAlarm>();
  /** Reads of due times failed in a row (the streak is logged once, at its first). */
  #dueReadFailures = 0;
  /** Queues whose read of due times failed, read again together when the timer fires. */
  readonly #dueReadRetry = new Set<string>();
  #dueReadTimer: NodeJS.Timeout | undefined;
  /** Queues this Outbox wrote a retry in: their delayed rows are announced at stop(). */
  readonly #retriedQueues = new Set<string>();
  #stopped = false;

  constructor(deps: ConsumerSignalsDeps) {
    this.#deps = deps;
    this.#untilFirstWait = new UntilFirstWait(() => {
      this.#afterFirstWait();
    }, DEFERRED_START_MAX_MS);
  }

  /**
   * Subscriptions started (at start(), or one subscribed later, serving `added`): the diagnostics
   * that read no table, and the deferred start.
   */
  started(added?: readonly string[]): void {
    const { options, diagnostics, ownNotifierPid } = this.#deps;
    if (this.#deps.subscriptions.length === 0) return;
    diagnostics.onFirstSubscription();
    if (options.listen && this.#listener === undefined) {
      this.#listener = new NotifyListener({
        clientConfig: options.listenClientConfig,
        channel: options.names.channel,
        logger: options.logger,
        onWake: (payload) => {
          this.signal(payload);
        },
        afterListen: async (client) => {
          await this.#releaseMissedPauses(client);
          await this.#readDueTimes(client, this.#servedQueues());
        },
        ownNotifierPid,
      });
    } else if (added !== undefined && this.#listener?.listening === true) {
      // A subscription added while listening: its queues' delayed rows were not read.
      void this.#listener.whileListening((client) => this.#readDueTimes(client, added));
    }
    this.#untilFirstWait.arm();
  }

  /** A subscription waits for work (SubscriptionDeps.onIdle). */
  idle(): void {
    this.#untilFirstWait.waited();
  }

  /** Wakes the subscriptions of `queue`, or all of them (undefined: notifications may have been missed). */
  wake(queue: string | undefined): void {
    for (const s of this.#deps.subscriptions) {
      if (queue !== undefined && !s.options.queues.includes(queue)) continue;
      // Both modes list only the queues they expect rows in (queue-schedule.ts): they need the queue.
      s.wake(queue);
    }
  }

  /** A pause of `queue`: its subscriptions give back their buffered rows of it. */
  paused(queue: string): void {
    for (const s of this.#deps.subscriptions) if (s.options.queues.includes(queue)) s.releasePaused(queue);
  }

  /** A subscription here wrote a retry in `queue` (after its write, or its batch's COMMIT). */
  retried(queue: string): void {
    this.#retriedQueues.add(queue);
  }

  /**
   * Within CLOSE_TIMEOUT_MS, after the subscriptions stopped: the retries are handed over, then
   * the LISTEN connection closes; nothing opens afterwards.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const alarm of this.#due.values()) alarm.clear();
    clearTimeout(this.#dueReadTimer);
    this.#untilFirstWait.cancel();
    const listener = this.#listener;
    if (listener === undefined) return;
    const handedOver = this.#retriedQueues.size > 0;
    if (handedOver) {
      const deadline = { passed: false };
      await beforeDeadline(
        listener.whileListening((client) => this.#handOver(client, deadline), { last: true }),
        HAND_OVER_MS,
        () => {
          deadline.passed = true;
        },
      );
    }
    await listener.stop(handedOver ? CLOSE_TIMEOUT_MS - HAND_OVER_MS : CLOSE_TIMEOUT_MS);
  }

  /**
   * When a subscription first waits for work: the LISTEN connection and the setup diagnostics,
   * neither of which a drain needs. Never before the subscriptions started: their first claims ask
   * the pool for a connection synchronously in start(), so they get the one migrate() (or a
   * publish) left idle (a new connection first: 40–60 ms more before the first message on the
   * bench's machine, BENCHMARKS.md issue 18, row-lock mode, round five).
   */
  #afterFirstWait(): void {
    if (!this.#deps.running()) return;
    this.#listener?.start();
    this.#deps.diagnostics.readSetup();
  }

  /**
   * A payload on the channel (channel-signal.ts), from another process or, before it is sent, from
   * this Outbox's own notifier: a queue to wake now, a paused one, or a delayed row's queue to wake
   * when the row is due. Undefined: the LISTEN connection (re)connected, so notifications may have
   * been missed: wake all.
   */
  signal(payload: string | undefined): void {
    const signal = payload === undefined ? undefined : readSignal(payload);
    if (signal?.kind === 'paused') this.paused(signal.queue);
    else if (signal?.kind === 'due') this.#wakeWhenDue(signal.queue, signal.inMs);
    else this.wake(signal?.queue);
  }

  #wakeWhenDue(queue: string, inMs: number): void {
    if (!this.#deps.subscriptions.some((s) => s.options.queues.includes(queue))) return;
    this.#alarmOf(queue)?.add(performance.now() + inMs);
  }

  /**
   * One per queue a subscription here serves (the callers check that `queue` is one: the others'
   * announcements are ignored). When a read stopped at its limit, or announcements overflowed the
   * alarm, it reads the queue's later rows once those it knows have fired.
   */
  #alarmOf(queue: string): DueAlarm | undefined {
    if (this.#stopped) return undefined;
    let alarm = this.#due.get(queue);
    if (alarm === undefined) {
      alarm = new DueAlarm(
        () => {
          this.wake(queue);
        },
        { refill: () => void this.#listener?.whileListening((client) => this.#readDueTimes(client, [queue])) },
      );
      this.#due.set(queue, alarm);
    }
    return alarm;
  }

  /**
   * A pause committed while the LISTEN connection was down (or before its first LISTEN) signalled
   * nobody here: without this read, rows this process had buffered before it would still run.
   * Read on the LISTEN connection after its LISTEN succeeded, so a pause either is visible to it
   * or is notified; and no pool connection is opened for it while the first claims hold theirs.
   */
  async #releaseMissedPauses(client: pg.ClientBase): Promise<void> {
    const { options } = this.#deps;
    const queues = this.#servedQueues();
    if (queues.length === 0) return;
    try {
      for (const queue of await readPausedAmong(client, options.names, queues)) {
        this.paused(queue);
        // A resume that committed after the read's snapshot notified its wake before this answer
        // came (a statement's notifications arrive before its ReadyForQuery), and what that wake
        // claimed was just given back as paused: claim again. While paused: one empty claim.
        this.wake(queue);
      }
    } catch (error) {
      if (!this.#deps.running()) return;
      options.logger.warn(
        { err: errorMessage(error) },
        'could not read which queues are paused after the LISTEN connection (re)connected: rows buffered before a pause it missed run unless another signal comes',
      );
    }
  }

  /**
   * Delayed rows announced while nobody here listened (before start, a reconnect, a restart) would
   * run at the next poll, up to maxPollIntervalMs late: read when they come due, on the LISTEN
   * connection after its LISTEN, so a row is read, announced, or (due meanwhile) claimed after the
   * wake that follows the read. A queue whose read stopped at its limit is read again once the
   * last of them fired (DueAlarm's refill).
   */
  async #readDueTimes(client: pg.ClientBase, queues: readonly string[]): Promise<void> {
    if (queues.length === 0) return;
    try {
      const read = await readDueTimes(client, this.#deps.options.names, queues);
      this.#dueReadFailures = 0;
      const readAt = performance.now();
      // Looked up once: a subscription over thousands of queues would otherwise scan its list per queue read.
      const served = new Set(this.#servedQueues());
      for (const { queue, inMs, more } of read) {
        const alarm = served.has(queue) ? this.#alarmOf(queue) : undefined;
        if (alarm === undefined) continue;
        for (const ms of inMs) alarm.add(readAt + ms);
        if (more) alarm.unknownAfter(readAt + Math.max(...inMs));
      }
      // The read sees only rows not yet due: those that came due since the queues' last claims
      // began (the wake on connect, the alarm that asked for this read) are claimed now. Every
      // served queue read (on connect): one wake for all.
      if (queues.length >= served.size && queues.every((queue) => served.has(queue))) this.wake(undefined);
      else for (const queue of queues) if (served.has(queue)) this.wake(queue);
    } catch (error) {
      if (!this.#deps.running()) return;
      this.#dueReadFailures += 1;
      const retryInMs = backoffMs(this.#dueReadFailures, DUE_READ_RETRY_MS, DUE_READ_RETRY_MAX_MS);
      this.#retryDueRead(queues, retryInMs);
      if (this.#dueReadFailures > 1) return;
      this.#deps.options.logger.warn(
        { err: errorMessage(error), retryInMs: Math.round(retryInMs) },
        'could not read when delayed rows come due on the LISTEN connection: retrying; until it succeeds, rows published while it was down run at the next poll',
      );
    }
  }

  /**
   * A read that failed on a live connection (a dead one reconnects and reads everything again):
   * the queues are read again together, backing off, for as long as the reads fail.
   */
  #retryDueRead(queues: readonly string[], inMs: number): void {
    for (const queue of queues) this.#dueReadRetry.add(queue);
    if (this.#dueReadTimer !== undefined || this.#stopped) return;
    this.#dueReadTimer = setTimeout(() => {
      this.#dueReadTimer = undefined;
      const retry = [...this.#dueReadRetry];
      this.#dueReadRetry.clear();
      void this.#listener?.whileListening((client) => this.#readDueTimes(client, retry));
    }, inMs);
    this.#dueReadTimer.unref();
  }

  /**
   * A retry is not announced when it is written: the subscription that wrote it wakes itself when
   * it is due (due-alarm.ts). Once this Outbox stops, nobody would: the other processes' consumers
   * would find the row at their next poll. So the retried rows of the queues it retried in (up to
   * 100 each: due-times-sql.ts) are announced on the channel as a publish announces its own, and
   * each of those queues is woken, for the retries already due (written early in a long drain).
   * The warning is left out once stop() stopped waiting (the connection's close failed the read).
   */
  async #handOver(client: pg.ClientBase, deadline: { readonly passed: boolean }): Promise<void> {
    const { options } = this.#deps;
    const queues = [...this.#retriedQueues];
    try {
      const read = await readDueTimes(client, options.names, queues, true);
      const payloads = new Set(queues);
      for (const { queue, inMs } of read) for (const ms of inMs) payloads.add(duePayload(queue, ms));
      await client.query({ text: WAKE.text, values: [options.names.channel, [...payloads]] });
    } catch (error) {
      if (deadline.passed) return;
      options.logger.warn(
        { err: errorMessage(error) },
        "could not announce this process's retries as it stopped: other processes run them at their next poll",
      );
    }
  }

  #servedQueues(): string[] {
    return [...new Set(this.#deps.subscriptions.flatMap((s) => s.options.queues))];
  }
}
