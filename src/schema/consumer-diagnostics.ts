import type { ResolvedOutboxOptions } from '../outbox-options.js';
import { warnAboutGenericPlans, warnAboutPoolSafeguards } from '../util/owned-pool.js';
import { warnAboutRoleSettings } from '../util/transaction-pooling.js';
import { missingTableExplainer } from './explain-missing-table.js';
import { reportStrandedRows } from './stranded-rows.js';

/**
 * What an Outbox tells an operator about its setup once it starts consuming, kept out of the
 * Outbox itself: a pool passed in without the safeguards txoutbox relies on (or planning prepared
 * statements the default way), rows stranded in 0.1's
 * table, and — at the first claim that fails with undefined_table — why the table is missing.
 * Each runs once per Outbox, off the claim path, and never throws.
 */
export class ConsumerDiagnostics {
  readonly #options: ResolvedOutboxOptions;
  #started = false;
  #read = false;
  /** Given every claim error by each subscription (SubscriptionDeps.onClaimError). */
  readonly onClaimError: (error: unknown) => void;

  constructor(options: ResolvedOutboxOptions) {
    this.#options = options;
    this.onClaimError = missingTableExplainer(options.pool, options.names, options.logger);
  }

  /** As the first subscription starts: the pool's own options, read off the pool object (no statement). */
  onFirstSubscription(): void {
    if (this.#started) return;
    this.#started = true;
    const { pool, ownedPool, queryTimeoutMs, logger, transactionPooling } = this.#options;
    if (!transactionPooling && ownedPool === undefined) warnAboutPoolSafeguards(pool, queryTimeoutMs, logger);
  }

  /**
   * The checks that read the database, each on a pool connection: once a subscription first waits
   * for work (consumer-signals.ts), so a starting drain does not open connections for them.
   */
  readSetup(): void {
    if (this.#read) return;
    this.#read = true;
    const { pool, ownedPool, queryTimeoutMs, names, logger, preparedStatements, transactionPooling } = this.#options;
    if (transactionPooling) {
      // Session settings cannot come from the pool's side here: only the role's count.
      void warnAboutRoleSettings(pool, queryTimeoutMs, preparedStatements, logger);
    } else if (ownedPool === undefined && preparedStatements) {
      void warnAboutGenericPlans(pool, logger);
    }
    void reportStrandedRows(pool, names, logger);
  }
}
