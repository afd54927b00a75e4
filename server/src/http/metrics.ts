import type { FastifyInstance } from 'fastify';
import { Histogram } from 'prom-client';
import type { Deps } from '../deps.js';

/** Request duration by route pattern and status (never by raw URL: ids would explode the series). */
export function registerRequestMetrics(app: FastifyInstance, deps: Deps): void {
  const duration = new Histogram({
    name: 'gatehouse_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [deps.metrics],
  });
  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
}
