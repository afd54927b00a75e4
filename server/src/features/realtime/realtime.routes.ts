import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Deps } from '../../deps.js';
import { AppError, invalidField, notFound } from '../../errors.js';
import { userOf } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { findUser } from '../accounts/accounts.repo.js';
import type { TaskUpdate } from './bus.js';
import { CLOSE, errorMessage, FeedConnection, type OutMessage, outMessage } from './connection.js';
import { Hub } from './hub.js';
import { handleRequest } from './realtime.llm.js';

/** The subprotocol a client offers (and the server picks) next to its `gatehouse.bearer.<token>`. */
export const SUBPROTOCOL = 'gatehouse.v1';
const BEARER_PROTOCOL = 'gatehouse.bearer.';

const FeedQuery = Type.Object({
  offset: Type.Optional(
    Type.String({ maxLength: 64, description: 'The id of the last event received: what came after it is replayed' }),
  ),
});

const Task = Type.Object(
  {
    taskId: Type.String({ minLength: 1, maxLength: 128 }),
    status: Type.Union([
      Type.Literal('pending'),
      Type.Literal('processing'),
      Type.Literal('completed'),
      Type.Literal('failed'),
    ]),
    progress: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
    data: Type.Optional(Type.Unknown()),
    error: Type.Optional(Type.String({ maxLength: 2_000 })),
  },
  { additionalProperties: false, description: "Seed 004's TaskUpdate" },
);

/** Sockets that may wait for their auth message at once; more are refused (503) until some authenticate. */
const MAX_UNAUTHENTICATED = 2_000;

/** Task data is carried between instances in one NOTIFY on PostgreSQL; this keeps it well inside. */
const MAX_TASK_BYTES = 4_096;

/**
 * The realtime feed (DESIGN capability 7): `GET /api/realtime` (WebSocket, seed 004's message
 * protocol), `GET /api/events` (the same feed as server-sent events), and
 * `POST /api/admin/realtime/tasks` for an app's backend to report a long task's progress to its user.
 */
export function registerRealtimeRoutes(app: App, deps: Deps): void {
  const hub = new Hub(deps);
  const alive = new WeakMap<WebSocket, boolean>();
  const sockets = new Set<WebSocket>();
  // Heartbeat: a ping per interval; a socket that did not answer the last one is dropped.
  const heartbeat = setInterval(() => {
    for (const socket of sockets) {
      if (alive.get(socket) === false) {
        socket.terminate();
        continue;
      }
      alive.set(socket, false);
      socket.ping();
    }
  }, deps.config.realtime.heartbeatMs);
  heartbeat.unref();
  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    hub.close();
    for (const socket of sockets) socket.terminate();
    (await server)?.close();
  });

  // The upgrade is taken before Fastify's routing (which has no WebSocket support of its own),
  // and `ws` is loaded with the first socket: an instance nobody connects to does not carry it.
  let server: Promise<WebSocketServer> | undefined;
  const webSockets = () => {
    server ??= import('ws').then(
      ({ WebSocketServer }) =>
        new WebSocketServer({
          noServer: true,
          maxPayload: 1_048_576,
          perMessageDeflate: false,
          // The token a browser sends as a subprotocol is never echoed: the server picks gatehouse.v1.
          handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
        }),
    );
    return server;
  };
  let unauthenticated = 0;
  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node takes its own error handling off an upgraded socket: without this a reset would crash.
    socket.on('error', () => socket.destroy());
    const refuse = (status: string) =>
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://gatehouse');
    } catch {
      return refuse('400 Bad Request');
    }
    if (url.pathname !== '/api/realtime') return refuse('404 Not Found');
    if (unauthenticated >= MAX_UNAUTHENTICATED) return refuse('503 Service Unavailable');
    webSockets().then(
      (wss) => wss.handleUpgrade(request, socket, head, (ws) => accept(ws, request, url.searchParams.get('offset'))),
      () => socket.destroy(),
    );
  });

  const accept = (socket: WebSocket, request: IncomingMessage, queryOffset: string | null) => {
    const offsetParam = queryOffset ?? undefined;
    sockets.add(socket);
    alive.set(socket, true);
    const connection = new FeedConnection(deps, hub, {
      send: (_message, text) => socket.send(text),
      close: (code, reason) => socket.close(code, reason),
      buffered: () => socket.bufferedAmount,
    });
    socket.on('pong', () => alive.set(socket, true));
    socket.on('close', () => {
      sockets.delete(socket);
      connection.ended();
    });
    socket.on('error', () => socket.terminate());

    // Sockets not yet authenticated are counted: each may sit for REALTIME_AUTH_TIMEOUT.
    unauthenticated++;
    let counted = true;
    const authenticated = () => {
      if (counted) unauthenticated--;
      counted = false;
    };
    socket.once('close', authenticated);
    let opening: Promise<boolean> | null = null;
    const open = (token: string, offset: string | undefined) => {
      const result = connection.open(token, offset);
      result.then(authenticated, authenticated);
      return result;
    };
    const offered = String(request.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((protocol) => protocol.trim());
    const bearer = offered.find((protocol) => protocol.startsWith(BEARER_PROTOCOL));
    if (bearer) {
      opening = open(bearer.slice(BEARER_PROTOCOL.length), offsetParam);
    } else {
      setTimeout(() => {
        if (opening || connection.closed) return;
        connection.send(errorMessage(new AppError('unauthorized', 'No auth message arrived in time')));
        connection.close(CLOSE.authTimeout, 'auth_timeout');
      }, deps.config.realtime.authTimeoutMs).unref();
    }

    socket.on('message', async (raw, isBinary) => {
      const message = isBinary ? undefined : parse(String(raw));
      if (!message) {
        connection.send(
          errorMessage(
            new AppError('invalid_request', 'Messages are JSON objects: {"type", "data", "correlationId"?}'),
          ),
        );
        if (!opening) connection.close(CLOSE.unauthorized, 'unauthorized');
        return;
      }
      const correlationId = typeof message.correlationId === 'string' ? message.correlationId : undefined;
      if (message.type === 'ping') {
        connection.send(outMessage('pong', message.data ?? null, correlationId));
        return;
      }
      if (message.type === 'auth') {
        const data = message.data as { token?: unknown; offset?: unknown } | undefined;
        if (typeof data?.token !== 'string' || data.token.length === 0) {
          connection.send(errorMessage(invalidField('data.token', 'is required: an access token or API key')));
          return;
        }
        if (!opening) {
          opening = open(data.token, typeof data.offset === 'string' ? data.offset : offsetParam);
        } else if (await opening) {
          await connection.reauthenticate(data.token);
        }
        return;
      }
      if (!opening) {
        connection.send(errorMessage(new AppError('unauthorized', 'Send {"type":"auth","data":{"token"}} first')));
        connection.close(CLOSE.unauthorized, 'unauthorized');
        return;
      }
      if (!(await opening)) return;
      if (message.type === 'request') {
        await handleRequest(deps, connection, message);
        return;
      }
      connection.send(
        errorMessage(
          invalidField('type', 'must be one of auth, request, ping (update and complete come from the server)'),
        ),
      );
    });
  };

  // Without an upgrade, the route says what it is (and is listed in the OpenAPI document).
  app.get(
    '/api/realtime',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['realtime'],
        summary:
          'WebSocket feed (send Upgrade: websocket): authenticate with {"type":"auth","data":{"token"}} first, or with the subprotocol gatehouse.bearer.<token> next to gatehouse.v1; then live events, usage, task progress and LLM requests',
        querystring: FeedQuery,
        response: errors(426),
      },
    },
    async (_request, reply) => {
      reply.header('upgrade', 'websocket');
      throw new AppError('upgrade_required', 'GET /api/realtime is a WebSocket: connect with Upgrade: websocket');
    },
  );

  app.get(
    '/api/events',
    {
      sse: { kind: 'only', serializer: (data: unknown) => (typeof data === 'string' ? data : JSON.stringify(data)) },
      // Counted when the feed opens (as a socket is), not twice.
      config: { auth: ['user'], metered: false },
      schema: {
        tags: ['realtime'],
        summary:
          'The realtime feed as server-sent events (each message as an event named by its type; events carry their id, so Last-Event-ID resumes)',
        querystring: FeedQuery,
        response: errors(401, 403, 429),
      },
    },
    async (request, reply) => {
      userOf(request);
      reply.sse.keepAlive();
      const connection = new FeedConnection(deps, hub, sseTransport(reply));
      reply.sse.onClose(() => connection.ended());
      const token = String(request.headers.authorization)
        .replace(/^Bearer +/i, '')
        .trim();
      await connection.open(token, reply.sse.lastEventId ?? request.query.offset);
    },
  );

  app.post(
    '/api/admin/realtime/tasks',
    {
      config: { auth: ['admin', 'service'] },
      schema: {
        tags: ['realtime'],
        summary:
          "Reports a long task's progress to a user's live connections (or, without user_id, to every user of the tenant); live only, not replayed",
        body: Type.Object(
          {
            user_id: Type.Optional(Type.String({ maxLength: 64 })),
            task: Task,
          },
          { additionalProperties: false },
        ),
        response: {
          202: Type.Object({ user_id: Type.Union([Type.String(), Type.Null()]), task_id: Type.String() }),
          ...errors(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const tenant = await actingTenant(deps, request);
      const { user_id: userId, task } = request.body;
      if (Buffer.byteLength(JSON.stringify(task)) > MAX_TASK_BYTES) {
        throw invalidField('task', `must be at most ${MAX_TASK_BYTES} bytes as JSON`);
      }
      if (userId !== undefined && !(await findUser(deps.db.kysely, tenant.id, userId))) throw notFound('User');
      deps.realtime.publish({
        tenantId: tenant.id,
        userId: userId ?? null,
        item: { kind: 'task', task: task as TaskUpdate },
      });
      reply.status(202);
      return { user_id: userId ?? null, task_id: task.taskId };
    },
  );
}

function parse(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** SSE: each message an event named by its type; feed events carry their id (Last-Event-ID resumes from it). */
function sseTransport(reply: FastifyReply) {
  const eventId = (message: OutMessage) => {
    const data = message.data as { kind?: string; event?: { id?: string } } | undefined;
    return message.type === 'update' && data?.kind === 'event' ? data.event?.id : undefined;
  };
  return {
    send(message: OutMessage, text: string) {
      reply.sse.send({ id: eventId(message), event: message.type, data: text }).catch(() => {});
    },
    close(code: number, reason: string) {
      reply.sse
        .send({ event: 'close', data: JSON.stringify({ code, reason }) })
        .catch(() => {})
        .finally(() => reply.sse.close());
    },
    buffered: () => reply.raw.writableLength,
  };
}
