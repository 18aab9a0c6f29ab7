/**
 * What a batched redrive or purge did before it failed. Each batch commits on its own, so a
 * failure part way (a statement timeout, a lost connection) leaves the earlier batches done; an
 * operator who is only shown the error cannot tell how many rows moved or were deleted. Pass
 * `onBatch` to the call, and `partWay()` says it with the error.
 */
export class DlqProgress {
  #done = 0;

  readonly onBatch = (rows: number): void => {
    this.#done += rows;
  };

  get done(): number {
    return this.#done;
  }

  /** One sentence for the failure's report: how many were done, and that they stay done. */
  partWay(verb: 'redriven' | 'purged', dlqTable: string | undefined): string {
    const rows = `${this.#done} dead letter${this.#done === 1 ? ' was' : 's were'}`;
    return `${rows} ${verb} before the failure (each batch commits on its own, so those stay ${verb}); the rest are still in ${dlqTable ?? 'the DLQ'}: run it again`;
  }
}
