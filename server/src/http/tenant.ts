import type { FastifyRequest } from 'fastify';
import type { Deps } from '../deps.js';
import { AppError } from '../errors.js';
import { getDefaultTenant, getTenant, getTenantByPublishableKey } from '../features/tenants/tenants.service.js';
import type { Tenant } from '../features/tenants/tenants.types.js';

export const TENANT_HEADER = 'x-gatehouse-tenant';

async function tenantFromHeader(deps: Deps, value: string, allowId: boolean): Promise<Tenant> {
  const tenant = value.startsWith('pk_')
    ? await getTenantByPublishableKey(deps, value)
    : allowId && value.startsWith('ten_')
      ? await getTenant(deps, value)
      : null;
  if (!tenant) {
    throw new AppError(
      'invalid_tenant',
      `Unknown tenant in ${TENANT_HEADER}: send the tenant's publishable key (pk_…)`,
    );
  }
  return tenant;
}

async function defaultTenant(deps: Deps): Promise<Tenant> {
  const tenant = await getDefaultTenant(deps);
  if (!tenant) throw new AppError('not_ready', 'The default tenant does not exist yet');
  return tenant;
}

/** The tenant of an unauthenticated call: the publishable key in the header, else the default tenant. */
export async function publicTenant(deps: Deps, request: FastifyRequest): Promise<Tenant> {
  const header = request.headers[TENANT_HEADER];
  return typeof header === 'string' && header !== '' ? tenantFromHeader(deps, header, false) : defaultTenant(deps);
}

/**
 * The tenant an authenticated admin or service call acts on: the credential's own tenant, except
 * for operators, who name any tenant in the header (publishable key or id; default tenant if absent).
 */
export async function actingTenant(deps: Deps, request: FastifyRequest): Promise<Tenant> {
  const principal = request.principal;
  if (!principal) throw new AppError('unauthorized', 'Authentication required');
  if (principal.kind === 'user' && principal.role === 'operator') {
    const header = request.headers[TENANT_HEADER];
    return typeof header === 'string' && header !== '' ? tenantFromHeader(deps, header, true) : defaultTenant(deps);
  }
  const tenant = await getTenant(deps, principal.tenantId);
  if (!tenant) throw new AppError('invalid_token', 'The credential belongs to a tenant that no longer exists');
  return tenant;
}
