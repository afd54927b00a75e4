import { GatehouseError, NetworkError } from './errors.js';

export interface RetryOptions {
  /** Attempts after the first (default 2). */
  retries: number;
  /** First backoff (default 250 ms); doubled each time, with full jitter, capped at `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
/** Answers after which an idempotent request is tried again. */
const RETRIABLE = new Set([429, 502, 503, 504]);
/** Answers meaning the server did not act on the request: any request may be sent again. */
const NOT_PROCESSED = new Set([429, 503]);
/** Never wait longer than this for a Retry-After. */
const MAX_RETRY_AFTER_MS = 30_000;

/**
 * fetch with a timeout per attempt, and retries: idempotent requests on network errors, 429,
 * 502, 503 and 504; any request on 429 and 503 (the server did not act on it). Waits follow
 * Retry-After when the server sends it, else exponential backoff with full jitter.
 */
export function retryingFetch(
  fetchImpl: typeof fetch,
  options: { timeoutMs: number; retry: RetryOptions },
): (request: Request) => Promise<Response> {
  return async (request) => {
    const idempotent = IDEMPOTENT.has(request.method);
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= options.retry.retries;
      const signal = AbortSignal.any([request.signal, AbortSignal.timeout(options.timeoutMs)]);
      let response: Response;
      try {
        response = await fetchImpl(new Request(request.clone(), { signal }));
      } catch (error) {
        if (request.signal.aborted) throw error;
        const timedOut = (error as Error).name === 'TimeoutError';
        if (last || !idempotent) {
          throw new NetworkError(
            timedOut
              ? `${request.method} ${new URL(request.url).pathname} timed out after ${options.timeoutMs} ms`
              : `${request.method} ${new URL(request.url).pathname} failed: ${(error as Error).message}`,
            timedOut ? 'timeout' : 'network_error',
            0,
          );
        }
        await sleep(backoff(attempt, options.retry), request.signal);
        continue;
      }
      const again = idempotent ? RETRIABLE.has(response.status) : NOT_PROCESSED.has(response.status);
      if (!again || last) return response;
      const retryAfter = retryAfterMs(response);
      // A Retry-After beyond what we wait is the caller's to handle (the error carries it).
      if (retryAfter !== null && retryAfter > MAX_RETRY_AFTER_MS) return response;
      await response.body?.cancel();
      await sleep(retryAfter ?? backoff(attempt, options.retry), request.signal);
    }
  };
}

function backoff(attempt: number, retry: RetryOptions): number {
  return Math.random() * Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt);
}

function retryAfterMs(response: Response): number | null {
  const header = response.headers.get('retry-after');
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** Throws the answer's error unless it is a success. */
export async function ensureOk(response: Response, body?: unknown): Promise<void> {
  if (!response.ok) throw await GatehouseError.fromResponse(response, body);
}
