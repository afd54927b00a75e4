import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import { userOf } from '../../http/authenticate.js';
import { type App, errors } from '../../http/schemas.js';
import { actingTenant } from '../../http/tenant.js';
import { reachOf, requireManageableUser } from '../accounts/accounts.admin.service.js';
import type { TaskUpdate } from './bus.js';
import { FeedConnection, type OutMessage } from './connection.js';
import { guarded } from './guard.js';
import { Hub } from './hub.js';
import { depthExceeds } from './protocol.js';
import { serveWebSockets } from './realtime.socket.js';

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

/** Task data is carried between instances in one NOTIFY on PostgreSQL; this keeps it well inside. */
const MAX_TASK_BYTES = 4_096;
/** How deep `task.data` may nest objects and arrays (checked before it is serialised). */
const MAX_TASK_DEPTH = 16;

/**
 * The realtime feed (DESIGN capability 7): `GET /api/realtime` (WebSocket, seed 004's message
 * protocol), `GET /api/events` (the same feed as server-sent events), and
 * `POST /api/admin/realtime/tasks` for an app's backend to report a long task's progress to its user.
 */
export function registerRealtimeRoutes(app: App, deps: Deps): void {
  const hub = new Hub(deps);
  serveWebSockets(app, deps, hub);

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
      const connection = new FeedConnection(deps, hub, sseTransport(reply, deps.log));
      reply.sse.onClose(connection.guard('stream close', () => connection.ended()));
      const token = String(request.headers.authorization)
        .replace(/^Bearer +/i, '')
        .trim();
      try {
        await connection.open(token, reply.sse.lastEventId ?? request.query.offset);
      } catch (error) {
        // The stream has started: a failure ends it with an error event (1011), not a 500.
        deps.log.error({ err: error }, 'realtime: opening an event stream failed');
        connection.fail(error);
      }
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
      // Before JSON.stringify, which throws on a value a few thousand levels deep.
      if (depthExceeds(task.data, MAX_TASK_DEPTH)) {
        throw invalidField('task.data', `must nest objects and arrays at most ${MAX_TASK_DEPTH} deep`);
      }
      if (Buffer.byteLength(JSON.stringify(task)) > MAX_TASK_BYTES) {
        throw invalidField('task', `must be at most ${MAX_TASK_BYTES} bytes as JSON`);
      }
      // Not to the feed of an account above the caller's reach (an operator's; ADR 0013).
      if (userId !== undefined) await requireManageableUser(deps, tenant.id, userId, reachOf(request.principal));
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

/** SSE: each message an event named by its type; feed events carry their id (Last-Event-ID resumes from it). */
function sseTransport(reply: FastifyReply, log: Logger) {
  const eventId = (message: OutMessage) => {
    const data = message.data as { kind?: string; event?: { id?: string } } | undefined;
    return message.type === 'update' && data?.kind === 'event' ? data.event?.id : undefined;
  };
  return {
    send(message: OutMessage, text: string) {
      reply.sse.send({ id: eventId(message), event: message.type, data: text }).catch(() => {});
    },
    close(code: number, reason: string) {
      const end = guarded(log, 'stream end', () => reply.sse.close());
      reply.sse.send({ event: 'close', data: JSON.stringify({ code, reason }) }).then(end, end);
    },
    buffered: () => reply.raw.writableLength,
  };
}
