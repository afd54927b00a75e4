import type { FastifyReply } from 'fastify';
import type { Deps } from '../../deps.js';
import { AppError, invalidField } from '../../errors.js';
import type { UserPrincipal } from '../../http/principal.js';
import { type BudgetView, quotaExceeded } from '../usage/budget.service.js';
import { budgetOfHold, type Hold, holdTokens, releaseHold, settleHold, shrinkHold } from '../usage/budget-leases.js';
import {
  applyLimitStates,
  type HeaderSink,
  hitLimits,
  type LimitHeaderNames,
  requestLimitSpecs,
} from '../usage/rate-limits.js';
import {
  costMicros,
  type GatewayConfig,
  gatewayConfig,
  modelAllowed,
  priceOf,
  type Target,
  targetsFor,
} from './gateway-config.js';
import { cacheable, cacheKey, responseCacheOf } from './response-cache.js';
import { countMessageTokens, countTokens, promptBounds } from './tokens.js';
import { openUpstream, type Upstream, type UpstreamUsage } from './upstream.js';

/** The fields Gatehouse reads; everything else in the body goes to the provider as sent. */
export interface ChatRequest {
  model: string;
  messages: { role?: unknown; content?: unknown; name?: unknown }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  /** How many answers to generate (each may use max_tokens). */
  n?: number;
  stream?: boolean;
  [field: string]: unknown;
}

/** OpenAI's x-ratelimit-* headers (requests: the plan's LLM calls per hour; tokens: the budget). */
const OPENAI_LIMIT_HEADERS: LimitHeaderNames = {
  limit: 'x-ratelimit-limit-requests',
  remaining: 'x-ratelimit-remaining-requests',
  reset: 'x-ratelimit-reset-requests',
  formatReset: goDuration,
};

/** Seconds the way OpenAI writes its resets (Go durations): 59s, 6m0s, 1h0m0s. */
export function goDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** What was checked and held before any provider is called. */
interface Admitted {
  config: GatewayConfig;
  targets: Target[];
  hold: Hold;
  promptEstimate: number;
  upstreamBody: ChatRequest;
}

/**
 * The checks before any provider is called, cheapest first (ADR 0014): max_tokens against the
 * plan, the model (served here, and allowed by the plan), the plan's LLM calls per hour, then the
 * token budget and the prompt's size.
 *
 * The budget is held before the prompt is counted, by a bound that costs nothing to compute (the
 * prompt's UTF-8 bytes): a budget that cannot cover the smallest such call refuses without
 * counting, and the count stops as soon as the prompt is known not to fit the hold or the plan's
 * `max_prompt_tokens_per_request`. The hold is then cut to the prompt plus what the answer may
 * use: what the client asked for, else the plan's maximum, but never more than the budget has
 * left, and the provider is told that maximum (`max_tokens`), so it cannot serve more.
 */
export async function admit(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: HeaderSink,
): Promise<Admitted> {
  const { limits } = principal;
  const requested = body.max_completion_tokens ?? body.max_tokens;
  if (limits.maxTokensPerRequest !== null && requested !== undefined && requested > limits.maxTokensPerRequest) {
    throw invalidField('max_tokens', `must be at most ${limits.maxTokensPerRequest} on the ${limits.plan} plan`);
  }
  const config = await gatewayConfig(deps, principal.tenantId);
  const targets = targetsFor(config, body.model);
  if (targets.length === 0) {
    throw new AppError('not_found', `The model "${body.model}" is not offered here; GET /api/llm/v1/models lists them`);
  }
  if (!modelAllowed(limits.allowedModels, body.model)) {
    throw new AppError('forbidden', `The ${limits.plan} plan does not include the model "${body.model}"`, {
      details: { model: body.model, plan: limits.plan },
    });
  }
  const llmLimits = await hitLimits(deps, requestLimitSpecs(principal, 'llm_requests'));
  applyLimitStates(deps, reply, llmLimits, OPENAI_LIMIT_HEADERS);

  const { hold, promptTokens, completion } = await holdForCall(deps, principal, body, requested);
  const budget = budgetOfHold(hold);
  if (budget.limit !== null) {
    reply.header('x-ratelimit-limit-tokens', String(budget.limit));
    reply.header('x-ratelimit-remaining-tokens', String(budget.remaining));
    reply.header(
      'x-ratelimit-reset-tokens',
      goDuration(Math.max(0, Math.ceil((budget.period.end - deps.clock.now()) / 1000))),
    );
  }
  const upstreamBody: ChatRequest = { ...body };
  if (requested === undefined && completion !== null) upstreamBody.max_tokens = completion;
  // Streams always end with a usage chunk, whether or not the client asked (so usage is exact).
  if (body.stream === true) {
    upstreamBody.stream_options = { ...(body.stream_options as object | undefined), include_usage: true };
  }
  return { config, targets, hold, promptEstimate: promptTokens, upstreamBody };
}

/**
 * Holds the call's worst case and counts its prompt (see `admit`). Returns the hold, the prompt's
 * tokens and the most each choice may answer with (null: no limit from the client, the plan or the budget).
 */
async function holdForCall(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  requested: number | undefined,
): Promise<{ hold: Hold; promptTokens: number; completion: number | null }> {
  const { limits } = principal;
  const choices = body.n ?? 1;
  const perChoice = requested ?? limits.maxTokensPerRequest;
  // What the answers may use at most: without a limit from the client or the plan, whatever the budget has left.
  const most = perChoice !== null ? perChoice * choices : (limits.tokenBudget ?? 0);
  const least = Math.min(requested !== undefined ? requested * choices : choices, most);
  const bounds = promptBounds(body.messages);
  const hold = await holdTokens(deps, principal, bounds.upper + most, { atLeast: bounds.lower + least });
  let promptTokens: number;
  try {
    const maxPrompt = limits.maxPromptTokensPerRequest ?? Number.POSITIVE_INFINITY;
    const fits = limits.tokenBudget === null ? Number.POSITIVE_INFINITY : hold.tokens - least;
    promptTokens = await countMessageTokens(body.messages, { stopAbove: Math.min(maxPrompt, fits) });
    if (promptTokens > maxPrompt) {
      throw invalidField(
        'messages',
        `are more than ${maxPrompt} tokens: the ${limits.plan} plan allows at most ${maxPrompt} in one call's prompt`,
      );
    }
  } catch (error) {
    releaseHold(deps, hold);
    throw error;
  }
  if (limits.tokenBudget === null) {
    shrinkHold(hold, promptTokens + most);
    return { hold, promptTokens, completion: perChoice };
  }
  if (promptTokens + least > hold.tokens) {
    releaseHold(deps, hold);
    throw quotaExceeded(budgetOfHold(hold), promptTokens + least, deps.clock.now());
  }
  const completion = Math.floor(Math.min(most, hold.tokens - promptTokens) / choices);
  shrinkHold(hold, promptTokens + completion * choices);
  return { hold, promptTokens, completion };
}

/** A call that a provider answered (2xx, or its own 4xx), and how to settle it. */
export interface Call {
  target: Target;
  key: string;
  response: Upstream;
  promptEstimate: number;
  /** Settles the reservation with what was used, recording the usage event with its cost. */
  settle(promptTokens: number, completionTokens: number, status: string): Promise<Settled>;
  /** Ends the hold if nothing settled it (an unexpected error on the way): call it in a `finally`. */
  abandon(): void;
}

export interface Settled {
  budget: BudgetView;
  costMicros: number;
}

/** Settles an admitted call, pricing what it used by the tenant's price table. */
function settler(deps: Deps, body: ChatRequest, admitted: Admitted, started: number) {
  return async (
    target: Target | null,
    promptTokens: number,
    completionTokens: number,
    status: string,
    provider = target?.provider.name ?? null,
  ): Promise<Settled> => {
    const price = target ? priceOf(admitted.config, target, body.model) : undefined;
    const cost = costMicros(price, promptTokens, completionTokens);
    const budget = settleHold(deps, admitted.hold, {
      kind: 'llm',
      model: body.model,
      provider,
      promptTokens,
      completionTokens,
      costMicros: cost,
      latencyMs: Date.now() - started,
      status,
    });
    return { budget, costMicros: cost };
  };
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
  reply: HeaderSink,
  clientGone: AbortSignal,
): Promise<Call> {
  const admitted = await admit(deps, principal, body, reply);
  try {
    return await openCall(deps, principal, body, admitted, clientGone, Date.now());
  } catch (error) {
    abandonHold(deps, admitted, body);
    throw error;
  }
}

/** Ends a hold that nothing settled (an unexpected error on the way): nothing charged, recorded as an error. */
function abandonHold(deps: Deps, admitted: Admitted, body: ChatRequest): void {
  if (!admitted.hold.open) return;
  settleHold(deps, admitted.hold, {
    kind: 'llm',
    model: body.model,
    provider: null,
    promptTokens: 0,
    completionTokens: 0,
    status: 'error',
  });
}

async function openCall(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  admitted: Admitted,
  clientGone: AbortSignal,
  started: number,
): Promise<Call> {
  const settle = settler(deps, body, admitted, started);
  const opened = await openUpstream(
    deps,
    principal.tenantId,
    admitted.config,
    admitted.targets,
    admitted.upstreamBody,
    clientGone,
  );
  if ('failure' in opened) {
    await settle(null, 0, 0, opened.cancelled ? 'cancelled' : 'upstream_error');
    if (opened.cancelled) throw new AppError('invalid_request', 'The client closed the request');
    throw new AppError('upstream_unavailable', `No provider could answer for ${body.model} (${opened.failure})`);
  }
  return {
    ...opened,
    promptEstimate: admitted.promptEstimate,
    settle: (promptTokens, completionTokens, status) => settle(opened.target, promptTokens, completionTokens, status),
    abandon: () => abandonHold(deps, admitted, body),
  };
}

/** Cost headers and the budget left, once a JSON answer is settled. */
function settledHeaders(reply: FastifyReply, settled: Settled, provider: string) {
  if (settled.budget.limit !== null) reply.header('x-ratelimit-remaining-tokens', String(settled.budget.remaining));
  reply.header('x-gatehouse-provider', provider);
  reply.header('x-gatehouse-cost-usd', usd(settled.costMicros));
}

/** Micro-dollars as a decimal USD string (no float noise): 1234 → "0.001234". */
export function usd(micros: number): string {
  const whole = Math.floor(micros / 1_000_000);
  const fraction = String(micros % 1_000_000)
    .padStart(6, '0')
    .replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : String(whole);
}

/**
 * POST /api/llm/v1/chat/completions, non-streaming: the reservation is settled with the
 * provider's usage, or the tokenizer's count when it reports none, and the provider's JSON goes
 * back as it came. With the tenant's response cache on, a repeat of a cacheable request is
 * answered from the cache (`x-gatehouse-cache: hit`) and charged per the tenant's setting.
 */
export async function chatCompletion(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
): Promise<Answered> {
  const started = Date.now();
  const admitted = await admit(deps, principal, body, reply);
  try {
    return await answer(deps, principal, body, reply, clientGone, admitted, started);
  } catch (error) {
    abandonHold(deps, admitted, body);
    throw error;
  }
}

/** chatCompletion once admitted: from the cache, or from the providers. */
async function answer(
  deps: Deps,
  principal: UserPrincipal,
  body: ChatRequest,
  reply: FastifyReply,
  clientGone: AbortSignal,
  admitted: Admitted,
  started: number,
): Promise<Answered> {
  const { cache } = admitted.config;
  const cacheKeyed = cache.enabled && cacheable(body) ? cacheKey(principal.tenantId, body) : null;
  if (cacheKeyed) {
    const hit = await responseCacheOf(deps).get(cacheKeyed);
    reply.header('x-gatehouse-cache', hit ? 'hit' : 'miss');
    if (hit) {
      const charged =
        cache.charge === 'tokens'
          ? { prompt_tokens: hit.promptTokens, completion_tokens: hit.completionTokens }
          : { prompt_tokens: 0, completion_tokens: 0 };
      const target = admitted.targets.find((t) => t.provider.name === hit.provider) ?? null;
      const settled = await settler(deps, body, admitted, started)(
        cache.charge === 'tokens' ? target : null,
        charged.prompt_tokens,
        charged.completion_tokens,
        'ok',
        'cache',
      );
      settledHeaders(reply, settled, hit.provider);
      reply.status(200).type('application/json');
      return { text: hit.text, charged, remaining: settled.budget.remaining, costMicros: settled.costMicros };
    }
  }

  const { target, key, response, promptEstimate, settle } = await openCall(
    deps,
    principal,
    body,
    admitted,
    clientGone,
    started,
  );
  const ok = response.statusCode >= 200 && response.statusCode < 300;
  const provider = target.provider.name;
  let text: string;
  try {
    text = await response.body.text();
  } catch (error) {
    if (clientGone.aborted) {
      await settle(promptEstimate, 0, 'cancelled');
      throw new AppError('invalid_request', 'The client closed the request');
    }
    await settle(promptEstimate, 0, 'interrupted');
    throw new AppError('upstream_unavailable', `${provider}'s answer broke off (${(error as Error).message})`);
  }
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
      await settle(0, 0, 'upstream_error');
      throw new AppError('upstream_unavailable', `${provider} answered with invalid JSON`);
    }
  }
  const charged = ok
    ? {
        prompt_tokens: usage?.prompt_tokens ?? promptEstimate,
        completion_tokens: usage?.completion_tokens ?? (await countTokens(completionText)),
      }
    : { prompt_tokens: 0, completion_tokens: 0 };
  const settled = await settle(charged.prompt_tokens, charged.completion_tokens, ok ? 'ok' : 'rejected');
  settledHeaders(reply, settled, provider);
  // The provider's own answer, byte for byte (an error of the request itself, 4xx, included),
  // with the shared key scrubbed should a provider ever echo it.
  const answer = text.replaceAll(key, '[redacted]');
  if (cacheKeyed && response.statusCode === 200) {
    await responseCacheOf(deps).set(
      cacheKeyed,
      {
        text: answer,
        provider,
        model: target.model,
        promptTokens: charged.prompt_tokens,
        completionTokens: charged.completion_tokens,
      },
      cache.ttlSeconds,
    );
  }
  reply.status(response.statusCode).type('application/json');
  return { text: answer, charged, remaining: settled.budget.remaining, costMicros: settled.costMicros };
}

/** A JSON answer: the provider's body as it came, and what was charged for it. */
export interface Answered {
  text: string;
  charged: { prompt_tokens: number; completion_tokens: number };
  /** Left of the token budget after the charge (null: unlimited). */
  remaining: number | null;
  costMicros: number;
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
    cost_usd: answered.costMicros / 1_000_000,
    tokens_remaining: answered.remaining,
  };
}
