import type { Outbox } from '../outbox.js';
import type { ResolvedDashboardOptions } from './dashboard-options.js';
import type { PageContext } from './pages/layout.js';
import type { RequestGuard } from './request-guard.js';
import type { StatusCache } from './status-cache.js';

/** What the dashboard uses of an Outbox: read-only inspection plus the operator's actions. */
export type DashboardOutbox = Pick<Outbox, 'status' | 'pause' | 'resume' | 'peekPreviews' | 'dlq' | 'table' | 'dlqTable'>;

/** What every request of one dashboard shares: the outbox, the resolved options, the request guard and the shared status reads. */
export interface SharedContext {
  readonly outbox: DashboardOutbox;
  readonly options: ResolvedDashboardOptions;
  readonly guard: RequestGuard;
  /** Pages read status() through this, never directly; actions that change it invalidate it. */
  readonly status: StatusCache;
}

/** Everything a route needs: the shared parts and the CSRF token of this request's session. */
export interface DashboardContext extends SharedContext {
  readonly csrfToken: string;
}

export function pageContext(context: DashboardContext): PageContext {
  return {
    csrfToken: context.csrfToken,
    readOnly: context.options.readOnly,
    signedIn: context.guard.tokenRequired,
    refreshIntervalMs: context.options.refreshIntervalMs,
    table: context.outbox.table,
  };
}
