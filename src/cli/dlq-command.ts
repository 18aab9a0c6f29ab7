import { parseArgs } from 'node:util';

import type { DeadLetterPreview } from '../dlq/dead-letters.js';
import { describeDlqFilter } from '../dlq/describe-filter.js';
import type { DlqFailureReason, DlqFilter } from '../dlq/dlq-options.js';
import { DlqProgress } from '../dlq/dlq-progress.js';
import { MIN_RETENTION_MS, resolveOlderThanMs } from '../dlq/retention-options.js';
import { bodyKind, inspectBody } from '../envelope/decode-body.js';
import { indentJsonText } from '../envelope/json-text.js';
import { InvalidOptionError } from '../errors.js';
import type { Outbox } from '../outbox.js';
import { isBigintId } from '../util/bigint-id.js';
import { terminalSafe } from '../util/terminal-safe.js';
import { boundedRowJson, JSON_BODY_BYTES } from './bounded-row-json.js';
import { CONNECTION_OPTIONS, resolveConnection } from './connection-options.js';
import { jsonLine, rowJson } from './json-output.js';
import { subcommand, wholeNumber } from './option-values.js';
import { renderTable } from './text-table.js';
import { UsageError } from './usage.js';
import { withOutbox } from './with-outbox.js';

export interface DlqIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  err?(text: string): void;
  /** Asks a yes/no question on the terminal; absent when stdin or stdout is not one. */
  readonly confirm?: (question: string) => Promise<boolean>;
}

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean', default: false },
  queue: { type: 'string' },
  reason: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  id: { type: 'string', multiple: true },
  all: { type: 'boolean', default: false },
  'delay-ms': { type: 'string' },
  'older-than': { type: 'string' },
  yes: { type: 'boolean', default: false },
} as const;

function parse(args: string[]) {
  return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
}
type Values = ReturnType<typeof parse>['values'];

/** Which options each subcommand takes: anything else is bad usage, never silently ignored. */
const ACCEPTS: Record<string, readonly string[]> = {
  list: ['json', 'queue', 'reason', 'limit', 'cursor'],
  show: ['json'],
  redrive: ['id', 'queue', 'reason', 'all', 'delay-ms', 'yes', 'json'],
  purge: ['queue', 'reason', 'older-than', 'all', 'yes', 'json'],
};

/** API option names as the CLI spells them, so an InvalidOptionError becomes usage naming the flag. */
const FLAG_OF: Record<string, string> = {
  queue: '--queue',
  'filter.queue': '--queue',
  reason: '--reason',
  'filter.reason': '--reason',
  limit: '--limit',
  cursor: '--cursor',
  delayMs: '--delay-ms',
};

/**
 * `txoutbox dlq list | show <id> | redrive | purge`: the CLI over `outbox.dlq`
 * (architecture/cli.md). Resolves with the exit code: 0 ok, 1 not found or failed; bad usage
 * throws UsageError (exit 2).
 */
export async function dlqCommand(args: string[], io: DlqIo): Promise<number> {
  const { values, positionals } = parse(args);
  const [given, ...operands] = positionals;
  const sub = subcommand('dlq', given, ACCEPTS, values, 'list, show <id>, redrive or purge');
  if (operands.length > (sub === 'show' ? 1 : 0)) throw new UsageError(`unexpected argument '${operands.at(-1)}'`);
  // Parse every option before connecting: bad usage never waits for a database.
  const run = plan(sub, operands[0], values);
  return await withOutbox(await resolveConnection(values, io), FLAG_OF, (outbox) => run(outbox, io));
}

type Run = (outbox: Outbox, io: DlqIo) => Promise<number>;

function plan(sub: string, id: string | undefined, values: Values): Run {
  switch (sub) {
    case 'list': {
      const options = {
        ...(values.queue === undefined ? {} : { queue: values.queue }),
        ...(values.reason === undefined ? {} : { reason: values.reason as DlqFailureReason }),
        ...(values.limit === undefined ? {} : { limit: wholeNumber('--limit', values.limit) }),
        ...(values.cursor === undefined ? {} : { cursor: values.cursor }),
      };
      return async (outbox, io) => {
        if (values.json) {
          // Each body's first 64 KiB, never a whole one: `dlq show <id> --json` prints one whole row.
          const page = await outbox.dlq.listPreviews({ ...options, bodyPreviewBytes: JSON_BODY_BYTES });
          const rows = page.rows.map(boundedRowJson);
          io.out(jsonLine({ rows, nextCursor: page.nextCursor, limitedByBytes: page.limitedByBytes }));
        } else {
          // The table shows 60 bytes of a body: it never reads a whole one (a page of 1 MB bodies).
          const page = await outbox.dlq.listPreviews({ ...options, bodyPreviewBytes: BODY_CELL_BYTES });
          io.out(table(page.rows, page.nextCursor));
        }
        return 0;
      };
    }
    case 'show': {
      if (id === undefined) throw new UsageError('dlq show takes the id of a dead letter (from dlq list)');
      const shown = rowId('show <id>', id);
      return async (outbox, io) => {
        // --json prints the whole row; the text shows PREVIEW_CHARS of the body, read from its first
        // JSON_BODY_BYTES (before, a 1 GB dead letter was read whole to show 2,000 characters).
        const row = values.json
          ? await outbox.dlq.get(shown)
          : await outbox.dlq.getPreview(shown, { bodyPreviewBytes: JSON_BODY_BYTES });
        if (row === null) {
          io.out(values.json ? 'null\n' : `no dead letter with id ${shown} in ${outbox.dlqTable}\n`);
          return 1;
        }
        io.out('body' in row ? jsonLine(rowJson(row)) : details(row));
        return 0;
      };
    }
    default: {
      const operation = sub as 'redrive' | 'purge';
      const target = selection(operation, values);
      const delayMs = values['delay-ms'] === undefined ? undefined : wholeNumber('--delay-ms', values['delay-ms']);
      return async (outbox, io) => {
        let confirmed = target;
        if (!values.yes) {
          if (io.confirm === undefined) {
            throw new UsageError(`dlq ${operation} changes data and there is no terminal to confirm on: pass --yes`);
          }
          // A filter's yes covers the dead letters there when it was asked, not those that die
          // while the question is open: pinned to the newest id then (throughId), as the dashboard does.
          const throughId = Array.isArray(target) ? undefined : await outbox.dlq.lastId();
          const upTo = throughId === undefined ? '' : `, up to id ${throughId} (the newest now)`;
          if (!(await io.confirm(`${operation} ${describe(target)} in ${outbox.dlqTable}${upTo}? [y/N] `))) {
            io.out('nothing done\n');
            return 1;
          }
          if (throughId !== undefined) confirmed = { ...(target as DlqFilter), throughId };
        }
        const verb = operation === 'purge' ? 'purged' : 'redriven';
        const progress = new DlqProgress();
        const { onBatch } = progress;
        let done: { count: number; keyBusy: number; remaining: number };
        try {
          done =
            operation === 'purge'
              ? await outbox.dlq
                  .purge(confirmed as DlqFilter, { onBatch })
                  .then(({ purged, remaining }) => ({ count: purged, keyBusy: 0, remaining }))
              : await outbox.dlq
                  .redrive(confirmed, delayMs === undefined ? { onBatch } : { delayMs, onBatch })
                  .then(({ redriven, keyBusy }) => ({ count: redriven, keyBusy, remaining: 0 }));
        } catch (error) {
          // Ahead of the error main() prints: the batches before it are committed.
          io.err?.(`txoutbox: dlq ${operation} failed part way: ${progress.partWay(verb, outbox.dlqTable)}\n`);
          throw error;
        }
        const { count, keyBusy, remaining } = done;
        // Ids named one by one that were not there (redriven or purged already, or mistyped): a
        // script must be able to tell that from success, as from `dlq show` of a missing id. Rows
        // left because a transaction held their ordering key are there, but not done: exit 1 too;
        // so are rows a purge left because another redrive or purge held them throughout.
        const named = Array.isArray(target) ? new Set(target as readonly string[]).size : 0;
        const missing = named > 0 ? named - count - keyBusy : 0;
        if (values.json)
          io.out(
            jsonLine({
              [verb]: count,
              ...(missing > 0 ? { missing } : {}),
              ...(keyBusy > 0 ? { keyBusy } : {}),
              ...(remaining > 0 ? { remaining } : {}),
            }),
          );
        else {
          io.out(`${verb} ${count} dead letter${count === 1 ? '' : 's'}\n`);
          if (missing > 0)
            io.out(`${missing} of the ${named} ids given ${missing === 1 ? 'is' : 'are'} not in ${outbox.dlqTable}\n`);
          if (keyBusy > 0)
            io.out(
              `${keyBusy} left in ${outbox.dlqTable}: a transaction held their ordering key throughout (or another redrive or purge was moving them); run the redrive again\n`,
            );
          if (remaining > 0)
            io.out(
              `${remaining} left in ${outbox.dlqTable}: another redrive or purge was moving them throughout; run the purge again\n`,
            );
        }
        return missing > 0 || keyBusy > 0 || remaining > 0 ? 1 : 0;
      };
    }
  }
}

/** Exactly one selection: ids (redrive only), or a filter of --queue/--reason/--older-than, or --all. */
function selection(operation: 'redrive' | 'purge', values: Values): readonly string[] | DlqFilter {
  const ids = values.id ?? [];
  const filter: DlqFilter = {
    ...(values.queue === undefined ? {} : { queue: values.queue }),
    ...(values.reason === undefined ? {} : { reason: values.reason as DlqFailureReason }),
    ...(values['older-than'] === undefined ? {} : { olderThanMs: olderThan(values['older-than']) }),
    ...(values.all ? { all: true } : {}),
  };
  const byFilter = Object.keys(filter).length > 0;
  if (ids.length > 0 && byFilter) throw new UsageError('--id excludes --queue, --reason and --all');
  if (ids.length > 0) return ids.map((id) => rowId('--id', id));
  if (!byFilter) {
    const choices =
      operation === 'redrive' ? '--id ID, --queue Q, --reason R or --all' : '--queue Q, --reason R, --older-than D or --all';
    throw new UsageError(`dlq ${operation} needs a selection: ${choices}`);
  }
  return filter;
}

function describe(target: readonly string[] | DlqFilter): string {
  if (Array.isArray(target)) return `dead letter${target.length === 1 ? '' : 's'} ${target.join(', ')}`;
  return describeDlqFilter(target as DlqFilter);
}

/**
 * `--older-than 14d` (or milliseconds), judged before connecting by the rule the API applies. A
 * bare number below a minute is refused, as for the runner's dlqRetention: `--older-than 14` meant
 * as days (a cron line with --yes) would select every dead letter older than 14 ms.
 */
function olderThan(value: string): number {
  if (/^\s*\d+\s*$/.test(value) && Number(value) < MIN_RETENTION_MS) {
    const n = value.trim();
    throw new UsageError(
      `--older-than: '${n}' is ${n} milliseconds, which selects nearly every dead letter. Write the unit: ${n}d for ${n} days, ${n}h, ${n}m, or ${n}ms if you mean milliseconds.`,
    );
  }
  try {
    return resolveOlderThanMs('--older-than', value);
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    throw new UsageError(`--older-than: expected ${error.expected}, got '${value}'. ${error.fix ?? ''}`.trimEnd());
  }
}

function rowId(flag: string, value: string): string {
  if (!isBigintId(value)) {
    throw new UsageError(`${flag}: expected a dead letter id (a positive integer, from dlq list), got '${value}'`);
  }
  return value;
}

/** A table cell shows this much of a body (as `queue peek`'s); `--json` has 64 KiB of it, `dlq show --json` all of it. */
const BODY_CELL_BYTES = 60;

function table(rows: readonly DeadLetterPreview[], nextCursor: string | null): string {
  if (rows.length === 0) return 'no dead letters\n';
  const columns = [
    { header: 'ID' },
    { header: 'QUEUE' },
    { header: 'REASON' },
    { header: 'FAILED AT' },
    { header: 'DELIVERIES' },
    { header: 'LAST EXCEPTION' },
    { header: 'BYTES', align: 'right' },
    { header: 'BODY' },
  ] as const;
  const cells = rows.map((r) => [
    r.id,
    r.queue,
    r.failureReason,
    r.failedAt.toISOString(),
    String(r.deliveriesCount),
    r.lastExceptionType ?? '',
    String(r.payloadBytes),
    `${r.bodyPreview}${r.bodyPreviewTruncated ? '…' : ''}`,
  ]);
  const more = nextCursor === null ? '' : `more: --cursor ${nextCursor}\n`;
  return `${renderTable(columns, cells)}${more}`;
}

/** The body preview stops here: a 1 MB body must not flood the terminal. */
const PREVIEW_CHARS = 2_000;

/**
 * The body as `dlq show` prints it: a whole one decoded (JSON pretty-printed, bytes as base64) and
 * cut at PREVIEW_CHARS; one longer than the preview read as its first characters, read as UTF-8
 * (as base64 when it is not text), with its stored size.
 */
function shownBody(row: DeadLetterPreview): string {
  if (row.bodyPreviewTruncated) {
    const text = bodyKind(row.headers) !== 'bytes' ? row.bodyPreview : `(bytes, base64) ${row.payloadHead.toString('base64')}`;
    return `${text.slice(0, PREVIEW_CHARS)}… (${row.payloadBytes} bytes stored)`;
  }
  const body = inspectBody(row.payloadHead, row.headers);
  // A JSON body indented as written, not parsed and printed again: a number past 2^53 keeps its digits.
  const text = Buffer.isBuffer(body)
    ? `(bytes, base64) ${body.toString('base64')}`
    : typeof body === 'string'
      ? body
      : indentJsonText(row.payloadHead.toString('utf8'));
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}… (${text.length} chars)` : text;
}

function details(row: DeadLetterPreview): string {
  const preview = shownBody(row);
  // Everything below but the ids, dates and counts is what a publisher or a handler wrote: shown
  // through terminalSafe, a header on one line, the body and the exception on as many as they have.
  const lines = { keepLines: true };
  const headers = Object.entries(row.headers)
    // A header written outside the API (its jsonb edited by hand) may be any JSON value.
    .map(([k, v]: [string, unknown]) => `  ${terminalSafe(k)}: ${terminalSafe(typeof v === 'string' ? v : JSON.stringify(v))}\n`)
    .join('');
  return [
    `id:              ${row.id} (outbox id ${row.originalId})\n`,
    `queue:           ${terminalSafe(row.queue)}\n`,
    `reason:          ${row.failureReason}\n`,
    `failed at:       ${row.failedAt.toISOString()}\n`,
    `created at:      ${row.createdAt.toISOString()}\n`,
    `deliveries:      ${row.deliveriesCount} (attempts ${row.attemptsCount})\n`,
    `headers:\n${headers}`,
    `body:\n${terminalSafe(preview, lines)}\n`,
    `last exception:  ${terminalSafe(row.lastException ?? '(none)', lines)}\n`,
  ].join('');
}
