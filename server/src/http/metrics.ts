import type { FastifyInstance } from 'fastify';
import { Histogram } from 'prom-client';
import type { Deps } from '../deps.js';

/**
 * Request duration by route pattern and status (never by raw URL: ids would explode the series),
 * and the access log: one line per request at info.
 */
export function registerRequestMetrics(app: FastifyInstance, deps: Deps): void {
  const duration = new Histogram({
    name: 'gatehouse_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [deps.metrics],
  });
  const accessLog = deps.log.isLevelEnabled('info');
  app.addHook('onResponse', (request, reply, done) => {
    const seconds = reply.elapsedTime / 1000;
    duration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      seconds,
    );
    if (accessLog) {
      request.log.info(
        { req: request, status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        'request completed',
      );
    }
    done();
  });
}
