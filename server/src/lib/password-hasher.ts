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
}

/** Thrown when the hashing queue is full: the caller answers 503 instead of queueing into a timeout. */
export class HasherOverloadedError extends Error {
  constructor() {
    super('Password hashing queue is full');
  }
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(storedHash: string, password: string): Promise<PasswordCheck>;
  /** Spends the same work as a real verify, so unknown accounts cost what known ones do. */
  verifyDummy(password: string): Promise<void>;
  /**
   * Throws HasherOverloadedError when a hash asked for now would be refused. Callers check this
   * before their own database work, so that refusing under overload stays cheap and fast.
   */
  assertCapacity(): void;
}

/**
 * argon2id hashing with bounded concurrency and a bounded queue (seed 002's semaphore, with the
 * missing half: a full queue answers at once instead of letting requests pile up into timeouts).
 * bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) from imports are verified and flagged for upgrade.
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
  let dummyHash: Promise<string> | undefined;

  const full = () => queue.pending >= options.concurrency && queue.size >= options.maxQueue;
  const admit = <T>(task: () => Promise<T>): Promise<T> => {
    if (full()) return Promise.reject(new HasherOverloadedError());
    return queue.add(task) as Promise<T>;
  };

  const verify = (storedHash: string, password: string): Promise<PasswordCheck> =>
    admit(async () => {
      if (storedHash.startsWith('$argon2')) {
        const ok = await argon2Verify(storedHash, password);
        return { ok, needsRehash: ok && !storedHash.includes(paramsTag) };
      }
      if (/^\$2[aby]\$\d\d\$/.test(storedHash)) {
        // Loaded on first use: only imported accounts carry bcrypt hashes, and only until they sign in.
        const { verify: bcryptVerify } = await import('@node-rs/bcrypt');
        const ok = await bcryptVerify(password, storedHash);
        return { ok, needsRehash: ok };
      }
      return { ok: false, needsRehash: false };
    });

  return {
    hash: (password) => admit(() => argon2Hash(password, params)),
    verify,
    async verifyDummy(password) {
      dummyHash ??= argon2Hash('gatehouse-timing-equaliser', params);
      await verify(await dummyHash, password);
    },
    assertCapacity() {
      if (full()) throw new HasherOverloadedError();
    },
  };
}

/** True when the text looks like a hash this hasher can verify (for imports). */
export function isSupportedHash(text: string): boolean {
  return text.startsWith('$argon2id$') || /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(text);
}
