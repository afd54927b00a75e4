/** An error answered by Gatehouse: its stable `code`, HTTP `status`, `requestId` and `details`. */
export class GatehouseError extends Error {
  override readonly name: string = 'GatehouseError';
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
    readonly requestId: string | null = null,
    readonly details: unknown = undefined,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }

  /** The error of a response, from its `{error: {code, message, details, requestId}}` body. */
  static async fromResponse(response: Response, body?: unknown): Promise<GatehouseError> {
    let parsed = body;
    if (parsed === undefined) parsed = await response.json().catch(() => undefined);
    const error = (parsed as { error?: { code?: string; message?: string; details?: unknown; requestId?: string } })
      ?.error;
    const retryAfter = Number(response.headers.get('retry-after'));
    const args = [
      error?.message ?? `HTTP ${response.status}`,
      error?.code ?? 'http_error',
      response.status,
      error?.requestId ?? response.headers.get('x-request-id'),
      error?.details,
      Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null,
    ] as const;
    if (response.status === 401) return new AuthenticationError(...args);
    if (response.status === 429) return new RateLimitError(...args);
    if (response.status === 400 && error?.code === 'validation_failed') return new ValidationError(...args);
    return new GatehouseError(...args);
  }
}

/** 401: no credential, or one that is invalid, expired or revoked (after an automatic refresh failed). */
export class AuthenticationError extends GatehouseError {
  override readonly name = 'AuthenticationError';
}

/** 429: an hourly limit or the token budget; `retryAfterSeconds` says when to try again. */
export class RateLimitError extends GatehouseError {
  override readonly name = 'RateLimitError';
}

/** 400 validation_failed: `fields` names what is wrong. */
export class ValidationError extends GatehouseError {
  override readonly name = 'ValidationError';
  get fields(): { field: string; in: string; message: string }[] {
    return (this.details as { fields?: { field: string; in: string; message: string }[] } | undefined)?.fields ?? [];
  }
}

/** The request never got an answer: the network failed, or it timed out (`code: 'timeout'`). */
export class NetworkError extends GatehouseError {
  override readonly name = 'NetworkError';
}
