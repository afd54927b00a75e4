import WebSocket from 'ws';

/** A message of the realtime feed, as the server sends it. */
export interface FeedMessage {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever shape each message has.
  data: any;
  timestamp: number;
  correlationId?: string;
}

/** A real `ws` client of GET /api/realtime that keeps every message and the close frame. */
export interface FeedClient {
  socket: WebSocket;
  messages: FeedMessage[];
  /** Resolves with the first message (from the start) that matches and was not taken before. */
  next(match: (message: FeedMessage) => boolean, what?: string, timeoutMs?: number): Promise<FeedMessage>;
  send(message: Record<string, unknown>): void;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export async function connectFeed(
  baseUrl: string,
  options: { protocols?: string[]; offset?: string } = {},
): Promise<FeedClient> {
  const url = new URL('/api/realtime', baseUrl.replace(/^http/, 'ws'));
  if (options.offset) url.searchParams.set('offset', options.offset);
  const socket = new WebSocket(url, options.protocols ?? []);
  const messages: FeedMessage[] = [];
  const taken = new Set<FeedMessage>();
  const waiters = new Set<() => void>();
  socket.on('message', (raw) => {
    messages.push(JSON.parse(String(raw)));
    for (const wake of waiters) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => {
      resolve({ code, reason: String(reason) });
      for (const wake of waiters) wake();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  // After the handshake a socket error (a reset, a frame the server refused) ends in 'close'; an
  // 'error' with no listener would be thrown in the test process instead.
  socket.on('error', () => {});
  return {
    socket,
    messages,
    closed,
    next(match, what = 'a matching message', timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const look = () => {
          const found = messages.find((message) => !taken.has(message) && match(message));
          if (!found) {
            if (socket.readyState === WebSocket.CLOSED) finish(new Error(`socket closed before ${what}`));
            return;
          }
          taken.add(found);
          finish(undefined, found);
        };
        const timer = setTimeout(
          () => finish(new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(messages)}`)),
          timeoutMs,
        );
        const finish = (error?: Error, message?: FeedMessage) => {
          clearTimeout(timer);
          waiters.delete(look);
          if (error) reject(error);
          else resolve(message as FeedMessage);
        };
        waiters.add(look);
        look();
      });
    },
    send: (message) => socket.send(JSON.stringify({ timestamp: Date.now(), ...message })),
    close: () => socket.close(),
  };
}

/** The feed's event messages of one type. */
export const eventOf =
  (type: string) =>
  (message: FeedMessage): boolean =>
    message.type === 'update' && message.data?.kind === 'event' && message.data.event.type === type;
