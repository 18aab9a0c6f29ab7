/** What a database command writes to and reads its environment from (main() passes the process's). */
export interface CommandIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  /** Notes and warnings (an implicit ./txoutbox.yaml, advice); absent: not shown. */
  err?(text: string): void;
}
