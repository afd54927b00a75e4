import type { Dispatcher } from 'undici';
import type { Deps } from '../../deps.js';
import { OutboundRefused } from '../../lib/outbound.js';
import { breakersOf, isBrokenCircuit, ProviderFailure } from './breakers.js';
import type { ChatRequest } from './chat.service.js';
import { type GatewayConfig, keyOf, type Target } from './gateway-config.js';

// Calling providers: one attempt under the outbound policy and the provider's circuit breaker,
// and the targets in turn until one answers (ADR 0008).

/**
 * A provider failure worth trying the next provider for (before any byte reached the client):
 * 429, 5xx, 401/403 (the shared key's trouble, not the user's) and redirects, which are not followed.
 */
const providerFault = (status: number) =>
  status === 429 || status >= 500 || status === 401 || status === 403 || (status >= 300 && status < 400);

export interface UpstreamUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

export type Upstream = Dispatcher.ResponseData;

/**
 * One attempt at one provider, through the outbound agent (the address policy, no redirects).
 * Its own troubles become a ProviderFailure, which its circuit breaker counts; the client going
 * away is rethrown as it is.
 */
async function callProvider(
  deps: Deps,
  target: Target,
  payload: string,
  key: string,
  clientGone: AbortSignal,
): Promise<Upstream> {
  const url = `${target.provider.base_url}/chat/completions`;
  let response: Upstream;
  try {
    response = await deps.outbound.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: payload,
      signal: clientGone,
      // The timeout covers the wait for the answer's head, and then any silence within a stream.
      headersTimeout: deps.config.llm.upstreamTimeoutMs,
      bodyTimeout: deps.config.llm.upstreamTimeoutMs,
    });
  } catch (error) {
    if (clientGone.aborted) throw error;
    const refused = [error, (error as { cause?: unknown }).cause].find((e) => e instanceof OutboundRefused);
    if (refused) throw new ProviderFailure('refused_address', (refused as Error).message);
    const code = (error as { code?: string }).code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
      throw new ProviderFailure('timeout', 'timed out');
    }
    throw new ProviderFailure('unreachable', `unreachable (${code ?? (error as Error).message})`);
  }
  if (providerFault(response.statusCode)) {
    await response.body.dump();
    throw new ProviderFailure('status', `HTTP ${response.statusCode}`);
  }
  return response;
}

/** The provider that answered (with a status not worth failing over), or why none did. */
export type Opened = { target: Target; key: string; response: Upstream } | { failure: string; cancelled: boolean };

/**
 * Sends the request to the model's targets in order until one answers with something other than
 * a provider failure. A provider whose circuit is open is skipped. Nothing has reached the client yet.
 */
export async function openUpstream(
  deps: Deps,
  tenantId: string,
  config: GatewayConfig,
  targets: Target[],
  upstreamBody: ChatRequest,
  clientGone: AbortSignal,
): Promise<Opened> {
  const failures: string[] = [];
  const breakers = breakersOf(deps);
  const asSent = JSON.stringify(upstreamBody);
  for (const target of targets) {
    const { provider } = target;
    const key = keyOf(deps, config, provider);
    const payload =
      target.model === upstreamBody.model ? asSent : JSON.stringify({ ...upstreamBody, model: target.model });
    try {
      const response = await breakers.run(tenantId, provider, () =>
        callProvider(deps, target, payload, key, clientGone),
      );
      return { target, key, response };
    } catch (error) {
      if (clientGone.aborted) return { failure: 'the client went away', cancelled: true };
      if (isBrokenCircuit(error)) {
        failures.push(`${provider.name}: skipped after repeated failures`);
        continue;
      }
      if (!(error instanceof ProviderFailure)) throw error;
      failures.push(`${provider.name}: ${error.message}`);
      deps.log.warn({ provider: provider.name, reason: error.message }, 'LLM provider failed; trying the next');
    }
  }
  return { failure: failures.join('; ') || 'no provider answered', cancelled: false };
}
