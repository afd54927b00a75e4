/**
 * Table types for both dialects. Timestamps are integer epoch milliseconds everywhere, JSON is
 * text (see json.ts), booleans are nullable timestamps (`revoked_at`), so one schema serves
 * SQLite and PostgreSQL alike.
 */
export interface Database {
  tenants: TenantTable;
  users: UserTable;
  sessions: SessionTable;
  refresh_tokens: RefreshTokenTable;
  api_keys: ApiKeyTable;
  service_keys: ServiceKeyTable;
  signing_keys: SigningKeyTable;
  audit_events: AuditEventTable;
  instance_state: InstanceStateTable;
  plans: PlanTable;
  token_budgets: TokenBudgetTable;
  token_reservations: TokenReservationTable;
  usage_events: UsageEventTable;
  usage_rollups: UsageRollupTable;
  events: EventTable;
  llm_providers: LlmProviderTable;
  llm_routes: LlmRouteTable;
  llm_prices: LlmPriceTable;
  llm_settings: LlmSettingsTable;
  vault_keys: VaultKeyTable;
  connections: ConnectionTable;
  oauth_providers: OAuthProviderTable;
  oauth_states: OAuthStateTable;
  user_identities: UserIdentityTable;
  device_authorizations: DeviceAuthorizationTable;
  oauth_codes: OAuthCodeTable;
  webhook_endpoints: WebhookEndpointTable;
  webhook_deliveries: WebhookDeliveryTable;
  webhook_attempts: WebhookAttemptTable;
}

export interface TenantTable {
  id: string;
  slug: string;
  name: string;
  publishable_key: string;
  settings: string;
  default_plan_id: string | null;
  created_at: number;
  updated_at: number;
}

export interface UserTable {
  id: string;
  tenant_id: string;
  email: string;
  name: string | null;
  password_hash: string | null;
  role: 'user' | 'admin' | 'operator';
  /** null: the tenant's default plan. */
  plan_id: string | null;
  disabled_at: number | null;
  email_verified_at: number | null;
  last_login_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface SessionTable {
  id: string;
  tenant_id: string;
  user_id: string;
  ip: string | null;
  user_agent: string | null;
  created_at: number;
  last_used_at: number;
  /** Absolute end of the session; refresh tokens never outlive it. */
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
}

export interface RefreshTokenTable {
  id: string;
  tenant_id: string;
  session_id: string;
  token_hash: string;
  created_at: number;
  expires_at: number;
  /** Set when the token was exchanged; a later use is a replay (or a racing duplicate). */
  used_at: number | null;
  /** The response given for this token, sealed under the master key, kept for the grace window only. */
  successor_sealed: string | null;
}

export interface ApiKeyTable {
  id: string;
  tenant_id: string;
  user_id: string;
  name: string;
  start: string;
  key_hash: string;
  scopes: string;
  created_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  revoked_at: number | null;
  rotated_to: string | null;
  /** Tighter than the owner's plan; null: the plan's. */
  requests_per_hour: number | null;
  llm_requests_per_hour: number | null;
}

export interface ServiceKeyTable {
  id: string;
  tenant_id: string;
  name: string;
  start: string;
  key_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface SigningKeyTable {
  id: string;
  alg: string;
  public_jwk: string;
  private_sealed: string;
  created_at: number;
  retired_at: number | null;
}

export interface AuditEventTable {
  id: string;
  tenant_id: string;
  action: string;
  actor_type: string;
  actor_id: string | null;
  target_type: string | null;
  target_id: string | null;
  ip: string | null;
  user_agent: string | null;
  data: string;
  created_at: number;
}

export interface InstanceStateTable {
  key: string;
  value: string;
  updated_at: number;
}

/** Limits are null when unlimited. */
export interface PlanTable {
  id: string;
  tenant_id: string;
  name: string;
  requests_per_hour: number | null;
  llm_requests_per_hour: number | null;
  max_tokens_per_request: number | null;
  /** Largest prompt one LLM call may send, in tokens. */
  max_prompt_tokens_per_request: number | null;
  tokens_per_month: number | null;
  token_period: TokenPeriod;
  /** JSON array of public model names (a trailing * matches a prefix); null: every model. */
  allowed_models: string | null;
  created_at: number;
  updated_at: number;
}

/** How often a plan's token budget resets (UTC calendar periods). */
export type TokenPeriod = 'month' | 'week' | 'day';

export interface TokenBudgetTable {
  tenant_id: string;
  user_id: string;
  period_start: number;
  period_end: number;
  tokens_used: number;
  tokens_reserved: number;
  exceeded_at: number | null;
  updated_at: number;
}

export type ReservationStatus = 'held' | 'settled' | 'released' | 'expired';

export interface TokenReservationTable {
  id: string;
  tenant_id: string;
  user_id: string;
  api_key_id: string | null;
  period_start: number;
  tokens: number;
  status: ReservationStatus;
  charged: number | null;
  created_at: number;
  expires_at: number;
  closed_at: number | null;
}

export type UsageKind = 'llm' | 'credits';

export interface UsageEventTable {
  id: string;
  tenant_id: string;
  user_id: string;
  api_key_id: string | null;
  kind: UsageKind;
  model: string | null;
  provider: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micros: number;
  latency_ms: number | null;
  status: string;
  created_at: number;
}

export interface UsageRollupTable {
  tenant_id: string;
  granularity: 'hour' | 'day';
  bucket_start: number;
  user_id: string;
  /** '' when the usage came without a key (access token). */
  api_key_id: string;
  model: string;
  provider: string;
  requests: number;
  llm_requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micros: number;
}

export interface EventTable {
  id: string;
  tenant_id: string;
  /** The user the event concerns (their realtime feed replays it), when there is one. */
  user_id: string | null;
  type: string;
  data: string;
  created_at: number;
}

export interface LlmProviderTable {
  id: string;
  tenant_id: string;
  name: string;
  /** Wire protocol; 'openai' (OpenAI-compatible chat completions) to start. */
  kind: 'openai';
  base_url: string;
  api_key_sealed: string;
  models: string;
  priority: number;
  disabled_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface LlmRouteTable {
  id: string;
  tenant_id: string;
  /** The public model name clients ask for. */
  model: string;
  /** JSON array of {provider_id, model}: tried in order. */
  targets: string;
  created_at: number;
  updated_at: number;
}

/** Prices in micro-dollars per million tokens: 0.15 USD per million is 150000. */
export interface LlmPriceTable {
  tenant_id: string;
  /** A provider model id, or "provider/model" for one provider's price. */
  model: string;
  input_micros: number;
  output_micros: number;
  updated_at: number;
}

export interface LlmSettingsTable {
  tenant_id: string;
  cache_enabled: number;
  cache_ttl_seconds: number;
  cache_charge: 'tokens' | 'free';
  updated_at: number;
}

/** A tenant's vault data key, wrapped by the master key. */
export interface VaultKeyTable {
  tenant_id: string;
  version: number;
  wrapped: string;
  created_at: number;
}

export interface ConnectionTable {
  id: string;
  tenant_id: string;
  /** A Gatehouse user id, or the app's own id for its user. */
  owner: string;
  user_id: string | null;
  service: string;
  auth_data_sealed: string;
  key_version: number;
  expires_at: number | null;
  created_at: number;
  updated_at: number;
  provider_id: string | null;
  status: 'active' | 'needs_reauth';
  refresh_lock_until: number | null;
  refresh_failures: number;
  next_refresh_at: number | null;
  last_error: string | null;
}

export interface OAuthProviderTable {
  id: string;
  tenant_id: string;
  name: string;
  preset: string | null;
  client_id: string;
  client_secret_sealed: string | null;
  issuer: string | null;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint: string | null;
  userinfo_endpoint: string | null;
  scopes: string;
  pkce: number;
  extra_params: string;
  created_at: number;
  updated_at: number;
}

export interface OAuthStateTable {
  id: string;
  tenant_id: string;
  provider_id: string;
  purpose: 'connect' | 'sign_in';
  owner: string | null;
  user_id: string | null;
  code_verifier_sealed: string;
  redirect_after: string | null;
  scopes: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  app_state: string | null;
  app_code_challenge: string | null;
  /** connect: the provider's authorization URL, sealed, behind Gatehouse's link page. */
  authorize_url_sealed: string | null;
  /** connect: SHA-256 of the secret of the browser that opened the link (its cookie). */
  browser_binding: string | null;
}

export interface UserIdentityTable {
  id: string;
  tenant_id: string;
  user_id: string;
  provider_id: string;
  subject: string;
  email: string | null;
  /**
   * The provider's issuer, token and userinfo endpoints when the link was made (ADR 0013): the
   * subject is only that server's word. null only for a provider row gone since.
   */
  authority: string | null;
  created_at: number;
  last_login_at: number;
}

export interface OAuthCodeTable {
  id: string;
  tenant_id: string;
  user_id: string;
  redirect_uri: string;
  code_challenge: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface WebhookEndpointTable {
  id: string;
  tenant_id: string;
  url: string;
  description: string | null;
  event_types: string;
  secret_sealed: string;
  previous_secret_sealed: string | null;
  previous_secret_until: number | null;
  disabled_at: number | null;
  disabled_reason: string | null;
  failing_since: number | null;
  created_at: number;
  updated_at: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed' | 'cancelled';

export interface WebhookDeliveryTable {
  id: string;
  tenant_id: string;
  endpoint_id: string;
  event_id: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  locked_until: number | null;
  created_at: number;
  updated_at: number;
}

export interface WebhookAttemptTable {
  id: string;
  tenant_id: string;
  delivery_id: string;
  endpoint_id: string;
  event_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  latency_ms: number;
  response_excerpt: string | null;
  created_at: number;
}

export interface DeviceAuthorizationTable {
  id: string;
  tenant_id: string;
  device_code_hash: string;
  user_code: string;
  client_id: string;
  status: 'pending' | 'approved' | 'denied' | 'used';
  user_id: string | null;
  interval_s: number;
  last_polled_at: number | null;
  expires_at: number;
  created_at: number;
  decided_at: number | null;
}
