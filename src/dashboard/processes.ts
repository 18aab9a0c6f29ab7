/** What the runner tells the processes page (`txoutbox run` with `dashboard.enabled`). */
export interface DashboardProcesses {
  /** The runner's /readyz answer: every consumer has a ready process and the database answers. */
  readonly ready: boolean;
  readonly consumers: readonly DashboardConsumer[];
}

export interface DashboardConsumer {
  readonly name: string;
  readonly queues: readonly string[];
  /** Processes the config asks for. */
  readonly wanted: number;
  /** Processes alive: starting, running, draining, or a reload's replacement. */
  readonly alive: number;
  /** Processes that reported ready. */
  readonly ready: number;
  /** Restarts after unexpected exits since the runner started. */
  readonly restarts: number;
  readonly pids: readonly number[];
}
