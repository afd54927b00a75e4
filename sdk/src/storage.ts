/** What a client keeps between calls (and, with a persistent storage, between runs). */
export interface StoredTokens {
  accessToken: string;
  refreshToken: string | null;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
}

/** Where the client keeps its tokens. Methods may be synchronous or return promises. */
export interface TokenStorage {
  get(): StoredTokens | null | Promise<StoredTokens | null>;
  set(tokens: StoredTokens): void | Promise<void>;
  clear(): void | Promise<void>;
}

/** In memory: gone when the process ends (the default). */
export function memoryStorage(): TokenStorage {
  let tokens: StoredTokens | null = null;
  return {
    get: () => tokens,
    set: (next) => {
      tokens = next;
    },
    clear: () => {
      tokens = null;
    },
  };
}

/** In the browser's localStorage (or any Storage), under `key`. */
export function browserStorage(key = 'gatehouse.tokens', storage: Storage = globalThis.localStorage): TokenStorage {
  return {
    get: () => {
      const text = storage.getItem(key);
      if (!text) return null;
      try {
        return JSON.parse(text) as StoredTokens;
      } catch {
        return null;
      }
    },
    set: (tokens) => storage.setItem(key, JSON.stringify(tokens)),
    clear: () => storage.removeItem(key),
  };
}

/** In a JSON file readable by its owner only (0600), for CLIs and scripts on Node. */
export function fileStorage(path: string): TokenStorage {
  // A specifier bundlers do not follow: browser bundles of the SDK must not need node:fs.
  const specifier = 'node:fs/promises';
  const fs = import(specifier) as Promise<typeof import('node:fs/promises')>;
  return {
    async get() {
      try {
        return JSON.parse(await (await fs).readFile(path, 'utf8')) as StoredTokens;
      } catch {
        return null;
      }
    },
    async set(tokens) {
      const { writeFile, chmod } = await fs;
      await writeFile(path, JSON.stringify(tokens), { mode: 0o600 });
      await chmod(path, 0o600);
    },
    async clear() {
      await (await fs).rm(path, { force: true });
    },
  };
}
