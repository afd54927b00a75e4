import type { Server, ServerResponse } from 'node:http';
import { Counter } from 'prom-client';
import type { GatehouseApp } from './app.js';
import { closeDeps, type Deps } from './deps.js';
import { flushUsage } from './features/usage/usage.service.js';

// How a serving process ends (docs/operations.md, "Shutdown" and "Crashes"): on SIGTERM it drains
// and exits 0 with everything written; on a programming error it does the same and exits 1.

/** After the drain deadline: how long cut LLM calls get to settle their charges before the last flush. */
const SETTLE_MS = 2_000;

/** The responses being written now, for the drain deadline to find the streams among them. */
export function trackResponses(server: Server): Set<ServerResponse> {
  const open = new Set<ServerResponse>();
  server.on('request', (_request, response: ServerResponse) => {
    open.add(response);
    response.once('close', () => open.delete(response));
  });
  return open;
}

export interface ShutdownOptions {
  /** How long requests and streams in flight may take (SHUTDOWN_TIMEOUT). */
  timeoutMs: number;
  responses: Set<ServerResponse>;
  /** Closed after the app, before the database (the management port). */
  alsoClose?: () => Promise<void>;
}

/**
 * Stops accepting connections, closes idle keep-alive ones at once and each busy one as soon as
 * its response is done, lets requests in flight finish for `timeoutMs`, then ends the streams
 * still running with an SSE error event and cuts what is left. Then the app's onClose hooks run
 * (webhook worker stopped, last-used times and usage written, leased budget given back), the LLM
 * calls cut at the deadline settle and are written by one more flush, and the database closes.
 * Resolves true when every step succeeded.
 */
export async function closeGracefully(app: GatehouseApp, deps: Deps, options: ShutdownOptions): Promise<boolean> {
  const { log } = deps;
  const server = app.server;
  let clean = true;
  const failed = (what: string) => (error: unknown) => {
    clean = false;
    log.error({ err: error }, `shutdown: ${what} failed`);
  };

  // server.close() closes the connections idle now; a keep-alive connection busy now becomes idle
  // when its response ends, and would otherwise be held open until its keep-alive timeout.
  const reaper = setInterval(() => server.closeIdleConnections(), 100);
  const deadline = setTimeout(() => {
    if (options.responses.size > 0) {
      log.warn({ requests: options.responses.size }, 'shutdown: cutting what is still in flight');
    }
    // Streams first, each once its error event is written; then every connection left.
    void endStreams(options.responses).then(() => server.closeAllConnections());
  }, options.timeoutMs);
  try {
    await app.close().catch(failed('closing the app'));
  } finally {
    clearInterval(reaper);
    clearTimeout(deadline);
  }
  // Calls cut at the deadline settle after their connection closed, so after the app's own final flush.
  await callsSettled(deps);
  await flushUsage(deps, { final: true }).catch(failed('the last usage flush'));
  if (options.alsoClose) await options.alsoClose().catch(failed('closing the management port'));
  await closeDeps(deps).catch(failed('closing the database and clients'));
  return clean;
}

/** Waits (at most SETTLE_MS) until no LLM call holds budget on this instance (ADR 0011). */
async function callsSettled(deps: Deps): Promise<void> {
  const busy = () => [...deps.budgetLeases.leases.values()].some((lease) => lease.held > 0 || lease.growing > 0);
  const until = Date.now() + SETTLE_MS;
  while (busy() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 25));
}

/**
 * Ends every server-sent-event stream still open with an error event in the OpenAI shape the LLM
 * gateway uses for a stream that breaks off (never a clean finish, DESIGN §4), and cuts it; cuts
 * the other responses still open. Each stream writes whole events, so this one never lands inside
 * another. Resolves once the streams' events are written (or a moment later, for a client that
 * does not read).
 */
function endStreams(responses: Set<ServerResponse>): Promise<void> {
  const error = {
    message: 'Gatehouse is shutting down; the answer is incomplete. Retry the request.',
    type: 'server_error',
    code: 'server_shutting_down',
  };
  const written: Promise<void>[] = [];
  for (const response of responses) {
    const stream =
      response.headersSent &&
      !response.writableEnded &&
      String(response.getHeader('content-type') ?? '').startsWith('text/event-stream');
    if (!stream) {
      response.destroy();
      continue;
    }
    written.push(
      new Promise<void>((resolve) => {
        // destroy, not end: the stream's own writes that follow are dropped, never an 'error' event.
        const cut = () => {
          clearTimeout(late);
          response.destroy();
          resolve();
        };
        const late = setTimeout(cut, 1_000);
        response.write(`data: ${JSON.stringify({ error })}\n\n`, cut);
      }),
    );
  }
  return Promise.all(written).then(() => undefined);
}

export interface ProcessPolicy {
  /** Stops listening for process events (tests). */
  remove(): void;
}

/**
 * What a programming error does to a process that serves every tenant:
 * - an unhandled promise rejection is logged and counted (`gatehouse_unhandled_rejections_total`)
 *   and the process goes on: one request's forgotten promise must not end everyone's requests;
 * - an uncaught exception may have left any state half-changed, so it is logged as fatal and
 *   the process shuts down gracefully (requests in flight finish, usage is written) and exits 1,
 *   for the supervisor to start a clean one (Node's own guidance for 'uncaughtException').
 */
export function installProcessPolicy(deps: Deps, onFatal: (error: unknown) => void): ProcessPolicy {
  const rejections = new Counter({
    name: 'gatehouse_unhandled_rejections_total',
    help: 'Promise rejections nobody handled (each logged as an error; the process keeps serving)',
    registers: [deps.metrics],
  });
  const onRejection = (reason: unknown) => {
    rejections.inc();
    deps.log.error({ err: reason }, 'unhandled promise rejection (the process keeps serving)');
  };
  let fatal = false;
  const onException = (error: unknown) => {
    deps.log.fatal({ err: error }, 'uncaught exception: shutting down');
    if (fatal) return;
    fatal = true;
    onFatal(error);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    remove() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}
