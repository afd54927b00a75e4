import type { CircuitBreakerPolicy } from 'cockatiel';
import { Counter, Gauge } from 'prom-client';
import type { Deps } from '../../deps.js';

/** A provider's own failure (unreachable, timed out, 429, 5xx, 401/403): counted by its breaker. */
export class ProviderFailure extends Error {
  constructor(
    readonly reason: 'unreachable' | 'timeout' | 'refused_address' | 'status',
    message: string,
  ) {
    super(message);
    this.name = 'ProviderFailure';
  }
}

/**
 * One circuit breaker per provider (cockatiel), per instance: after LLM_BREAKER_FAILURES
 * consecutive failures the provider is skipped for LLM_BREAKER_COOLDOWN, then one call is let
 * through as a trial, which closes the circuit or opens it again. Only ProviderFailure counts: a
 * client that goes away or a request the provider refuses (4xx) says nothing about its health.
 * Metrics: gatehouse_llm_provider_circuit_open (1 while skipped) and
 * gatehouse_llm_provider_failures_total by reason.
 */
export interface Breakers {
  /** Runs `call` under the provider's breaker; throws BrokenCircuitError when the provider is being skipped. */
  run<T>(tenantId: string, provider: { id: string; name: string }, call: () => Promise<T>): Promise<T>;
  /** The providers whose circuit is open or on trial, for the providers list. */
  isOpen(providerId: string): boolean;
}

const registries = new WeakMap<Deps, Breakers>();

export function breakersOf(deps: Deps): Breakers {
  let breakers = registries.get(deps);
  if (!breakers) {
    breakers = createBreakers(deps);
    registries.set(deps, breakers);
  }
  return breakers;
}

function createBreakers(deps: Deps): Breakers {
  const { breakerFailures, breakerCooldownMs } = deps.config.llm;
  const open = new Gauge({
    name: 'gatehouse_llm_provider_circuit_open',
    help: 'LLM providers being skipped after consecutive failures (1), or in use (0)',
    labelNames: ['tenant', 'provider'] as const,
    registers: [deps.metrics],
  });
  const failures = new Counter({
    name: 'gatehouse_llm_provider_failures_total',
    help: 'Failed LLM provider calls by reason (each one sends the call to the next provider)',
    labelNames: ['tenant', 'provider', 'reason'] as const,
    registers: [deps.metrics],
  });
  const policies = new Map<string, CircuitBreakerPolicy>();
  // cockatiel loads on the first provider call, not at start.
  let lib: typeof import('cockatiel') | undefined;

  const policyFor = async (tenantId: string, provider: { id: string; name: string }) => {
    lib ??= await import('cockatiel');
    const { circuitBreaker, ConsecutiveBreaker, handleWhen } = lib;
    let policy = policies.get(provider.id);
    if (!policy) {
      const labels = { tenant: tenantId, provider: provider.name };
      policy = circuitBreaker(
        handleWhen((error) => error instanceof ProviderFailure),
        { halfOpenAfter: breakerCooldownMs, breaker: new ConsecutiveBreaker(breakerFailures) },
      );
      policy.onBreak(() => {
        open.set(labels, 1);
        deps.log.warn(
          { tenant: tenantId, provider: provider.name, cooldown_ms: breakerCooldownMs },
          'LLM provider circuit opened: skipped until a trial call succeeds',
        );
      });
      policy.onReset(() => {
        open.set(labels, 0);
        deps.log.info({ tenant: tenantId, provider: provider.name }, 'LLM provider circuit closed again');
      });
      policy.onFailure(({ reason }) => {
        if ('error' in reason && reason.error instanceof ProviderFailure) {
          failures.inc({ ...labels, reason: reason.error.reason });
        }
      });
      open.set(labels, 0);
      policies.set(provider.id, policy);
    }
    return policy;
  };

  return {
    async run(tenantId, provider, call) {
      const policy = await policyFor(tenantId, provider);
      const { BrokenCircuitError, CircuitState } = lib!;
      // A trial is already under way: the others go elsewhere rather than queue behind it.
      if (policy.state === CircuitState.HalfOpen) throw new BrokenCircuitError();
      return policy.execute(call);
    },
    isOpen(providerId) {
      const state = policies.get(providerId)?.state;
      return lib !== undefined && (state === lib.CircuitState.Open || state === lib.CircuitState.HalfOpen);
    },
  };
}

/** A provider skipped because its circuit is open (cockatiel's error, without loading it to check). */
export const isBrokenCircuit = (error: unknown) =>
  (error as { isBrokenCircuitError?: unknown } | undefined)?.isBrokenCircuitError === true;
