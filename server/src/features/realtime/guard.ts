import type { Logger } from 'pino';

/**
 * Wraps a listener, hook or timer callback of the feed so that nothing it throws, and no promise
 * it returns that rejects, reaches the process: an uncaught exception or unhandled rejection stops
 * Node, for every tenant (DESIGN, security rules: no listener, hook or timer with an uncaught error
 * path). The error is logged and handed to `fail`, which closes the one socket or stream it
 * concerns; a `fail` that throws in turn is logged too.
 */
export function guarded<A extends unknown[]>(
  log: Logger,
  what: string,
  fn: (...args: A) => unknown,
  fail?: (error: unknown) => void,
): (...args: A) => void {
  const failed = (error: unknown) => {
    log.error({ err: error }, `realtime: ${what} failed`);
    if (!fail) return;
    try {
      fail(error);
    } catch (failure) {
      log.error({ err: failure }, `realtime: ${what}: closing after the failure failed too`);
    }
  };
  return (...args: A) => {
    try {
      const result = fn(...args);
      if (result instanceof Promise) result.catch(failed);
    } catch (error) {
      failed(error);
    }
  };
}

/** Runs `fn` now, guarded as `guarded` describes (for a promise started and not awaited). */
export function runGuarded(log: Logger, what: string, fn: () => unknown, fail?: (error: unknown) => void): void {
  guarded(log, what, fn, fail)();
}
