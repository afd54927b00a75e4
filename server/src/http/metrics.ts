import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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

/** The management listener (METRICS_PORT). */
export interface ManagementServer {
  url: string;
  close(): Promise<void>;
}

/**
 * METRICS_PORT: a listener of its own for the operator's network (as Keycloak's management port):
 * `/metrics` without a token, and `/healthz` and `/readyz` as the main port answers them, so
 * probes and scrapers need no access to the public port. Nothing else is served there.
 */
export async function startManagementServer(app: FastifyInstance, deps: Deps, port: number): Promise<ManagementServer> {
  const answer = async (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      const text = await deps.metrics.metrics();
      response.writeHead(200, { 'content-type': deps.metrics.contentType }).end(text);
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const probe = await app.inject({ method: 'GET', url: path });
      response.writeHead(probe.statusCode, { 'content-type': 'application/json; charset=utf-8' }).end(probe.body);
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
    response.end(
      JSON.stringify({ error: { code: 'not_found', message: `No route for ${path} on the management port` } }),
    );
  };
  const server = createServer((request, response) => {
    answer(request, response).catch((error) => {
      deps.log.error({ err: error }, 'management port: request failed');
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, deps.config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => deps.log.error({ err: error }, 'management port failed'));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://${deps.config.host.includes(':') ? `[${deps.config.host}]` : deps.config.host}:${bound}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
