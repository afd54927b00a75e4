import type { FastifyReply } from 'fastify';
import { json } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import type { UserPrincipal } from '../../http/principal.js';
import { type BudgetView, reserveTokens, settleReservation } from '../usage/budget.service.js';
import { applyLimitStates, hitLimits, requestLimitSpecs } from '../usage/rate-limits.js';
import type { ProviderRow } from './providers.repo.js';
import { enabledProviders, providerKey } from './providers.service.js';
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

/** The enabled providers offering `model`, highest priority first. */
async function targetsFor(deps: Deps, tenantId: string, model: string): Promise<ProviderRow[]> {
  return (await enabledProviders(deps, tenantId)).filter((row) => json.read<string[]>(row.models, []).includes(model));
}

/** A provider failure worth trying the next provider for (before any byte reached the client). */
const retryable = (status: number) => status === 429 || status >= 500 || status === 401 || status === 403;

export interface UpstreamUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

/** The provider that answered (with a status not worth failing over), or why none did. */
type Opened = { provider: ProviderRow; key: string; response: Response } | { failure: string; cancelled: boolean };

/**
 * Sends the request to the providers offering the model, in priority order, until one answers
 * with something other than a connection error, a timeout, 429, 5xx or 401/403 (a provider's
 * own trouble, worth the next provider). Nothing has reached the client yet.
 */
async function openUpstream(
  deps: Deps,
  targets: ProviderRow[],
  payload: string,
  clientGone: AbortSignal,
): Promise<Opened> {
  let failure = 'no provider answered';
  for (const provider of targets) {
    const key = providerKey(deps, provider);
    let response: Response;
    try {
      response = await fetch(`${provider.base_url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: payload,
        redirect: 'error',
        // The timeout covers the wait for the answer's head; a stream then runs as long as it runs.
        signal: AbortSignal.any([clientGone, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]),
      });
    } catch (error) {
      if (clientGone.aborted) return { failure: 'the client went away', cancelled: true };
      failure = `${provider.name}: ${(error as Error).name === 'TimeoutError' ? 'timed out' : 'unreachable'}`;
      deps.log.warn({ provider: provider.name, err: error }, 'LLM provider failed; trying the next');
      continue;
    }
    if (!retryable(response.status)) return { provider, key, response };
    await response.body?.cancel();
    failure = `${provider.name}: HTTP ${response.status}`;
    deps.log.warn({ provider: provider.name, status: response.status }, 'LLM provider failed; trying the next');
  }
  return { failure, cancelled: false };
}

/** What was checked and held before any provider is called. */
interface Admitted {
  targets: ProviderRow[];
  reservationId: string;
  promptEstimate: number;
  payload: string;
}

/**
 * The checks before any provider is called: max_tokens against the plan, the model, the plan's
 * LLM calls per hour, and a reservation of the worst case (the prompt plus every completion
 * token allowed) from the token budget.
 */
export async function admit(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
): Promise<Admitted> {
  const { limits } = principal;
  const requested = body.max_completion_tokens ?? body.max_tokens;
  if (limits.maxTokensPerRequest !== null && requested !== undefined && requested > limits.maxTokensPerRequest) {
    throw invalidField('max_tokens', `must be at most ${limits.maxTokensPerRequest} on the ${limits.plan} plan`);
  }
  const targets = await targetsFor(deps, principal.tenantId, body.model);
  if (targets.length === 0) {
    throw new AppError('not_found', `The model "${body.model}" is not offered here; GET /api/llm/v1/models lists them`);
  }
  const llmLimits = await hitLimits(deps, requestLimitSpecs(principal, 'llm_requests'));
  applyLimitStates(deps, reply, llmLimits, OPENAI_LIMIT_HEADERS);

  // Without a limit from the client or the plan, the prompt alone is held and the real use charged at settlement.
  const maxTokens = requested ?? limits.maxTokensPerRequest ?? undefined;
  const promptEstimate = await countMessageTokens(body.messages);
  const { reservation, budget } = await reserveTokens(deps, principal, promptEstimate + (maxTokens ?? 0));
  if (budget.limit !== null) {
    reply.header('x-ratelimit-limit-tokens', String(budget.limit));
    reply.header('x-ratelimit-remaining-tokens', String(budget.remaining));
  }
  const upstreamBody: ChatRequest = { ...body };
  if (requested === undefined && maxTokens !== undefined) upstreamBody.max_tokens = maxTokens;
  // Streams always end with a usage chunk, whether or not the client asked (so usage is exact).
  if (body.stream === true) {
    upstreamBody.stream_options = { ...(body.stream_options as object | undefined), include_usage: true };
  }
  return { targets, reservationId: reservation.id, promptEstimate, payload: JSON.stringify(upstreamBody) };
}

/** A call that a provider answered (2xx, or its own 4xx), and how to settle it. */
export interface Call {
  provider: ProviderRow;
  key: string;
  response: Response;
  promptEstimate: number;
  /** Settles the reservation with what was used, recording the usage event. */
  settle(promptTokens: number, completionTokens: number, status: string): Promise<BudgetView>;
}

/**
 * Everything before the answer, shared by both forms: `admit`, then the providers in turn
 * (`openUpstream`). When none answers, the call is recorded as failed (nothing charged) and 502
 * (or the client's cancellation) is thrown.
 */
export async function startCall(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<Call> {
  const admitted = await admit(deps, principal, body, reply);
  const started = Date.now();
  const settle = (provider: string | null, promptTokens: number, completionTokens: number, status: string) =>
    settleReservation(deps, principal, admitted.reservationId, {
      kind: 'llm',
      model: body.model,
      provider,
      promptTokens,
      completionTokens,
      latencyMs: Date.now() - started,
      status,
    });
  const opened = await openUpstream(deps, admitted.targets, admitted.payload, clientGone);
  if ('failure' in opened) {
    await settle(null, 0, 0, opened.cancelled ? 'cancelled' : 'upstream_error');
    if (opened.cancelled) throw new AppError('invalid_request', 'The client closed the request');
    throw new AppError('upstream_unavailable', `No provider could answer for ${body.model} (${opened.failure})`);
  }
  return {
    ...opened,
    promptEstimate: admitted.promptEstimate,
    settle: (promptTokens, completionTokens, status) =>
      settle(opened.provider.name, promptTokens, completionTokens, status),
  };
}

/**
 * POST /api/llm/v1/chat/completions, non-streaming: the reservation is settled with the
 * provider's usage, or the tokenizer's count when it reports none, and the provider's JSON goes
 * back as it came.
 */
export async function chatCompletion(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<Answered> {
  const { provider, key, response, promptEstimate, settle } = await startCall(deps, principal, body, reply, clientGone);
  const text = await response.text();
  let usage: UpstreamUsage | undefined;
  let completionText = '';
  if (response.ok) {
    try {
      const parsed = JSON.parse(text) as { usage?: UpstreamUsage; choices?: { message?: { content?: unknown } }[] };
      usage = parsed.usage;
      completionText = (parsed.choices ?? [])
        .map((c) => (typeof c.message?.content === 'string' ? c.message.content : ''))
        .join('');
    } catch {
      await settle(0, 0, 'upstream_error');
      throw new AppError('upstream_unavailable', `${provider.name} answered with invalid JSON`);
    }
  }
  const charged = response.ok
    ? {
        prompt_tokens: usage?.prompt_tokens ?? promptEstimate,
        completion_tokens: usage?.completion_tokens ?? (await countTokens(completionText)),
      }
    : { prompt_tokens: 0, completion_tokens: 0 };
  const after = await settle(charged.prompt_tokens, charged.completion_tokens, response.ok ? 'ok' : 'rejected');
  if (after.limit !== null) reply.header('x-ratelimit-remaining-tokens', String(after.remaining));
  reply.header('x-gatehouse-provider', provider.name);
  // The provider's own answer, byte for byte (an error of the request itself, 4xx, included),
  // with the shared key scrubbed should a provider ever echo it.
  reply.status(response.status).type('application/json');
  return { text: text.replaceAll(key, '[redacted]'), charged, remaining: after.remaining };
}

/** A JSON answer: the provider's body as it came, and what was charged for it. */
export interface Answered {
  text: string;
  charged: { prompt_tokens: number; completion_tokens: number };
  /** Left of the token budget after the charge (null: unlimited). */
  remaining: number | null;
}

/** The seed's simple answer, from a chat completion's answer. */
export function simpleCompletion(answered: Answered, reply: FastifyReply) {
  const parsed = JSON.parse(answered.text) as {
    id?: string;
    model?: string;
    choices?: { message?: { content?: unknown }; finish_reason?: string | null }[];
    usage?: UpstreamUsage;
  };
  const choice = parsed.choices?.[0];
  const { prompt_tokens: prompt, completion_tokens: completion } = answered.charged;
  reply.type('application/json; charset=utf-8');
  return {
    id: parsed.id ?? '',
    model: parsed.model ?? '',
    provider: String(reply.getHeader('x-gatehouse-provider') ?? ''),
    text: typeof choice?.message?.content === 'string' ? choice.message.content : '',
    finish_reason: choice?.finish_reason ?? null,
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    tokens_remaining: answered.remaining,
  };
}
