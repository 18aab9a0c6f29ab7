/**
 * A handler module that cannot start: it throws on import, as a deploy with a bad build does. The
 * reload scenario points a consumer at it to check that a rollout stops at the first replacement
 * that fails and keeps the healthy processes.
 */
import { BROKEN_HANDLER_ERROR } from '../lib/runner-process.js';

// Its message tells the harness that a consumer process exiting with it is its own doing.
throw new Error(BROKEN_HANDLER_ERROR);
