import pg from 'pg';

/**
 * A real pool whose clients await `beforeClaim(statementName)` before sending each claim statement (or
 * each statement `statements` matches: a rejection fails it as the server would), and
 * `afterClaim()` before handing its result back: the database is real, only the claim's round trip
 * is lengthened (as on a busy server far away) or held (a claim stuck where no statement timeout
 * reaches; a claim whose rows are leased but not yet seen by the subscriber). Counts the claims in flight.
 */
export class ClaimDelayPool extends pg.Pool {
  inFlight = 0;
  maxInFlight = 0;
  readonly #beforeClaim: (statement: string) => Promise<void>;
  readonly #afterClaim: () => Promise<void>;
  readonly #wrapped = new WeakSet<pg.PoolClient>();
  readonly #statements: RegExp;

  /** `statements`: the prepared statements' names it holds (`txoutbox_<kind>_<hash>`); the claims by default. */
  constructor(
    config: pg.PoolConfig,
    beforeClaim: (statement: string) => Promise<void>,
    afterClaim: () => Promise<void> = () => Promise.resolve(),
    statements = /claim/,
  ) {
    super(config);
    this.#beforeClaim = beforeClaim;
    this.#afterClaim = afterClaim;
    this.#statements = statements;
  }

  // The subscriber checks a client out with the promise form and runs its statement with a config
  // object (util/statement-runner.ts); pool.query (ping, a test's own reads) uses the callback form.
  override connect(...args: unknown[]): never {
    if (args.length > 0) return (super.connect as (...a: unknown[]) => never).apply(this, args);
    return super.connect().then((client) => {
      if (!this.#wrapped.has(client)) {
        this.#wrapped.add(client);
        const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
        client.query = ((...queryArgs: unknown[]) => {
          const config = queryArgs[0] as { name?: string } | undefined;
          if (typeof config !== 'object' || !this.#statements.test(config.name ?? '')) return query(...queryArgs);
          this.inFlight += 1;
          this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
          if (isSubmittable(config)) return this.#holdSubmittable(config, query);
          return this.#beforeClaim(config.name ?? '')
            .then(() => query(...queryArgs))
            .then(async (result) => {
              await this.#afterClaim();
              return result;
            })
            .finally(() => {
              this.inFlight -= 1;
            });
        }) as never;
      }
      return client;
    }) as never;
  }

  /**
   * A claim decoded off the wire (src/util/decoded-query.ts) is a submittable: client.query returns
   * it at once and its callback says when the statement ended. Held the same way: submitted after
   * beforeClaim, its callback told after afterClaim.
   */
  #holdSubmittable(submittable: Submittable, query: (...a: unknown[]) => unknown): Submittable {
    const done = submittable.callback;
    submittable.callback = (...result: unknown[]) => {
      void this.#afterClaim()
        .then(() => done?.(...result))
        .finally(() => {
          this.inFlight -= 1;
        });
    };
    void this.#beforeClaim(submittable.name ?? '').then(() => query(submittable));
    return submittable;
  }
}

interface Submittable {
  submit: unknown;
  name?: string;
  callback?: (...result: unknown[]) => void;
}

function isSubmittable(config: object): config is Submittable {
  return typeof (config as { submit?: unknown }).submit === 'function';
}

/**
 * A `beforeClaim` for a ClaimDelayPool whose `statements` take in the lease renewals (`_renew_`):
 * each renewal fails, as a database refusing them would, so a renewing run outlives its lease
 * (a lease-bound run is timed out at its expiry instead: subscriber-handler-timeout.test.ts).
 * Other statements it holds wait for `otherwise()`.
 */
export function refusingRenewals(otherwise: () => Promise<void> = () => Promise.resolve()): (statement: string) => Promise<void> {
  return (statement) => (statement.includes('_renew_') ? Promise.reject(new Error('lease renewal refused (test)')) : otherwise());
}

/** A real pool on which every lease renewal fails (see refusingRenewals); the caller ends it. */
export function renewalRefusingPool(connectionString: string): ClaimDelayPool {
  return new ClaimDelayPool({ connectionString, max: 4 }, refusingRenewals(), undefined, /_renew_/);
}
