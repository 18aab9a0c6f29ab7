/**
 * The packages a `txoutbox run` child loads when the config has a `tracing:` section: the
 * OpenTelemetry SDK pieces that `architecture/observability.md` wires by hand, plus the OTLP/HTTP
 * exporter. All are optional peer dependencies (package.json `peerDependenciesMeta`): a project
 * that never traces installs none of them, and a config that asks for tracing without them is a
 * config issue naming the missing ones and the command that installs them (validate-tracing.ts).
 *
 * `install` is the version the fix suggests: the line txoutbox is tested with. The 2.x SDK line
 * pairs with the 0.2xx exporters; the 3.x line (`@opentelemetry/sdk-trace` 3, API 1.10) is not
 * supported yet (architecture/runner.md, Tracing).
 */
export const TRACING_PEERS = [
  { name: '@opentelemetry/api', install: '@opentelemetry/api@~1.9.0' },
  { name: '@opentelemetry/core', install: '@opentelemetry/core@^2.12.1' },
  { name: '@opentelemetry/resources', install: '@opentelemetry/resources@^2.12.1' },
  { name: '@opentelemetry/sdk-trace-base', install: '@opentelemetry/sdk-trace-base@^2.12.1' },
  { name: '@opentelemetry/context-async-hooks', install: '@opentelemetry/context-async-hooks@^2.12.0' },
  { name: '@opentelemetry/exporter-trace-otlp-http', install: '@opentelemetry/exporter-trace-otlp-http@^0.223.1' },
] as const;

/** The `npm install` line for `missing` (names from TRACING_PEERS). */
export function tracingInstallCommand(missing: readonly string[]): string {
  const installs = TRACING_PEERS.filter((peer) => missing.includes(peer.name)).map((peer) => peer.install);
  return `npm install ${installs.join(' ')}`;
}
