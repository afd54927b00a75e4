/** Per-tenant overrides of the instance defaults; absent fields follow the config. */
export interface TenantSettings {
  access_token_ttl_seconds?: number;
  refresh_token_idle_ttl_seconds?: number;
  refresh_token_absolute_ttl_seconds?: number;
  allowed_origins?: string[];
  /** Exact URIs a browser may be sent back to after an OAuth flow (vault connect, social sign-in). */
  allowed_redirect_uris?: string[];
  password_policy?: { min_length?: number; max_length?: number; block_common?: boolean };
}

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  publishableKey: string;
  settings: TenantSettings;
  /** The plan of users who have none of their own (the plans feature creates it with the tenant). */
  defaultPlanId: string | null;
  createdAt: number;
  updatedAt: number;
}

/** Settings with every default filled in: what the services actually apply. */
export interface EffectiveSettings {
  accessTtlMs: number;
  refreshIdleTtlMs: number;
  refreshAbsoluteTtlMs: number;
  allowedOrigins: string[];
  allowedRedirectUris: string[];
  passwordPolicy: { minLength: number; maxLength: number; blockCommon: boolean };
}
