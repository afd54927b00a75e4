import { transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { ClientInfo } from '../../http/principal.js';
import { SETUP_TOKEN_PREFIX } from '../../lib/key-prefixes.js';
import { randomToken, sha256 } from '../../lib/tokens.js';
import { operatorExists } from '../accounts/accounts.repo.js';
import { hashNewPassword, insertRegistration } from '../accounts/accounts.service.js';
import { getDefaultTenant } from '../tenants/tenants.service.js';
import {
  deleteSetupTokens,
  findSetupToken,
  insertSetupToken,
  listSetupTokens,
  takeAllSetupTokens,
} from './setup.repo.js';

/** Tokens kept at once; an older printout than the newest this many dies (a restart loop stays bounded). */
const MAX_SETUP_TOKENS = 20;

/**
 * First start: while no operator exists, each start makes a one-time setup token (no default
 * password), stored hashed, and main.ts prints it. Several instances may start at once, each
 * printing its own: every printed token works until it expires or the first operator is created
 * with any of them, which ends them all. Expired tokens, and the oldest beyond MAX_SETUP_TOKENS,
 * are dropped here.
 */
export async function issueSetupToken(deps: Deps): Promise<string | null> {
  const db = deps.db.kysely;
  const now = deps.clock.now();
  const existing = await listSetupTokens(db);
  if (await operatorExists(db)) {
    if (existing.length > 0)
      await deleteSetupTokens(
        db,
        existing.map((t) => t.hash),
      );
    return null;
  }
  const stale = existing
    .sort((a, b) => b.expiresAt - a.expiresAt)
    .filter((t, i) => t.expiresAt <= now || i >= MAX_SETUP_TOKENS - 1);
  await deleteSetupTokens(
    db,
    stale.map((t) => t.hash),
  );
  const token = randomToken(SETUP_TOKEN_PREFIX);
  await insertSetupToken(db, { hash: sha256(token), expiresAt: now + deps.config.setupTokenTtlMs }, now);
  return token;
}

/**
 * Creates the first operator with a setup token. The token is looked up by its SHA-256 (256
 * random bits: nothing to learn from timing). Then, in one transaction, every setup token is
 * taken and the account made: parallel requests, with one token or with tokens of different
 * instances, make one operator (the others find the tokens gone and get 401); if making the
 * account fails, the rollback puts the tokens back.
 */
export async function completeSetup(
  deps: Deps,
  input: { token: string; email: string; password: string; name?: string },
  client: ClientInfo,
) {
  const invalid = () => new AppError('invalid_token', 'The setup token is invalid, expired or already used');
  const hash = sha256(input.token);
  const live = (t: { expiresAt: number } | null | undefined) =>
    t !== null && t !== undefined && t.expiresAt > deps.clock.now();
  if (!live(await findSetupToken(deps.db.kysely, hash))) throw invalid();
  const tenant = await getDefaultTenant(deps);
  if (!tenant) throw new AppError('not_ready', 'The default tenant does not exist yet');
  const passwordHash = await hashNewPassword(deps, tenant, input.password);
  return transaction(deps.db.kysely, async (trx) => {
    const taken = await takeAllSetupTokens(trx);
    if (!live(taken.find((t) => t.hash === hash)) || (await operatorExists(trx))) throw invalid();
    return insertRegistration(trx, deps, tenant, { ...input, passwordHash }, client, 'operator');
  });
}
