import { GatehouseError } from './errors.js';

/** The WebSocket API the feed needs: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface RealtimeOptions {
  /** Node 20 has no global WebSocket: pass `ws`'s (`import WebSocket from 'ws'`). */
  WebSocket?: WebSocketConstructor;
  /** Resume from here (the id of the last event an earlier connection received). */
  offset?: string;
  /** Reconnect backoff: first delay and cap (ms), with full jitter. */
  reconnect?: { baseDelayMs?: number; maxDelayMs?: number };
}

export interface FeedEvent {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

interface Listeners {
  /** After each (re)connection: `recovered` says whether missed events were replayed. */
  open: (info: { recovered: boolean; offset: string }) => void;
  event: (event: FeedEvent) => void;
  usage: (usage: Record<string, unknown>) => void;
  task: (task: { taskId: string; status: string; progress?: number; data?: unknown; error?: string }) => void;
  error: (error: GatehouseError) => void;
  /** The feed stopped for good: signed out, revoked, or `close()`. */
  close: (info: { code: number; reason: string }) => void;
}

/** Close reasons after which reconnecting cannot help: the credential is gone. */
const FINAL = new Set([
  'session_revoked',
  'api_key_revoked',
  'credential_revoked',
  'user_deleted',
  'user_mismatch',
  'forbidden',
]);

/**
 * The realtime feed (GET /api/realtime): authenticates with its first message, renews its token
 * when the server asks (`refresh_required`), reconnects with backoff and resumes from the last
 * event it received (repeats are dropped by id), and runs LLM requests correlated by id.
 */
export class RealtimeConnection {
  offset: string | null;
  private socket: WebSocketLike | null = null;
  private closedByUser = false;
  private attempt = 0;
  private readonly seen = new Set<string>();
  private readonly listeners: { [K in keyof Listeners]: Set<Listeners[K]> } = {
    open: new Set(),
    event: new Set(),
    usage: new Set(),
    task: new Set(),
    error: new Set(),
    close: new Set(),
  };
  private readonly pending = new Map<
    string,
    {
      onDelta?: (delta: string) => void;
      resolve: (value: Record<string, unknown>) => void;
      reject: (error: Error) => void;
    }
  >();
  private nextId = 0;
  private readonly WebSocketImpl: WebSocketConstructor;

  constructor(
    private readonly baseUrl: string,
    private readonly token: () => Promise<string>,
    private readonly refresh: () => Promise<{ accessToken: string }>,
    private readonly options: RealtimeOptions,
  ) {
    this.offset = options.offset ?? null;
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Impl) throw new Error('No WebSocket here: pass { WebSocket } (on Node 20: import WebSocket from "ws")');
    this.WebSocketImpl = Impl;
    void this.connect();
  }

  on<K extends keyof Listeners>(kind: K, listener: Listeners[K]): () => void {
    this.listeners[kind].add(listener);
    return () => this.listeners[kind].delete(listener);
  }

  /** Runs an LLM completion over the socket: `onDelta` gets the text as it arrives; resolves with `complete`'s data. */
  request(
    data: { model: string; prompt?: string; messages?: unknown[]; max_tokens?: number },
    options: { onDelta?: (delta: string) => void } = {},
  ): Promise<Record<string, unknown>> {
    const correlationId = `r${++this.nextId}`;
    return new Promise((resolve, reject) => {
      if (this.socket?.readyState !== 1) {
        reject(new GatehouseError('The realtime feed is not connected', 'not_connected', 0));
        return;
      }
      this.pending.set(correlationId, { onDelta: options.onDelta, resolve, reject });
      this.send({ type: 'request', correlationId, data });
    });
  }

  close(): void {
    this.closedByUser = true;
    this.socket?.close(1000, 'client_closed');
  }

  private emit<K extends keyof Listeners>(kind: K, ...args: Parameters<Listeners[K]>): void {
    for (const listener of this.listeners[kind]) (listener as (...a: Parameters<Listeners[K]>) => void)(...args);
  }

  private send(message: Record<string, unknown>): void {
    this.socket?.send(JSON.stringify({ timestamp: Date.now(), ...message }));
  }

  private async connect(): Promise<void> {
    let token: string;
    try {
      token = await this.token();
    } catch (error) {
      this.finish(4001, 'unauthorized', error as Error);
      return;
    }
    if (this.closedByUser) return;
    const url = `${this.baseUrl.replace(/^http/, 'ws')}/api/realtime`;
    const socket = new this.WebSocketImpl(url, ['gatehouse.v1']);
    this.socket = socket;
    socket.onopen = () => this.send({ type: 'auth', data: { token, ...(this.offset && { offset: this.offset }) } });
    socket.onmessage = (event) => this.receive(String(event.data));
    socket.onerror = () => {};
    socket.onclose = ({ code, reason }) => {
      for (const { reject } of this.pending.values())
        reject(new GatehouseError('The realtime feed closed', reason || 'closed', 0));
      this.pending.clear();
      if (this.closedByUser) return this.finish(code, reason);
      if (FINAL.has(reason)) return this.finish(code, reason);
      const { baseDelayMs = 500, maxDelayMs = 15_000 } = this.options.reconnect ?? {};
      const delay = Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** this.attempt++);
      const again = () => setTimeout(() => void this.connect(), delay);
      // The token was refused or ran out: come back with a fresh one, or stop if there is none.
      if (reason === 'invalid_token' || reason === 'token_expired') {
        this.refresh().then(again, (error: Error) => this.finish(code, reason, error));
        return;
      }
      // A dropped network, a restarting server: come back and resume.
      again();
    };
  }

  private finish(code: number, reason: string, error?: Error): void {
    if (error)
      this.emit('error', error instanceof GatehouseError ? error : new GatehouseError(error.message, reason, 0));
    this.emit('close', { code, reason });
  }

  private receive(text: string): void {
    const message = JSON.parse(text) as { type: string; data: Record<string, unknown>; correlationId?: string };
    const { type, data, correlationId } = message;
    const pending = correlationId ? this.pending.get(correlationId) : undefined;
    if (type === 'auth' && data.status === 'ok' && typeof data.offset === 'string') {
      this.attempt = 0;
      if (this.offset === null || data.recovered === false) this.offset = data.offset;
      this.emit('open', { recovered: data.recovered === true, offset: this.offset });
    } else if (type === 'auth' && data.status === 'refresh_required') {
      this.refresh().then(
        ({ accessToken }) => this.send({ type: 'auth', data: { token: accessToken } }),
        (error: Error) => this.emit('error', new GatehouseError(error.message, 'refresh_failed', 401)),
      );
    } else if (type === 'update' && pending) {
      if (typeof data.delta === 'string') pending.onDelta?.(data.delta);
    } else if (type === 'complete' && pending && correlationId) {
      this.pending.delete(correlationId);
      pending.resolve(data);
    } else if (type === 'error') {
      const error = new GatehouseError(String(data.message), String(data.code), 0, null, data.details);
      if (pending && correlationId) {
        this.pending.delete(correlationId);
        pending.reject(error);
      } else this.emit('error', error);
    } else if (type === 'update' && data.kind === 'event') {
      const event = data.event as FeedEvent;
      if (this.seen.has(event.id)) return; // a resume may repeat what the last connection got
      this.seen.add(event.id);
      if (this.seen.size > 1_000) this.seen.delete(this.seen.values().next().value as string);
      if (this.offset === null || event.id > this.offset) this.offset = event.id;
      this.emit('event', event);
    } else if (type === 'update' && data.kind === 'usage') {
      this.emit('usage', data.usage as Record<string, unknown>);
    } else if (type === 'update' && data.kind === 'task') {
      this.emit('task', data.task as Parameters<Listeners['task']>[0]);
    }
  }
}
