export type { EmbeddedPostgres, StartEmbeddedPostgresOptions } from './start-embedded-postgres.js';
export { startEmbeddedPostgres } from './start-embedded-postgres.js';
