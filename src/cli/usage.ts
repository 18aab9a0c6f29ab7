export const USAGE = `txoutbox: the transactional outbox for PostgreSQL

Usage:
  txoutbox migrate [options]          apply pending schema migrations
  txoutbox migrate --print [options]  print the migration SQL instead (no database needed)
  txoutbox run <config.yaml>          run the consumers of a config file, with one /metrics endpoint
                                      (SIGTERM/SIGINT drain and stop, SIGHUP reloads the config)
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
`;

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
