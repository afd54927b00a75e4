import type { FastifyReply } from 'fastify';
import { json } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { UserPrincipal } from '../../http/principal.js';
import { reserveTokens, settleReservation } from '../usage/budget.service.js';
import { applyLimitStates, hitLimits, requestLimitSpecs } from '../usage/rate-limits.js';
import { listProviderRows, type ProviderRow } from './providers.repo.js';
import { providerKey } from './providers.service.js';
import { countMessageTokens, countTokens } from './tokens.js';

/** The fields Gatehouse reads; everything else in the body goes to the provider as sent. */
export interface ChatRequest {
  model: string;
  messages: { role?: unknown; content?: unknown; name?: unknown }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  stream?: boolean;
  [field: string]: unknown;
}

/** Per attempt, before the first byte; a provider that takes longer is skipped for the next. */
const ATTEMPT_TIMEOUT_MS = 60_000;

/** OpenAI's x-ratelimit-* headers (requests: the plan's LLM calls per hour; tokens: the budget). */
const OPENAI_LIMIT_HEADERS = {
  limit: 'x-ratelimit-limit-requests',
  remaining: 'x-ratelimit-remaining-requests',
  reset: 'x-ratelimit-reset-requests',
};

function invalid(field: string, message: string): AppError {
  return new AppError('validation_failed', `${field} ${message}`, {
    details: { fields: [{ field, in: 'body', message }] },
  });
}

/** The enabled providers offering `model`, highest priority first. */
async function targetsFor(deps: Deps, tenantId: string, model: string): Promise<ProviderRow[]> {
  const rows = await listProviderRows(deps.db.kysely, tenantId);
  return rows
    .filter((row) => row.disabled_at === null && json.read<string[]>(row.models, []).includes(model))
    .sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1));
}

/** A provider failure worth trying the next provider for (before any byte reached the client). */
const retryable = (status: number) => status === 429 || status >= 500 || status === 401 || status === 403;

interface UpstreamUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

/**
 * POST /api/llm/v1/chat/completions, non-streaming: the plan's LLM limit, the model and max_tokens
 * checks, a reservation of the worst case from the token budget, then the providers offering the
 * model in priority order until one answers; the reservation is settled with the provider's usage
 * (or the tokenizer's count when it reports none). The provider's JSON goes back as it came.
 */
export async function chatCompletion(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<string> {
  if (body.stream === true)
    throw invalid('stream', 'is not available yet: streaming lands with the next part of the gateway');
  const { limits } = principal;
  const requested = body.max_completion_tokens ?? body.max_tokens;
  if (limits.maxTokensPerRequest !== null && requested !== undefined && requested > limits.maxTokensPerRequest) {
    throw invalid('max_tokens', `must be at most ${limits.maxTokensPerRequest} on the ${limits.plan} plan`);
  }
  const targets = await targetsFor(deps, principal.tenantId, body.model);
  if (targets.length === 0) {
    throw new AppError('not_found', `The model "${body.model}" is not offered here; GET /api/llm/v1/models lists them`);
  }
  applyLimitStates(
    deps,
    reply,
    await hitLimits(deps, requestLimitSpecs(principal, 'llm_requests')),
    OPENAI_LIMIT_HEADERS,
  );

  // The worst case: the prompt plus every completion token allowed. Without a limit from the client
  // or the plan, the prompt alone is held and the real use charged at settlement.
  const maxTokens = requested ?? limits.maxTokensPerRequest ?? undefined;
  const promptEstimate = await countMessageTokens(body.messages);
  const { reservation, budget } = await reserveTokens(deps, principal, promptEstimate + (maxTokens ?? 0));
  if (budget.limit !== null) {
    reply.header('x-ratelimit-limit-tokens', String(budget.limit));
    reply.header('x-ratelimit-remaining-tokens', String(budget.remaining));
  }

  const payload = JSON.stringify(
    maxTokens === undefined || requested !== undefined ? body : { ...body, max_tokens: maxTokens },
  );
  const started = Date.now();
  let lastFailure = 'no provider answered';
  for (const provider of targets) {
    const key = providerKey(deps, provider);
    let response: Response;
    try {
      response = await fetch(`${provider.base_url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: payload,
        redirect: 'error',
        signal: AbortSignal.any([clientGone, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]),
      });
    } catch (error) {
      if (clientGone.aborted) {
        await settleReservation(deps, principal, reservation.id, {
          kind: 'llm',
          model: body.model,
          provider: provider.name,
          promptTokens: 0,
          completionTokens: 0,
          latencyMs: Date.now() - started,
          status: 'cancelled',
        });
        throw new AppError('invalid_request', 'The client closed the request');
      }
      lastFailure = `${provider.name}: ${(error as Error).name === 'TimeoutError' ? 'timed out' : 'unreachable'}`;
      deps.log.warn({ provider: provider.name, err: error }, 'LLM provider failed; trying the next');
      continue;
    }
    const text = await response.text();
    if (retryable(response.status)) {
      lastFailure = `${provider.name}: HTTP ${response.status}`;
      deps.log.warn({ provider: provider.name, status: response.status }, 'LLM provider failed; trying the next');
      continue;
    }
    const ok = response.ok;
    let usage: UpstreamUsage | undefined;
    let completionText = '';
    if (ok) {
      try {
        const parsed = JSON.parse(text) as { usage?: UpstreamUsage; choices?: { message?: { content?: unknown } }[] };
        usage = parsed.usage;
        completionText = (parsed.choices ?? [])
          .map((c) => (typeof c.message?.content === 'string' ? c.message.content : ''))
          .join('');
      } catch {
        lastFailure = `${provider.name}: answered with invalid JSON`;
        continue;
      }
    }
    const promptTokens = ok ? (usage?.prompt_tokens ?? promptEstimate) : 0;
    const completionTokens = ok ? (usage?.completion_tokens ?? (await countTokens(completionText))) : 0;
    const after = await settleReservation(deps, principal, reservation.id, {
      kind: 'llm',
      model: body.model,
      provider: provider.name,
      promptTokens,
      completionTokens,
      latencyMs: Date.now() - started,
      status: ok ? 'ok' : 'rejected',
    });
    if (after.limit !== null) reply.header('x-ratelimit-remaining-tokens', String(after.remaining));
    reply.header('x-gatehouse-provider', provider.name);
    // The provider's own answer, byte for byte (an error of the request itself, 4xx, included),
    // with the shared key scrubbed should a provider ever echo it.
    reply.status(response.status).type('application/json');
    return text.replaceAll(key, '[redacted]');
  }
  // Recorded as a failed call (nothing charged), so failures show in usage and by provider.
  await settleReservation(deps, principal, reservation.id, {
    kind: 'llm',
    model: body.model,
    promptTokens: 0,
    completionTokens: 0,
    latencyMs: Date.now() - started,
    status: 'upstream_error',
  });
  throw new AppError('upstream_unavailable', `No provider could answer for ${body.model} (${lastFailure})`);
}
