/** One status line while the bench runs: rewritten in place on a terminal, one line per step otherwise. */
export class Progress {
  readonly #total: number;
  readonly #started = performance.now();
  readonly #tty = process.stdout.isTTY;
  #done = 0;

  constructor(total: number) {
    this.#total = total;
  }

  #elapsed(): string {
    const seconds = Math.round((performance.now() - this.#started) / 1000);
    return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  }

  begin(label: string): void {
    if (this.#tty) process.stdout.write(`\r\x1b[K[${this.#done + 1}/${this.#total}] ${this.#elapsed()} ${label} …`);
  }

  end(label: string, outcome: string): void {
    this.#done += 1;
    const line = `[${this.#done}/${this.#total}] ${this.#elapsed()} ${label}: ${outcome}`;
    if (this.#tty) process.stdout.write(`\r\x1b[K${line}`);
    else process.stdout.write(`${line}\n`);
  }

  note(text: string): void {
    process.stdout.write(this.#tty ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  finish(): void {
    if (this.#tty) process.stdout.write('\n');
  }
}
