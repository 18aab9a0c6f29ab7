import { parseArgs } from 'node:util';

import type { QueueStatus, QueueStatusReport } from '../queues/queue-status.js';
import { terminalSafe } from '../util/terminal-safe.js';
import type { CommandIo } from './command-io.js';
import { CONNECTION_OPTIONS, resolveConnection } from './connection-options.js';
import { jsonLine } from './json-output.js';
import { operands, wholeNumber } from './option-values.js';
import { groupDigits, humanDuration, renderTable } from './text-table.js';
import { withOutbox } from './with-outbox.js';

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean', default: false },
  queue: { type: 'string', multiple: true },
  minutes: { type: 'string' },
} as const;

/** API option names as the CLI spells them (with-outbox.ts). */
const FLAG_OF = { queue: '--queue', queues: '--queue', minutes: '--minutes' };

/**
 * `txoutbox status [--queue Q ...] [--minutes N] [--json]`: `outbox.status()` as a table, one row
 * per queue, or the report as JSON (architecture/cli.md). Always exit 0 once the database answered:
 * a backlog is information, not a failure of the command.
 */
export async function statusCommand(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
  operands(positionals, [], 'status');
  const options = {
    ...(values.queue === undefined ? {} : { queues: values.queue }),
    ...(values.minutes === undefined ? {} : { minutes: wholeNumber('--minutes', values.minutes) }),
  };
  const report = await withOutbox(await resolveConnection(values, io), FLAG_OF, (outbox) => outbox.status(options));
  io.out(values.json ? jsonLine(report) : renderStatus(report));
  return 0;
}

const COLUMNS = [
  { header: 'QUEUE' },
  { header: 'READY', align: 'right' },
  { header: 'SCHEDULED', align: 'right' },
  { header: 'LEASED', align: 'right' },
  { header: 'DLQ', align: 'right' },
  { header: 'OLDEST READY', align: 'right' },
  { header: 'HANDLED/MIN', align: 'right' },
  { header: 'PAUSED' },
] as const;

/**
 * The human table (pure: tested with a report made by hand). A planner estimate is marked `~`
 * (`~12,000`); a DLQ count is `-` without a DLQ; the oldest-ready age is `-` when nothing is
 * ready. Below the table: each paused queue with since when and why, and the snapshot's time.
 */
export function renderStatus(report: QueueStatusReport): string {
  const at = `as of ${report.at.toISOString()}\n`;
  if (report.queues.length === 0) {
    return `no queue has pending rows, dead letters, a pause or recent throughput\n${at}`;
  }
  const rows = report.queues.map((q) => [
    q.queue,
    count(q.ready, q.estimated.ready),
    count(q.scheduled, q.estimated.scheduled),
    count(q.leased, q.estimated.leased),
    q.dlq === undefined ? '-' : count(q.dlq, q.estimated.dlq),
    q.ready === 0 ? '-' : humanDuration(q.oldestReadyAgeMs),
    groupDigits(q.handledPerMinute),
    q.paused ? 'paused' : '',
  ]);
  const pauses = report.queues.filter((q) => q.paused).map(pauseLine);
  const legend = report.queues.some((q) => Object.values(q.estimated).some(Boolean))
    ? '~ = planner estimate (the table is too large to count exactly at this cost)\n'
    : '';
  return `${renderTable(COLUMNS, rows)}${pauses.join('')}${legend}${at}`;
}

function count(n: number, estimated: boolean): string {
  return estimated ? `~${groupDigits(n)}` : groupDigits(n);
}

function pauseLine(q: QueueStatus): string {
  const since = q.pausedAt === null ? '' : ` since ${q.pausedAt.toISOString()}`;
  const why = q.pauseReason === null ? '' : `: ${terminalSafe(JSON.stringify(q.pauseReason))}`;
  // `--` ends the flags: a queue named `-x` is not read as one.
  const resume = `txoutbox queue resume ${q.queue.startsWith('-') ? '-- ' : ''}${shellWord(q.queue)}`;
  return `${terminalSafe(q.queue)} is paused${since}${why} (${terminalSafe(resume)})\n`;
}

/**
 * `text` as one POSIX shell word: as is when it has nothing a shell reads, else single-quoted. The
 * suggested resume command is pasted into a shell: `reports $(touch x)` ran the substitution.
 */
export function shellWord(text: string): string {
  return /^[\w.,:/@%+=-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}
