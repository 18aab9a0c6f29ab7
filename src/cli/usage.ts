export const USAGE = `txoutbox: the transactional outbox for PostgreSQL

Usage:
  txoutbox migrate [options]          apply pending schema migrations
  txoutbox migrate --print [options]  print the migration SQL instead (no database needed)
  txoutbox run <config.yaml>          run the consumers of a config file, with one /metrics endpoint
                                      (SIGTERM/SIGINT drain and stop, SIGHUP reloads the config)
  txoutbox dlq list [--queue Q] [--reason R] [--limit N] [--cursor C] [--json]
                                      dead letters, newest first (a table, or { rows, nextCursor })
  txoutbox dlq show <id> [--json]     one dead letter: headers, body preview, last exception
  txoutbox dlq redrive (--id ID ... | --queue Q | --reason R | --all) [--delay-ms N] [--yes]
                                      move dead letters back into the outbox, fresh counters
  txoutbox dlq purge (--queue Q | --reason R | --all) [--yes]
                                      delete dead letters
  txoutbox dev                        the demo: embedded PostgreSQL, a shop publishing orders, the runner
  txoutbox --version | --help

Options (migrate):
  --database-url <url>   PostgreSQL connection string (default: $DATABASE_URL)
  --table <name>         outbox table, schema-qualified (default: txoutbox.outbox; tables made
                         by 0.1 are public.outbox: pass --table public.outbox to keep them)
  --dlq-table <name>     dead-letter table (default: <table>_dlq, in the table's schema)
  --no-dlq               no dead-letter table
  --since <version>      with --print: only the migrations after <version> of each table, to
                         upgrade a schema your own migration tool owns (--since 1: what 0.1.0 lacks)

Options (dlq): --database-url, --table and --dlq-table as for migrate, and
  --reason <r>           max_deliveries, retry_terminal or rejected
  --yes                  redrive/purge without asking; without a terminal they refuse unless given

Exit codes: 0 ok, 1 failed (dlq show: no such id; a declined confirmation), 2 bad usage
`;

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
