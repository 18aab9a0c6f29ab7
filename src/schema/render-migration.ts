import { quoteIdent } from './identifiers.js';
import type { MigrationTemplate } from './migrations.generated.js';
import type { SchemaNames } from './schema-names.js';

/** Substitutes the validated, quoted identifiers of one outbox into a migration template. */
export function renderMigration(template: MigrationTemplate, names: SchemaNames): string {
  const values: Record<string, string | undefined> = {
    outbox: names.outbox.sql,
    paused: names.paused.sql,
    stats: names.stats.sql,
    lease_ck: quoteIdent(names.leaseCk),
    ready_idx: quoteIdent(names.readyIdx),
    lease_idx: quoteIdent(names.leaseIdx),
    key_idx: quoteIdent(names.keyIdx),
    timer_uq: quoteIdent(names.timerUq),
    dlq: names.dlq?.sql,
    dlq_failed_idx: names.dlqFailedIdx === undefined ? undefined : quoteIdent(names.dlqFailedIdx),
    dlq_time_idx: names.dlqTimeIdx === undefined ? undefined : quoteIdent(names.dlqTimeIdx),
    dlq_reason_ck: names.dlqReasonCk === undefined ? undefined : quoteIdent(names.dlqReasonCk),
  };
  return template.sql.replace(/\{\{([a-z_]+)\}\}/g, (_match, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`migration ${template.name} uses unknown placeholder {{${key}}}`);
    return value;
  });
}
