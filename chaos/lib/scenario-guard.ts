/**
 * A scenario's run is abandoned when its bound runs out (scenario-run.ts): within() stops waiting
 * for it but cannot stop it, and once its pauses end early it goes on to its next steps. Left alone
 * it would start runners and workers after the cleanup (left running into the next scenario), poll
 * a pool the harness closed, inject a fault while the accounting reads, and write findings into a
 * result already returned. So everything the harness hands a scenario is refused once the scenario
 * is over: the context's methods and every method of the objects it handed out throw ScenarioOver,
 * which ends the run.
 */

export class ScenarioOver extends Error {
  constructor(what: string) {
    super(`${what} refused: the scenario is over`);
    this.name = 'ScenarioOver';
  }
}

export class ScenarioGuard {
  readonly #signal: AbortSignal;
  /** Guarded object → the harness's own. */
  readonly #raw = new WeakMap<object, object>();

  /** Over once `signal` aborted. */
  constructor(signal: AbortSignal) {
    this.#signal = signal;
  }

  get over(): boolean {
    return this.#signal.aborted;
  }

  /** Throws ScenarioOver once the scenario is over. */
  check(what: string): void {
    if (this.#signal.aborted) throw new ScenarioOver(what);
  }

  /**
   * `target` as a scenario gets it: its methods throw ScenarioOver once the scenario is over (its
   * fields and getters still read). The methods run on `target` itself (its private fields).
   */
  wrap<T extends object>(target: T, name: string): T {
    const guarded = new Proxy(target, {
      get: (object, property) => {
        const value: unknown = Reflect.get(object, property, object);
        if (typeof value !== 'function') return value;
        const method = value as (...args: unknown[]) => unknown;
        return (...args: unknown[]): unknown => {
          this.check(`${name}.${String(property)}()`);
          return method.apply(object, args);
        };
      },
    });
    this.#raw.set(guarded, target);
    return guarded;
  }

  /** The harness's own object behind one handed to the scenario (itself when not wrapped). */
  unwrap<T extends object>(value: T): T {
    return (this.#raw.get(value) as T | undefined) ?? value;
  }
}
