export { shortHostname, StatsdClient, type StatsdTarget } from './statsd-client.js';
export { statsdMiddleware } from './statsd-middleware.js';
export { statsdRecorder } from './statsd-recorder.js';
