/**
 * A handler module that cannot start: it throws on import, as a deploy with a bad build does. The
 * reload scenario points a consumer at it to check that a rollout stops at the first replacement
 * that fails and keeps the healthy processes.
 */
export {};

throw new Error('chaos: this handler module is broken on purpose (throws on import)');
