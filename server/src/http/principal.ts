import type { TokenPeriod } from '../db/schema.js';

/** Who is calling (DESIGN: operator, tenant admin, user, service). */
export type Principal = UserPrincipal | ServicePrincipal;

export interface UserPrincipal {
  kind: 'user';
  tenantId: string;
  userId: string;
  role: 'user' | 'admin' | 'operator';
  /** Set when the caller used an access token of this session. */
  sessionId: string | null;
  /** Set when the caller used an API key. */
  apiKeyId: string | null;
  /** The user's plan and the key's own limits, resolved with the credential (and cached with it). */
  limits: UserLimits;
}

/** What a user may use: their plan's limits, and the presenting key's own (null: unlimited). */
export interface UserLimits {
  plan: string;
  /** Counted over all of the user's requests. */
  requestsPerHour: number | null;
  llmRequestsPerHour: number | null;
  maxTokensPerRequest: number | null;
  /** Largest prompt one LLM call may send, in tokens. */
  maxPromptTokensPerRequest: number | null;
  tokenBudget: number | null;
  tokenPeriod: TokenPeriod;
  /** Public model names the plan may call (a trailing * matches a prefix); null: every model. */
  allowedModels: string[] | null;
  /** A key's own hourly limits, counted over that key's requests only (Unkey's per-key limits). */
  key: { requestsPerHour: number | null; llmRequestsPerHour: number | null } | null;
}

export interface ServicePrincipal {
  kind: 'service';
  tenantId: string;
  serviceKeyId: string;
}

/** Where a request came from, for sessions and the audit log. */
export interface ClientInfo {
  ip: string | null;
  userAgent: string | null;
}

/** The actor recorded in the audit log. */
export interface Actor {
  type: 'user' | 'service' | 'system' | 'anonymous';
  id: string | null;
}

export function actorOf(principal: Principal | null): Actor {
  if (!principal) return { type: 'anonymous', id: null };
  return principal.kind === 'user'
    ? { type: 'user', id: principal.userId }
    : { type: 'service', id: principal.serviceKeyId };
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: null };
