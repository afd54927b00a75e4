import { randomBytes, randomInt } from 'node:crypto';
import { transaction } from '../../db/index.js';
import type { DeviceAuthorizationTable } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { ClientInfo } from '../../http/principal.js';
import { sha256 } from '../../lib/tokens.js';
import { findUser } from '../accounts/accounts.repo.js';
import { presentUser } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { startSession } from '../sessions/sessions.service.js';
import { getTenant } from '../tenants/tenants.service.js';
import type { Tenant } from '../tenants/tenants.types.js';

/** RFC 8628 §6.1: consonants only, no vowels (no words) and nothing that reads as another letter or digit. */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const USER_CODE_LENGTH = 8;
const EXPIRES_IN_S = 600;
const INTERVAL_S = 5;
/** RFC 8628 §3.5: each slow_down adds 5 seconds to the interval. */
const SLOW_DOWN_STEP_S = 5;

export type DeviceRow = DeviceAuthorizationTable;

/**
 * The device clients Gatehouse knows, by `client_id`: the only names the approval page shows as
 * names. A public client cannot prove its `client_id` (RFC 8628 §5.4), so this is about who writes
 * the name people read: Gatehouse, not the requester. Gatehouse's own VS Code extension is built in.
 */
const KNOWN_DEVICE_CLIENTS: ReadonlyMap<string, string> = new Map([['gatehouse-vscode', 'Gatehouse for VS Code']]);

/** Which application a device request names: a known name, or null and the raw id it claims (if any). */
export interface DeviceClient {
  name: string | null;
  id: string | null;
}

export function describeDeviceClient(clientId: string): DeviceClient {
  return { name: KNOWN_DEVICE_CLIENTS.get(clientId) ?? null, id: clientId === '' ? null : clientId };
}

/** A user code as people type it: any case, with or without the dash or spaces. */
export function normalizeUserCode(text: string): string {
  return text.toUpperCase().replace(/[^A-Z]/g, '');
}

export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** POST /api/auth/device/code: a device code to poll with and a user code for the person (`clientId` '' when none). */
export async function issueDeviceCode(deps: Deps, tenant: Tenant, clientId: string) {
  const now = deps.clock.now();
  const deviceCode = randomBytes(32).toString('base64url');
  const userCode = Array.from({ length: USER_CODE_LENGTH }, () => USER_CODE_ALPHABET[randomInt(20)]).join('');
  await deps.db.kysely
    .insertInto('device_authorizations')
    .values({
      id: deps.ids.next('dva'),
      tenant_id: tenant.id,
      device_code_hash: sha256(deviceCode),
      user_code: userCode,
      client_id: clientId,
      status: 'pending',
      user_id: null,
      interval_s: INTERVAL_S,
      last_polled_at: null,
      expires_at: now + EXPIRES_IN_S * 1000,
      created_at: now,
      decided_at: null,
    })
    .execute();
  const verificationUri = new URL('/device', deps.config.publicUrl).toString();
  return {
    device_code: deviceCode,
    user_code: formatUserCode(userCode),
    verification_uri: verificationUri,
    verification_uri_complete: `${verificationUri}?user_code=${formatUserCode(userCode)}`,
    expires_in: EXPIRES_IN_S,
    interval: INTERVAL_S,
  };
}

/** An error of the token endpoint in RFC 6749 §5.2 form, as device-flow clients expect it. */
export class DeviceGrantError extends Error {
  constructor(
    readonly error:
      | 'authorization_pending'
      | 'slow_down'
      | 'access_denied'
      | 'expired_token'
      | 'invalid_grant'
      | 'invalid_request'
      | 'unsupported_grant_type',
    readonly description: string,
  ) {
    super(description);
  }
}

/**
 * POST /api/auth/device/token: what RFC 8628 §3.5 says a poll gets. Once approved, the first poll
 * gets a session's tokens (the request is then used up); polling faster than the interval gets
 * slow_down and a longer interval.
 */
export async function pollDeviceToken(deps: Deps, deviceCode: string, client: ClientInfo) {
  const now = deps.clock.now();
  const row = await deps.db.kysely
    .selectFrom('device_authorizations')
    .selectAll()
    .where('device_code_hash', '=', sha256(deviceCode))
    .executeTakeFirst();
  if (!row || row.status === 'used') {
    throw new DeviceGrantError('invalid_grant', 'The device code is unknown or was already used');
  }
  if (row.expires_at <= now) throw new DeviceGrantError('expired_token', 'The device code expired: start again');
  if (row.status === 'denied') throw new DeviceGrantError('access_denied', 'The user denied the request');
  if (row.status === 'pending') {
    const tooSoon = row.last_polled_at !== null && now - row.last_polled_at < row.interval_s * 1000;
    await deps.db.kysely
      .updateTable('device_authorizations')
      .set({ last_polled_at: now, ...(tooSoon && { interval_s: row.interval_s + SLOW_DOWN_STEP_S }) })
      .where('id', '=', row.id)
      .execute();
    if (tooSoon) {
      throw new DeviceGrantError(
        'slow_down',
        `Polled too often: wait ${row.interval_s + SLOW_DOWN_STEP_S} seconds between polls`,
      );
    }
    throw new DeviceGrantError('authorization_pending', 'The user has not approved the request yet');
  }
  const tenant = await getTenant(deps, row.tenant_id);
  const user = row.user_id ? await findUser(deps.db.kysely, row.tenant_id, row.user_id) : undefined;
  if (!tenant || !user || user.disabled_at !== null) {
    throw new DeviceGrantError('access_denied', 'The account that approved the request is disabled or gone');
  }
  return transaction(deps.db.kysely, async (trx) => {
    const taken = await trx
      .updateTable('device_authorizations')
      .set({ status: 'used', last_polled_at: now })
      .where('id', '=', row.id)
      .where('status', '=', 'approved')
      .executeTakeFirst();
    if (Number(taken.numUpdatedRows) !== 1) {
      throw new DeviceGrantError('invalid_grant', 'The device code is unknown or was already used');
    }
    const { sessionId, tokens } = await startSession(trx, deps, { tenant, userId: user.id, client });
    await recordAudit(trx, deps, {
      tenantId: tenant.id,
      action: 'login.succeeded',
      actor: { type: 'user', id: user.id },
      target: { type: 'session', id: sessionId },
      client,
      data: { method: 'device', client_id: row.client_id },
    });
    return { ...tokens, user: presentUser(user) };
  });
}

/** The live, undecided request with this user code, if any. */
export async function findPendingByUserCode(deps: Deps, userCode: string): Promise<DeviceRow | undefined> {
  return deps.db.kysely
    .selectFrom('device_authorizations')
    .selectAll()
    .where('user_code', '=', normalizeUserCode(userCode))
    .where('expires_at', '>', deps.clock.now())
    .where('status', '=', 'pending')
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
}

/** The signed-in person approves or denies the request (once: a decided request stays decided). */
export async function decideDevice(
  deps: Deps,
  row: DeviceRow,
  userId: string,
  decision: 'approve' | 'deny',
  client: ClientInfo,
): Promise<void> {
  const now = deps.clock.now();
  await transaction(deps.db.kysely, async (trx) => {
    const updated = await trx
      .updateTable('device_authorizations')
      .set({ status: decision === 'approve' ? 'approved' : 'denied', user_id: userId, decided_at: now })
      .where('id', '=', row.id)
      .where('status', '=', 'pending')
      .where('expires_at', '>', now)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) !== 1) {
      throw new AppError('conflict', 'This code was already used, or it expired; start again on your device');
    }
    await recordAudit(trx, deps, {
      tenantId: row.tenant_id,
      action: decision === 'approve' ? 'device.approved' : 'device.denied',
      actor: { type: 'user', id: userId },
      client,
      data: { client_id: row.client_id, request: row.id },
    });
  });
}
