import { parseArgs } from 'node:util';

import type { Outbox } from '../outbox.js';
import { bodyPreviewOf, type PeekedPreview, type PeekPreviewPage, type PeekState } from '../queues/peek.js';
import { BODY_PREVIEW_BYTES } from '../queues/peek-page-bytes.js';
import type { QueuePauseState } from '../queues/queue-status.js';
import { terminalSafe } from '../util/terminal-safe.js';
import { boundedRowJson, JSON_BODY_BYTES } from './bounded-row-json.js';
import type { CommandIo } from './command-io.js';
import { CONNECTION_OPTIONS, resolveConnection } from './connection-options.js';
import { jsonLine } from './json-output.js';
import { operands, subcommand, wholeNumber } from './option-values.js';
import { renderTable } from './text-table.js';
import { withOutbox } from './with-outbox.js';

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean', default: false },
  reason: { type: 'string' },
  state: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  'lease-ttl-ms': { type: 'string' },
} as const;

type Values = ReturnType<typeof parse>['values'];
function parse(args: string[]) {
  return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
}

/** Which options each subcommand takes: anything else is bad usage, never silently ignored. */
const ACCEPTS: Record<string, readonly string[]> = {
  pause: ['reason', 'json'],
  resume: ['json'],
  peek: ['state', 'limit', 'cursor', 'lease-ttl-ms', 'json'],
};

/** API option names as the CLI spells them (with-outbox.ts). */
const FLAG_OF = {
  queue: '<queue>',
  reason: '--reason',
  state: '--state',
  limit: '--limit',
  cursor: '--cursor',
  leaseTtlMs: '--lease-ttl-ms',
};

/**
 * `txoutbox queue pause <queue> [--reason R] | resume <queue> | peek <queue> [--state S]
 * [--limit N] [--cursor C]`: `outbox.pause()`, `resume()`, `peek()` (architecture/cli.md). Pause
 * and resume are idempotent and change no row, so they never ask for confirmation.
 */
export async function queueCommand(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(args);
  const [given, ...rest] = positionals;
  const sub = subcommand('queue', given, ACCEPTS, values, 'pause, resume or peek');
  const [queue = ''] = operands(rest, ['<queue>'], `queue ${sub}`);
  // Parse every option before connecting: bad usage never waits for a database.
  const run = plan(sub, queue, values);
  io.out(await withOutbox(await resolveConnection(values, io), FLAG_OF, run));
  return 0;
}

function plan(sub: string, queue: string, values: Values): (outbox: Outbox) => Promise<string> {
  switch (sub) {
    case 'pause': {
      const options = values.reason === undefined ? {} : { reason: values.reason };
      return async (outbox) => {
        const state = await outbox.pause(queue, options);
        return values.json ? jsonLine(state) : pauseText(state);
      };
    }
    case 'resume':
      return async (outbox) => {
        const state = await outbox.resume(queue);
        return values.json ? jsonLine(state) : pauseText(state);
      };
    default: {
      const options = {
        ...(values.state === undefined ? {} : { state: values.state as PeekState }),
        ...(values.limit === undefined ? {} : { limit: wholeNumber('--limit', values.limit) }),
        ...(values.cursor === undefined ? {} : { cursor: values.cursor }),
        ...(values['lease-ttl-ms'] === undefined ? {} : { leaseTtlMs: wholeNumber('--lease-ttl-ms', values['lease-ttl-ms']) }),
      };
      return async (outbox) => {
        // The table shows 60 characters of each body, so it reads 1 KiB previews; --json prints each
        // body's first 64 KiB (the API's peek() has whole rows). Never a whole page of whole bodies.
        if (!values.json) return renderPeek(queue, await outbox.peekPreviews(queue, options));
        const page = await outbox.peekPreviews(queue, { ...options, bodyPreviewBytes: JSON_BODY_BYTES });
        const rows = page.rows.map((row) => ({
          ...boundedRowJson(row),
          // peek()'s 1 KiB preview, as --json printed it before the bodies were bounded.
          ...bodyPreviewOf(row.payloadHead.subarray(0, BODY_PREVIEW_BYTES + 1), BODY_PREVIEW_BYTES),
        }));
        return jsonLine({ rows, nextCursor: page.nextCursor, limitedByBytes: page.limitedByBytes });
      };
    }
  }
}

/** What pause/resume did, and what it means for the subscribers. */
export function pauseText(state: QueuePauseState): string {
  const name = `queue '${terminalSafe(state.queue)}'`;
  if (!state.paused) {
    return state.changed ? `resumed ${name}: subscribers claim it again\n` : `${name} was not paused: nothing to do\n`;
  }
  const since = state.pausedAt === null ? '' : ` since ${state.pausedAt.toISOString()}`;
  const why = state.reason === null ? '' : ` (reason: ${terminalSafe(JSON.stringify(state.reason))})`;
  return state.changed
    ? `paused ${name}${why}: subscribers stop claiming it within a second; rows keep arriving\n`
    : `${name} was already paused${since}${why}: nothing to do\n`;
}

/** A table cell shows this much of the body preview: one line per row; `--json` has the whole row. */
const BODY_CELL_CHARS = 60;

/** The human table of a peek page (pure). */
export function renderPeek(queue: string, page: Pick<PeekPreviewPage, 'rows' | 'nextCursor'>): string {
  if (page.rows.length === 0) return `no pending rows in queue '${terminalSafe(queue)}'\n`;
  const columns = [
    { header: 'ID', align: 'right' },
    { header: 'STATE' },
    { header: 'CREATED AT' },
    { header: 'DUE AT' },
    { header: 'LEASED AT' },
    { header: 'DELIVERIES', align: 'right' },
    { header: 'BYTES', align: 'right' },
    { header: 'BODY' },
  ] as const;
  const rows = page.rows.map((row) => [
    row.id,
    row.state,
    row.createdAt.toISOString(),
    row.nextAttemptAt.toISOString(),
    row.acquiredAt?.toISOString() ?? '',
    String(row.deliveriesCount),
    String(row.payloadBytes),
    bodyCell(row),
  ]);
  const more = page.nextCursor === null ? '' : `more: --cursor ${page.nextCursor}\n`;
  return `${renderTable(columns, rows)}${more}`;
}

function bodyCell(row: PeekedPreview): string {
  const preview = row.bodyPreview;
  return preview.length > BODY_CELL_CHARS || row.bodyPreviewTruncated ? `${preview.slice(0, BODY_CELL_CHARS)}…` : preview;
}
