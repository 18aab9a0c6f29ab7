import { InvalidOptionError } from '../errors.js';

export const USAGE = `txoutbox: the transactional outbox for PostgreSQL

Usage:
  txoutbox migrate [options]          apply pending schema migrations
  txoutbox migrate --print [options]  print the migration SQL instead (no database needed)
  txoutbox run <config.yaml>          run the consumers of a config file, with one /metrics endpoint
                                      (SIGTERM/SIGINT drain and stop, SIGHUP reloads the config)
  txoutbox status [--queue Q ...] [--minutes N] [--json]
                                      per queue: ready, scheduled, leased, DLQ, oldest ready age,
                                      handled per minute, paused (~ marks a planner estimate)
  txoutbox queue pause <queue> [--reason R] [--json]
                                      subscribers in every process stop claiming it (rows keep arriving)
  txoutbox queue resume <queue> [--json]
  txoutbox queue peek <queue> [--state ready|scheduled|leased] [--limit N] [--cursor C] [--json]
                                      pending rows, oldest first, without leasing them
  txoutbox dlq list [--queue Q] [--reason R] [--limit N] [--cursor C] [--json]
                                      dead letters, newest first (a table, or { rows, nextCursor })
  txoutbox dlq show <id> [--json]     one dead letter: headers, body preview, last exception
  txoutbox dlq redrive (--id ID ... | --queue Q | --reason R | --all) [--delay-ms N] [--yes]
                                      move dead letters back into the outbox, fresh counters
  txoutbox dlq purge (--queue Q | --reason R | --older-than D | --all) [--yes]
                                      delete dead letters (--older-than 14d: those that failed
                                      more than 14 days ago; d, h, m, s, ms)
  txoutbox schema check [--json]      compare the tables with what txoutbox expects: drift fails
                                      (exit 1), autovacuum advice is printed but passes (exit 0)
  txoutbox dashboard [--host H] [--port P] [--token T] [--read-only] [--lease-ttl-ms N]
                    [connection options]
                                      the web dashboard (default http://127.0.0.1:9465/; another host
                                      needs --token or $TXOUTBOX_DASHBOARD_TOKEN); prints its URL
  txoutbox dev                        the demo: embedded PostgreSQL, a shop publishing orders, the runner
  txoutbox --version | --help

Connection (migrate, status, queue, dlq, schema, dashboard): the first of
  --database-url <url>   PostgreSQL connection string
  --config <file>        the runner's txoutbox.yaml: its database.url, table and dlqTable
  $DATABASE_URL
  ./txoutbox.yaml        when it exists and none of the above is given
and, overriding the source's table names:
  --table <name>         outbox table, schema-qualified (default: txoutbox.outbox; tables made
                         by 0.1 are public.outbox: pass --table public.outbox to keep them)
  --dlq-table <name>     dead-letter table (default: <table>_dlq, in the table's schema)

Options (migrate):
  --no-dlq               no dead-letter table
  --since <version>      with --print: only the migrations after <version> of each table, to
                         upgrade a schema your own migration tool owns (--since 1: what 0.1.0 lacks)
  --lock-timeout-ms <n>  how long one attempt waits for a live table's lock (default 2000; 0: no
                         bound, and every publish and claim waits behind the migration meanwhile)
  --lock-attempts <n>    attempts before giving up with the sessions that held the table (default 8)

Options (status, queue, dlq, schema):
  --json                 one JSON document on stdout instead of a table (tables are the default,
                         on a terminal or not: scripts ask for JSON)
  --queue <q>            status: only these queues (repeatable; reported even when empty)
  --minutes <n>          status: minutes of throughput history in --json (default 15, at most 60)
  --state <s>            queue peek: ready, scheduled or leased (default: all, in that order)
  --lease-ttl-ms <n>     queue peek, dashboard: your subscribers' lease TTL, if not the default
                         60000 (tells a held lease from an expired one)
  --reason <r>           queue pause: why, shown by status; dlq: max_deliveries, retry_terminal
                         or rejected
  --yes                  dlq redrive/purge without asking; without a terminal they refuse unless given

Exit codes:
  0  ok (also: status with a backlog, schema check with autovacuum advice only, a pause of a
     paused queue)
  1  failed: schema check found drift; dlq show: no such id; a declined confirmation; the
     database refused or is unreachable
  2  bad usage: an unknown command or option, a missing argument, a bad value, no database
     given, an unreadable --config, a destructive command without --yes and without a terminal
`;

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

/**
 * A flag whose value cannot be used, or a missing one with no fallback (no database to connect
 * to, an unreadable --config): bad usage (exit 2), printed with its fix but without the usage
 * text, which would bury the fix under forty lines.
 */
export class OptionError extends UsageError {
  override readonly name = 'OptionError';
  /** The flag at fault, as typed (`--config`, `--database-url`). */
  readonly option: string;
  readonly fix: string;

  constructor(args: { option: string; problem: string; fix: string; cause?: unknown }) {
    super(`${args.option}: ${args.problem}\nFix: ${args.fix}`, { cause: args.cause });
    this.option = args.option;
    this.fix = args.fix;
  }
}

/**
 * The API's InvalidOptionError for a value the user typed, as bad usage naming the flag (`flagOf`
 * maps the API option to it: `state` → `--state`) with the API's fix; undefined for any other
 * error, or an option the command has no flag for. One mapping for every command.
 */
export function flagError(error: unknown, flagOf: Readonly<Record<string, string>>): OptionError | undefined {
  if (!(error instanceof InvalidOptionError)) return undefined;
  const flag = flagOf[error.option];
  if (flag === undefined) return undefined;
  // A missing value (a token the host needs) has nothing to show; a secret is '[redacted]' already.
  const { value } = error;
  const got = value === undefined ? '' : `, got '${typeof value === 'string' ? value : JSON.stringify(value)}'`;
  return new OptionError({
    option: flag,
    problem: `expected ${error.expected}${got}`,
    fix: error.fix ?? 'see txoutbox --help',
    cause: error,
  });
}
