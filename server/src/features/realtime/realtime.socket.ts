import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import type { App } from '../../http/schemas.js';
import { CLOSE, errorMessage, FeedConnection, outMessage } from './connection.js';
import { guarded } from './guard.js';
import type { Hub } from './hub.js';
import { LIMITS, parseMessage } from './protocol.js';
import { handleRequest } from './realtime.llm.js';

/** The subprotocol a client offers (and the server picks) next to its `gatehouse.bearer.<token>`. */
export const SUBPROTOCOL = 'gatehouse.v1';
const BEARER_PROTOCOL = 'gatehouse.bearer.';

/** Sockets that may wait for their auth message at once; more are refused (503) until some authenticate. */
const MAX_UNAUTHENTICATED = 2_000;

/**
 * GET /api/realtime as a WebSocket (seed 004's message protocol; docs/realtime.md). The upgrade is
 * taken before Fastify's routing (which has no WebSocket support of its own), and `ws` is loaded
 * with the first socket: an instance nobody connects to does not carry it (ADR 0010).
 *
 * Every listener, timer and promise here runs through `guarded`: a failure closes the one socket
 * it concerns (1011) and is logged, never reaching the process.
 */
export function serveWebSockets(app: App, deps: Deps, hub: Hub): void {
  const { log } = deps;
  const alive = new WeakMap<WebSocket, boolean>();
  const sockets = new Set<WebSocket>();
  // Heartbeat: a ping per interval; a socket that did not answer the last one is dropped.
  const heartbeat = setInterval(
    guarded(log, 'heartbeat', () => {
      for (const socket of sockets) {
        guarded(log, 'heartbeat ping', () => {
          if (alive.get(socket) === false) return socket.terminate();
          alive.set(socket, false);
          socket.ping();
        })();
      }
    }),
    deps.config.realtime.heartbeatMs,
  );
  heartbeat.unref();
  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    hub.close();
    for (const socket of sockets) socket.terminate();
    (await server)?.close();
  });

  let server: Promise<WebSocketServer> | undefined;
  const webSockets = () => {
    server ??= import('ws').then(
      ({ WebSocketServer }) =>
        new WebSocketServer({
          noServer: true,
          // The bound after authentication; before it, each socket's is lowered (allowMessages).
          maxPayload: LIMITS.authenticatedBytes,
          perMessageDeflate: false,
          // The token a browser sends as a subprotocol is never echoed: the server picks gatehouse.v1.
          handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
        }),
    );
    return server;
  };
  let unauthenticated = 0;
  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
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
    return webSockets().then((wss) =>
      wss.handleUpgrade(request, socket, head, (ws) => accept(ws, request, url.searchParams.get('offset'))),
    );
  };
  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) =>
    guarded(log, 'upgrade', upgrade, () => socket.destroy())(request, socket, head),
  );

  const accept = (socket: WebSocket, request: IncomingMessage, queryOffset: string | null) => {
    sockets.add(socket);
    alive.set(socket, true);
    const connection = new FeedConnection(deps, hub, {
      send: (_message, text) => socket.send(text),
      close: (code, reason) => socket.close(code, reason),
      buffered: () => socket.bufferedAmount,
    });
    const closed = connection.guard('close', () => {
      sockets.delete(socket);
      connection.ended();
    });
    socket.on('close', closed);
    socket.on(
      'pong',
      connection.guard('pong', () => alive.set(socket, true)),
    );
    // `ws` closes the socket itself on a protocol error (1002), a message over its bound (1009) or
    // invalid UTF-8 (1007), then reports it here; without a listener the error would be thrown.
    socket.on(
      'error',
      connection.guard('socket error', (error: Error) => log.debug({ err: error }, 'realtime: socket error')),
    );
    // Until it authenticates, a socket takes small messages only (LIMITS.unauthenticatedBytes).
    allowMessages(socket, LIMITS.unauthenticatedBytes);

    // Sockets not yet authenticated are counted: each may sit for REALTIME_AUTH_TIMEOUT.
    unauthenticated++;
    let counted = true;
    const settled = () => {
      if (counted) unauthenticated--;
      counted = false;
    };
    socket.once('close', settled);
    let opening: Promise<boolean> | null = null;
    let authenticated = false;
    const open = (token: string, offset: string | undefined) => {
      opening = connection.open(token, offset).then(
        (ok) => {
          settled();
          if (ok) {
            authenticated = true;
            allowMessages(socket, LIMITS.authenticatedBytes);
          }
          return ok;
        },
        (error: unknown) => {
          settled();
          log.error({ err: error }, 'realtime: opening a connection failed');
          connection.fail(error);
          return false;
        },
      );
    };
    const offered = String(request.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((protocol) => protocol.trim());
    const bearer = offered.find((protocol) => protocol.startsWith(BEARER_PROTOCOL));
    if (bearer) {
      open(bearer.slice(BEARER_PROTOCOL.length), queryOffset ?? undefined);
    } else {
      setTimeout(
        connection.guard('auth timeout', () => {
          if (opening || connection.closed) return;
          connection.send(errorMessage(new AppError('unauthorized', 'No auth message arrived in time')));
          connection.close(CLOSE.authTimeout, 'auth_timeout');
        }),
        deps.config.realtime.authTimeoutMs,
      ).unref();
    }

    /** A message that cannot be served: an `error` naming the problem; before authentication, the close. */
    const refuse = (error: AppError, options: { correlationId?: string; tooBig?: boolean } = {}) => {
      connection.send(errorMessage(error, options.correlationId));
      if (options.tooBig) connection.close(CLOSE.messageTooBig, 'message_too_big');
      else if (!authenticated) connection.close(CLOSE.unauthorized, 'unauthorized');
    };

    const receive = async (raw: RawData, isBinary: boolean) => {
      if (connection.closed) return;
      const parsed = parseMessage(raw, isBinary, authenticated);
      if (!parsed.ok) return refuse(parsed.error, parsed);
      const { type, data, correlationId } = parsed.message;
      if (type === 'ping') return pong(data, correlationId);
      if (type === 'auth') return authenticate(data, correlationId);
      if (!opening) {
        return refuse(new AppError('unauthorized', 'Send {"type":"auth","data":{"token"}} first'), { correlationId });
      }
      if (!(await opening)) return;
      return handleRequest(deps, connection, data, correlationId);
    };

    /** Before authentication a pong carries no data; after it, the ping's data if it is small. */
    const pong = (data: unknown, correlationId: string | undefined) => {
      if (!authenticated || data === undefined) return connection.send(outMessage('pong', null, correlationId));
      // Safe to serialise: the message is within the size and depth bounds.
      if (Buffer.byteLength(JSON.stringify(data)) > LIMITS.echoBytes) {
        return refuse(invalidField('data', `is echoed only up to ${LIMITS.echoBytes} bytes as JSON`), {
          correlationId,
        });
      }
      connection.send(outMessage('pong', data, correlationId));
    };

    const authenticate = async (data: unknown, correlationId: string | undefined) => {
      const fields = typeof data === 'object' && data !== null && !Array.isArray(data) ? data : {};
      const { token, offset } = fields as { token?: unknown; offset?: unknown };
      if (typeof token !== 'string' || token.length === 0 || token.length > LIMITS.tokenLength) {
        return refuse(
          invalidField(
            'data.token',
            `is required: an access token or API key (at most ${LIMITS.tokenLength} characters)`,
          ),
          { correlationId },
        );
      }
      if (offset !== undefined && typeof offset !== 'string') {
        return refuse(invalidField('data.offset', 'must be an event id (evt_…) received from this feed'), {
          correlationId,
        });
      }
      if (!opening) return open(token, offset ?? queryOffset ?? undefined);
      if (await opening) await connection.reauthenticate(token);
    };

    socket.on('message', connection.guard('message', receive));
  };
}

/**
 * Sets the largest message `socket` takes from now on. `ws` has one `maxPayload` per server and
 * none per socket, but its receiver reads the bound from `_maxPayload` on every frame header (ws
 * 8, lib/receiver.js), so lowering it there refuses an oversized message at its first frame (1009)
 * instead of buffering it up to the server's bound first. Should a later `ws` drop that field,
 * `parseMessage` still refuses the message by its size; only the buffering bound is lost.
 */
function allowMessages(socket: WebSocket, bytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}
