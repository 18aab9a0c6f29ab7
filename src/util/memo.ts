/**
 * Values made once per key and kept: series per label tuple, stats per (subscriber, queue). The
 * maker is fixed at construction, so a lookup on the delivery path allocates nothing.
 */
export class Memo<K, V> {
  readonly #values = new Map<K, V>();
  readonly #make: (key: K) => V;

  constructor(make: (key: K) => V) {
    this.#make = make;
  }

  get(key: K): V {
    let value = this.#values.get(key);
    if (value === undefined) {
      value = this.#make(key);
      this.#values.set(key, value);
    }
    return value;
  }
}
