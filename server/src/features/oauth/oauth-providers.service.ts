import { json, transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { invalidField, notFound } from '../../errors.js';
import type { Actor, ClientInfo } from '../../http/principal.js';
import { recordAudit } from '../audit/audit.service.js';
import { checkEndpoint, discover, secretAad } from './oauth-client.js';
import {
  deleteOAuthProviderRow,
  findOAuthProvider,
  insertOAuthProvider,
  listOAuthProviderRows,
  type OAuthProviderRow,
  updateOAuthProviderRow,
} from './oauth-providers.repo.js';

interface Preset {
  label: string;
  issuer?: string;
  authorization_endpoint?: string;
  token_endpoint?: string;
  revocation_endpoint?: string;
  userinfo_endpoint?: string;
  scopes: string[];
  extra_params?: Record<string, string>;
}

/** The providers the issue names, so an admin only pastes a client id and secret. */
export const OAUTH_PRESETS: Record<string, Preset> = {
  google: {
    label: 'Google',
    issuer: 'https://accounts.google.com',
    authorization_endpoint: 'https://accounts.google.com/o/oauth2/v2/auth',
    token_endpoint: 'https://oauth2.googleapis.com/token',
    revocation_endpoint: 'https://oauth2.googleapis.com/revoke',
    userinfo_endpoint: 'https://openidconnect.googleapis.com/v1/userinfo',
    scopes: ['openid', 'email', 'profile'],
    // A refresh token, every time the user consents.
    extra_params: { access_type: 'offline', prompt: 'consent' },
  },
  github: {
    label: 'GitHub',
    authorization_endpoint: 'https://github.com/login/oauth/authorize',
    token_endpoint: 'https://github.com/login/oauth/access_token',
    userinfo_endpoint: 'https://api.github.com/user',
    scopes: ['read:user', 'user:email'],
  },
  microsoft: {
    label: 'Microsoft',
    authorization_endpoint: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
    token_endpoint: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
    userinfo_endpoint: 'https://graph.microsoft.com/oidc/userinfo',
    scopes: ['openid', 'email', 'profile', 'offline_access'],
  },
  slack: {
    label: 'Slack',
    authorization_endpoint: 'https://slack.com/oauth/v2/authorize',
    token_endpoint: 'https://slack.com/api/oauth.v2.access',
    scopes: [],
  },
  notion: {
    label: 'Notion',
    authorization_endpoint: 'https://api.notion.com/v1/oauth/authorize',
    token_endpoint: 'https://api.notion.com/v1/oauth/token',
    scopes: [],
    extra_params: { owner: 'user' },
  },
};

export interface OAuthProviderInput {
  name: string;
  preset?: string;
  client_id: string;
  client_secret?: string | null;
  issuer?: string;
  authorization_endpoint?: string;
  token_endpoint?: string;
  revocation_endpoint?: string | null;
  userinfo_endpoint?: string | null;
  scopes?: string[];
  pkce?: boolean;
  extra_params?: Record<string, string>;
}

/** Authorization parameters Gatehouse sets itself; extra_params may not override them. */
export const RESERVED_PARAMS = new Set([
  'client_id',
  'redirect_uri',
  'response_type',
  'state',
  'code_challenge',
  'code_challenge_method',
  'scope',
]);

export function checkExtraParams(field: string, params: Record<string, string> | undefined) {
  for (const name of Object.keys(params ?? {})) {
    if (RESERVED_PARAMS.has(name)) throw invalidField(`${field}.${name}`, 'is set by Gatehouse');
  }
}

export function presentOAuthProvider(row: OAuthProviderRow) {
  return {
    id: row.id,
    name: row.name,
    preset: row.preset,
    client_id: row.client_id,
    has_client_secret: row.client_secret_sealed !== null,
    issuer: row.issuer,
    authorization_endpoint: row.authorization_endpoint,
    token_endpoint: row.token_endpoint,
    revocation_endpoint: row.revocation_endpoint,
    userinfo_endpoint: row.userinfo_endpoint,
    scopes: json.read<string[]>(row.scopes, []),
    pkce: row.pkce === 1,
    extra_params: json.read<Record<string, string>>(row.extra_params, {}),
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

export async function listOAuthProviders(deps: Deps, tenantId: string) {
  return (await listOAuthProviderRows(deps.db.kysely, tenantId)).map(presentOAuthProvider);
}

export async function requireOAuthProvider(deps: Deps, tenantId: string, idOrName: string) {
  const row = await findOAuthProvider(deps.db.kysely, tenantId, idOrName);
  if (!row) throw notFound('OAuth provider');
  return row;
}

/**
 * The endpoints: given ones win, then the preset's, then (with an issuer and no authorization or
 * token endpoint) the issuer's discovery document.
 */
async function endpointsOf(deps: Deps, input: OAuthProviderInput, preset: Preset | undefined) {
  const pick = <K extends keyof Preset>(key: K) =>
    (input[key as keyof OAuthProviderInput] ?? preset?.[key]) as Preset[K];
  let found = {
    issuer: pick('issuer') ?? null,
    authorization_endpoint: pick('authorization_endpoint') ?? null,
    token_endpoint: pick('token_endpoint') ?? null,
    revocation_endpoint: pick('revocation_endpoint') ?? null,
    userinfo_endpoint: pick('userinfo_endpoint') ?? null,
  };
  if (found.issuer && (!found.authorization_endpoint || !found.token_endpoint)) {
    const discovered = await discover(deps, checkEndpoint(deps, 'issuer', found.issuer));
    found = {
      issuer: discovered.issuer,
      authorization_endpoint: found.authorization_endpoint ?? discovered.authorization_endpoint,
      token_endpoint: found.token_endpoint ?? discovered.token_endpoint,
      revocation_endpoint: found.revocation_endpoint ?? discovered.revocation_endpoint,
      userinfo_endpoint: found.userinfo_endpoint ?? discovered.userinfo_endpoint,
    };
  }
  if (!found.authorization_endpoint)
    throw invalidField('authorization_endpoint', 'is required without an issuer or a preset');
  if (!found.token_endpoint) throw invalidField('token_endpoint', 'is required without an issuer or a preset');
  return {
    issuer: found.issuer,
    authorization_endpoint: checkEndpoint(deps, 'authorization_endpoint', found.authorization_endpoint),
    token_endpoint: checkEndpoint(deps, 'token_endpoint', found.token_endpoint),
    revocation_endpoint:
      found.revocation_endpoint && checkEndpoint(deps, 'revocation_endpoint', found.revocation_endpoint),
    userinfo_endpoint: found.userinfo_endpoint && checkEndpoint(deps, 'userinfo_endpoint', found.userinfo_endpoint),
  };
}

export async function createOAuthProvider(
  deps: Deps,
  tenantId: string,
  input: OAuthProviderInput,
  actor: Actor,
  client: ClientInfo,
) {
  const preset = input.preset === undefined ? undefined : OAUTH_PRESETS[input.preset];
  if (input.preset !== undefined && !preset) {
    throw invalidField('preset', `must be one of ${Object.keys(OAUTH_PRESETS).join(', ')}`);
  }
  checkExtraParams('extra_params', input.extra_params);
  const id = deps.ids.next('opr');
  const now = deps.clock.now();
  const row: OAuthProviderRow = {
    id,
    tenant_id: tenantId,
    name: input.name,
    preset: input.preset ?? null,
    client_id: input.client_id,
    client_secret_sealed: input.client_secret ? deps.masterKey.seal(input.client_secret, secretAad(id)) : null,
    ...(await endpointsOf(deps, input, preset)),
    scopes: json.write(input.scopes ?? preset?.scopes ?? []),
    pkce: input.pkce === false ? 0 : 1,
    extra_params: json.write(input.extra_params ?? preset?.extra_params ?? {}),
    created_at: now,
    updated_at: now,
  };
  await transaction(deps.db.kysely, async (trx) => {
    await insertOAuthProvider(trx, row);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'oauth_provider.created',
      actor,
      target: { type: 'oauth_provider', id },
      client,
      data: { name: row.name, preset: row.preset },
    });
  });
  return presentOAuthProvider(row);
}

/** Changes fields; a new client_secret replaces the stored one (null removes it). */
export async function updateOAuthProvider(
  deps: Deps,
  tenantId: string,
  id: string,
  input: Partial<Omit<OAuthProviderInput, 'preset'>>,
  actor: Actor,
  client: ClientInfo,
) {
  const row = await requireOAuthProvider(deps, tenantId, id);
  checkExtraParams('extra_params', input.extra_params);
  const changes: Partial<OAuthProviderRow> = { updated_at: deps.clock.now() };
  if (input.name !== undefined) changes.name = input.name;
  if (input.client_id !== undefined) changes.client_id = input.client_id;
  if (input.client_secret !== undefined) {
    changes.client_secret_sealed = input.client_secret
      ? deps.masterKey.seal(input.client_secret, secretAad(row.id))
      : null;
  }
  for (const field of [
    'authorization_endpoint',
    'token_endpoint',
    'revocation_endpoint',
    'userinfo_endpoint',
  ] as const) {
    const value = input[field];
    if (value !== undefined)
      (changes as Record<string, string | null>)[field] = value === null ? null : checkEndpoint(deps, field, value);
  }
  if (input.issuer !== undefined) changes.issuer = input.issuer;
  if (input.scopes !== undefined) changes.scopes = json.write(input.scopes);
  if (input.pkce !== undefined) changes.pkce = input.pkce ? 1 : 0;
  if (input.extra_params !== undefined) changes.extra_params = json.write(input.extra_params);
  await transaction(deps.db.kysely, async (trx) => {
    await updateOAuthProviderRow(trx, tenantId, row.id, changes);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'oauth_provider.updated',
      actor,
      target: { type: 'oauth_provider', id: row.id },
      client,
      data: { fields: Object.keys(input) },
    });
  });
  return presentOAuthProvider({ ...row, ...changes });
}

export async function deleteOAuthProvider(deps: Deps, tenantId: string, id: string, actor: Actor, client: ClientInfo) {
  const row = await requireOAuthProvider(deps, tenantId, id);
  await transaction(deps.db.kysely, async (trx) => {
    await deleteOAuthProviderRow(trx, tenantId, row.id);
    await recordAudit(trx, deps, {
      tenantId,
      action: 'oauth_provider.deleted',
      actor,
      target: { type: 'oauth_provider', id: row.id },
      client,
      data: { name: row.name },
    });
  });
}
