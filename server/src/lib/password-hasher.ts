import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import PQueue from 'p-queue';

export interface HashingOptions {
  memoryCostKiB: number;
  timeCost: number;
  parallelism: number;
  /** Hashes computed at once (the libuv pool runs them off the event loop). */
  concurrency: number;
  /** Hashes allowed to wait; beyond this, callers are refused at once. */
  maxQueue: number;
}

export interface PasswordCheck {
  ok: boolean;
  /** The stored hash uses bcrypt or weaker argon2 parameters: store a fresh hash now. */
  needsRehash: boolean;
  /** The stored hash costs more than Gatehouse verifies (see HASH_COST_BOUNDS): it was not tried. */
  unverifiable?: true;
}

/** Thrown when the hashing queue is full: the caller answers 503 instead of queueing into a timeout. */
export class HasherOverloadedError extends Error {
  constructor() {
    super('Password hashing queue is full');
  }
}

/**
 * The most a stored hash may cost to verify. Hashes come from imports, so their parameters are
 * chosen by whoever made them; one sign-in against `t=2^32-1` or `m=1 GiB` (or bcrypt cost 31)
 * would hold a hashing slot for hours or take a gigabyte. Bounds, generous for real hashes:
 *
 * - argon2: m ≤ 64 MiB, t ≤ 10, p ≤ 4. OWASP's Password Storage Cheat Sheet asks for at least
 *   m=19 MiB, t=2, p=1 (or an equivalent trade, up to m=46 MiB at t=1); RFC 9106 §4's option for
 *   memory-constrained systems is m=64 MiB, t=3, p=4. Salt 8 to 64 bytes, tag 16 to 64 bytes
 *   (RFC 9106 §3.1 recommends 16 and 32).
 * - bcrypt: cost 4 to 14. OWASP asks for at least 10; 14 is 16 times that work (about a second).
 *
 * Gatehouse's own ARGON2_* settings always verify: the bounds grow to include them.
 */
export const HASH_COST_BOUNDS = {
  argon2MemoryKiB: 65_536,
  argon2Iterations: 10,
  argon2Parallelism: 4,
  bcryptCost: 14,
} as const;

type Bounds = { -readonly [K in keyof typeof HASH_COST_BOUNDS]: number };

// PHC string format of argon2 (the reference implementation's encoding); base64 without padding.
const ARGON2 =
  /^\$(argon2id|argon2i|argon2d)\$(?:v=(16|19)\$)?m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const base64Bytes = (text: string) => Math.floor((text.length * 3) / 4);

/**
 * Why Gatehouse would not verify this hash, or null when it would: not an argon2 or bcrypt hash
 * (argon2id only, with `argon2idOnly`), or one that costs more than the bounds.
 */
function hashProblem(text: string, bounds: Bounds, options: { argon2idOnly?: boolean } = {}): string | null {
  const argon2 = ARGON2.exec(text);
  if (argon2) {
    const [, variant, , m, t, p, salt = '', tag = ''] = argon2;
    if (options.argon2idOnly && variant !== 'argon2id') return 'is not an argon2id or bcrypt hash';
    const limits: [string, number, number, number][] = [
      ['memory cost m (KiB)', Number(m), 8, bounds.argon2MemoryKiB],
      ['iterations t', Number(t), 1, bounds.argon2Iterations],
      ['parallelism p', Number(p), 1, bounds.argon2Parallelism],
      ['salt length (bytes)', base64Bytes(salt), 8, 64],
      ['hash length (bytes)', base64Bytes(tag), 16, 64],
    ];
    for (const [what, value, min, max] of limits) {
      if (value < min || value > max) return `has argon2 ${what} ${value}, outside ${min} to ${max}`;
    }
    return null;
  }
  const bcrypt = BCRYPT.exec(text);
  if (bcrypt) {
    const cost = Number(bcrypt[1]);
    if (cost < 4 || cost > bounds.bcryptCost) return `has bcrypt cost ${cost}, outside 4 to ${bounds.bcryptCost}`;
    return null;
  }
  return options.argon2idOnly ? 'is not an argon2id or bcrypt hash' : 'is not an argon2 or bcrypt hash';
}

export interface PasswordHasher {
  /** Hashes for an account of `tenantId` (the queue is shared fairly between tenants). */
  hash(password: string, tenantId: string): Promise<string>;
  verify(storedHash: string, password: string, tenantId: string): Promise<PasswordCheck>;
  /** Spends the same work as a real verify, so unknown accounts cost what known ones do. */
  verifyDummy(password: string, tenantId: string): Promise<void>;
  /**
   * Throws HasherOverloadedError when a hash asked for now by this tenant would be refused.
   * Callers check this before their own database work, so that refusing under overload stays
   * cheap and fast.
   */
  assertCapacity(tenantId: string): void;
  /** Why an imported hash is refused (not argon2id or bcrypt, or beyond the cost bounds), or null. */
  importProblem(hash: string): string | null;
  /** Hashes being computed and waiting now. */
  load(): { running: number; waiting: number };
}

interface Waiter {
  tenantId: string;
  /** Start tag (start-time fair queuing): the queue runs the smallest first. */
  start: number;
  controller: AbortController;
}

/**
 * argon2id hashing with bounded concurrency and a bounded queue (seed 002's semaphore, with the
 * missing half: a full queue answers at once instead of letting requests pile up into timeouts).
 * bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) from imports are verified and flagged for upgrade.
 *
 * The queue is shared fairly between tenants, so that one tenant's flood of sign-ups cannot starve
 * another tenant's sign-ins:
 * - Order: start-time fair queuing. Each tenant's next hash is tagged one after its previous one,
 *   but never before the tag running now; the smallest tag runs first. A tenant with nothing
 *   waiting goes next; tenants with backlogs take turns.
 * - Admission: when the queue is full, a hash of a tenant with fewer waiting than the tenant with
 *   the most evicts that tenant's newest waiting hash (its caller gets 503 overloaded) instead of
 *   being refused, so the full queue is always divided about evenly.
 */
export function createPasswordHasher(options: HashingOptions): PasswordHasher {
  const queue = new PQueue({ concurrency: options.concurrency });
  const params = {
    algorithm: 2, // Algorithm.Argon2id (a const enum, which isolatedModules cannot import)
    memoryCost: options.memoryCostKiB,
    timeCost: options.timeCost,
    parallelism: options.parallelism,
  };
  const paramsTag = `m=${params.memoryCost},t=${params.timeCost},p=${params.parallelism}`;
  const bounds: Bounds = {
    argon2MemoryKiB: Math.max(HASH_COST_BOUNDS.argon2MemoryKiB, options.memoryCostKiB),
    argon2Iterations: Math.max(HASH_COST_BOUNDS.argon2Iterations, options.timeCost),
    argon2Parallelism: Math.max(HASH_COST_BOUNDS.argon2Parallelism, options.parallelism),
    bcryptCost: HASH_COST_BOUNDS.bcryptCost,
  };
  let dummyHash: Promise<string> | undefined;

  const waiting = new Map<string, Waiter[]>();
  /** Per tenant with hashes waiting or running: how many, and the start tag of its latest. */
  const active = new Map<string, { count: number; lastStart: number }>();
  let virtualTime = 0;

  const full = () => queue.pending >= options.concurrency && queue.size >= options.maxQueue;
  const waitingOf = (tenantId: string) => waiting.get(tenantId)?.length ?? 0;
  /** The newest waiting hash of the tenant with the most waiting, if it has more than this tenant would. */
  const evictable = (tenantId: string): Waiter | undefined => {
    let longest: Waiter[] | undefined;
    for (const list of waiting.values()) if (list.length > (longest?.length ?? 0)) longest = list;
    return longest && longest.length > waitingOf(tenantId) + 1 ? longest.at(-1) : undefined;
  };
  const removeWaiter = (waiter: Waiter) => {
    const list = waiting.get(waiter.tenantId);
    const index = list?.indexOf(waiter) ?? -1;
    if (!list || index < 0) return;
    list.splice(index, 1);
    if (list.length === 0) waiting.delete(waiter.tenantId);
  };

  const admit = <T>(tenantId: string, task: () => Promise<T>): Promise<T> => {
    if (full()) {
      const victim = evictable(tenantId);
      if (!victim) return Promise.reject(new HasherOverloadedError());
      removeWaiter(victim);
      victim.controller.abort(new HasherOverloadedError());
    }
    const state = active.get(tenantId) ?? { count: 0, lastStart: Number.NEGATIVE_INFINITY };
    const start = Math.max(virtualTime, state.lastStart + 1);
    active.set(tenantId, { count: state.count + 1, lastStart: start });
    const waiter: Waiter = { tenantId, start, controller: new AbortController() };
    const list = waiting.get(tenantId) ?? [];
    list.push(waiter);
    waiting.set(tenantId, list);
    const run = queue.add(
      () => {
        removeWaiter(waiter);
        virtualTime = Math.max(virtualTime, start);
        return task();
      },
      { priority: -start, signal: waiter.controller.signal },
    ) as Promise<T>;
    return run.finally(() => {
      removeWaiter(waiter);
      const now = active.get(tenantId);
      if (!now || now.count <= 1) active.delete(tenantId);
      else now.count -= 1;
    });
  };

  const verifyArgon2OrBcrypt = (storedHash: string, password: string, tenantId: string): Promise<PasswordCheck> =>
    admit(tenantId, async () => {
      if (storedHash.startsWith('$argon2')) {
        const ok = await argon2Verify(storedHash, password);
        return { ok, needsRehash: ok && !storedHash.includes(paramsTag) };
      }
      // Loaded on first use: only imported accounts carry bcrypt hashes, and only until they sign in.
      const { verify: bcryptVerify } = await import('@node-rs/bcrypt');
      const ok = await bcryptVerify(password, storedHash);
      return { ok, needsRehash: ok };
    });

  const verifyDummy = async (password: string, tenantId: string) => {
    dummyHash ??= argon2Hash('gatehouse-timing-equaliser', params);
    await verifyArgon2OrBcrypt(await dummyHash, password, tenantId);
  };

  return {
    hash: (password, tenantId) => admit(tenantId, () => argon2Hash(password, params)),
    async verify(storedHash, password, tenantId) {
      if (hashProblem(storedHash, bounds) !== null) {
        // Stored before the bounds existed, or by hand: not tried, at the cost of a normal check.
        await verifyDummy(password, tenantId);
        return { ok: false, needsRehash: false, unverifiable: true };
      }
      return verifyArgon2OrBcrypt(storedHash, password, tenantId);
    },
    verifyDummy,
    assertCapacity(tenantId) {
      if (full() && !evictable(tenantId)) throw new HasherOverloadedError();
    },
    importProblem: (hash) => hashProblem(hash, bounds, { argon2idOnly: true }),
    load: () => ({ running: queue.pending, waiting: queue.size }),
  };
}
