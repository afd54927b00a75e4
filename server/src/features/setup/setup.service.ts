import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { ClientInfo } from '../../http/principal.js';
import { SETUP_TOKEN_PREFIX } from '../../lib/key-prefixes.js';
import { randomToken, safeEqual, sha256 } from '../../lib/tokens.js';
import { operatorExists } from '../accounts/accounts.repo.js';
import { assertPasswordAllowed, register } from '../accounts/accounts.service.js';
import { getDefaultTenant } from '../tenants/tenants.service.js';
import { readState, takeState, writeState } from './setup.repo.js';

const STATE_KEY = 'setup_token';

/**
 * First start: while no operator exists, a one-time setup token (no default password) is made,
 * stored hashed, and printed by main.ts. Each start makes a fresh one, so an old printout dies.
 */
export async function issueSetupToken(deps: Deps): Promise<string | null> {
  if (await operatorExists(deps.db.kysely)) return null;
  const token = randomToken(SETUP_TOKEN_PREFIX);
  const expiresAt = deps.clock.now() + deps.config.setupTokenTtlMs;
  await writeState(
    deps.db.kysely,
    STATE_KEY,
    JSON.stringify({ hash: sha256(token), expires_at: expiresAt }),
    deps.clock.now(),
  );
  return token;
}

/**
 * Creates the first operator with the setup token. The token is taken from the database before the
 * account is made (a conditional delete), so parallel requests with one token make one operator;
 * if making the account fails, the token is put back.
 */
export async function completeSetup(
  deps: Deps,
  input: { token: string; email: string; password: string; name?: string },
  client: ClientInfo,
) {
  const invalid = () => new AppError('invalid_token', 'The setup token is invalid, expired or already used');
  const stored = await readState(deps.db.kysely, STATE_KEY);
  const state = stored ? (JSON.parse(stored) as { hash: string; expires_at: number }) : null;
  if (!stored || !state || !safeEqual(state.hash, sha256(input.token)) || state.expires_at <= deps.clock.now()) {
    throw invalid();
  }
  const tenant = await getDefaultTenant(deps);
  if (!tenant) throw new AppError('not_ready', 'The default tenant does not exist yet');
  await assertPasswordAllowed(deps, tenant, input.password);
  if (!(await takeState(deps.db.kysely, STATE_KEY, stored)) || (await operatorExists(deps.db.kysely))) throw invalid();
  try {
    return await register(deps, tenant, input, client, 'operator');
  } catch (error) {
    await writeState(deps.db.kysely, STATE_KEY, stored, deps.clock.now());
    throw error;
  }
}
