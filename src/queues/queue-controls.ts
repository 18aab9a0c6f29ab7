import type { PauseOptions, QueuePauseState, QueueStatusReport, StatusOptions } from './queue-status.js';

const pending = (what: string): Promise<never> => Promise.reject(new Error(`${what}: not implemented yet`));

/** Pause, resume and status of an Outbox's queues. (Being implemented: issue 15.) */
export class QueueControls {
  pause(queue: string, options?: PauseOptions): Promise<QueuePauseState> {
    return pending(`pause(${queue}, ${JSON.stringify(options)})`);
  }

  resume(queue: string): Promise<QueuePauseState> {
    return pending(`resume(${queue})`);
  }

  status(options?: StatusOptions): Promise<QueueStatusReport> {
    return pending(`status(${JSON.stringify(options)})`);
  }
}
