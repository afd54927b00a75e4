import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseDuration } from './lib/duration.js';
import { type Network, parseNetworks } from './lib/outbound.js';

/**
 * The only reader of process.env. Every setting is parsed here, every problem is collected,
 * and all of them are reported in one message (issue 2: "validated at start with every problem
 * listed in one message").
 */
export interface Config {
  nodeEnv: 'development' | 'production' | 'test';
  port: number;
  host: string;
  publicUrl: string;
  /** PostgreSQL URL; absent → SQLite under dataDir. */
  databaseUrl?: string;
  dataDir: string;
  redisUrl?: string;
  /** base64 or hex 32-byte key; absent only in development, where main.ts generates one. */
  masterKey?: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Which peers may set the client address through X-Forwarded-For (Fastify's trustProxy): false
   * (none, the default) or the proxies' addresses and networks.
   */
  trustProxy: false | string[];
  /** A request (headers and body) must have arrived within this long, or it is cut with 408. */
  requestTimeoutMs: number;
  /** Defaults for each tenant; tenants may override lifetimes in their settings. */
  tokens: {
    accessTtlMs: number;
    refreshIdleTtlMs: number;
    refreshAbsoluteTtlMs: number;
    refreshGraceMs: number;
    /** Upper bound for any tenant's access TTL: how long a retired signing key stays in the JWKS. */
    maxAccessTtlMs: number;
  };
  apiKeys: { rotationOverlapMs: number };
  /** How long another instance may serve a revoked credential from its cache (0 disables caching). */
  authCacheTtlMs: number;
  hashing: {
    memoryCostKiB: number;
    timeCost: number;
    parallelism: number;
    concurrency: number;
    maxQueue: number;
  };
  setupTokenTtlMs: number;
  /** Sign-ups one client address (an IPv6 /64) may make per hour, over all tenants. */
  signUpsPerIpHourly: number;
  limits: {
    /** Plan and key limits are enforced (off only where an edge proxy limits instead; logged loudly). */
    enabled: boolean;
    /** With Redis unreachable: 'open' keeps serving with per-instance counters, 'closed' refuses limited requests. */
    onStoreFailure: 'open' | 'closed';
    /** How long a token reservation holds budget when it is never settled or released. */
    reservationTtlMs: number;
  };
  /** Networks outside public unicast that outbound calls (LLM providers) may reach; none by default. */
  outboundAllowedNetworks: Network[];
  webhooks: {
    /** Per delivery attempt, answer included. */
    timeoutMs: number;
    /** After a secret rotation, deliveries carry both signatures this long. */
    secretOverlapMs: number;
  };
  vault: {
    /** OAuth connections are refreshed this long before they expire (on read, and in the background). */
    refreshSkewMs: number;
  };
  realtime: {
    /** How live messages reach the other instances; 'auto': Redis when set, else PostgreSQL when that is the database, else this process only. */
    broker: 'auto' | 'redis' | 'postgres' | 'local';
    /** A reconnecting client is given what it missed if it was gone at most this long. */
    resumeWindowMs: number;
    /** A socket that has not authenticated by then is closed. */
    authTimeoutMs: number;
    /** Ping interval; a socket that did not answer the previous ping is dropped. */
    heartbeatMs: number;
  };
  llm: {
    /** Per provider attempt, until the answer's head arrives; then the next provider is tried. */
    upstreamTimeoutMs: number;
    /** Consecutive failures after which a provider is skipped (circuit open)… */
    breakerFailures: number;
    /** …for this long, before one trial call is let through. */
    breakerCooldownMs: number;
  };
  /** PostgreSQL: how long a connect and a statement may take (a hung database answers 503, not never). */
  database: { connectTimeoutMs: number; statementTimeoutMs: number };
  /**
   * Who may read /metrics: callers with this bearer token on the main port, and anyone reaching
   * `port` (a management port to keep off the internet). Neither: /metrics answers 404.
   */
  metrics: { token?: string; port?: number };
  /** On SIGTERM: how long requests and streams in flight may take before they are cut. */
  shutdownTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

type Env = Record<string, string | undefined>;

/** Loads `.env` from the working directory when present (process env wins over it). */
export function loadDotEnv(path = '.env'): void {
  if (existsSync(path)) process.loadEnvFile(path);
}

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = (name: string) => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = read(name) ?? fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
    return fallback;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const text = read(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (Number.isInteger(value) && value >= min && value <= max) return value;
    problems.push(`${name} must be an integer from ${min} to ${max} (got "${text}")`);
    return fallback;
  };
  const duration = (name: string, fallback: string, minMs = 1000): number => {
    const text = read(name) ?? fallback;
    const value = parseDuration(text);
    if (value !== null && value >= minMs) return value;
    problems.push(`${name} must be a duration such as 900, 15m, 7d (at least ${minMs} ms; got "${text}")`);
    return parseDuration(fallback) ?? minMs;
  };
  const url = (name: string): string | undefined => {
    const text = read(name);
    if (text === undefined) return undefined;
    try {
      return new URL(text).toString();
    } catch {
      problems.push(`${name} must be a URL (got "${text}")`);
      return undefined;
    }
  };

  const nodeEnv = oneOf('NODE_ENV', ['development', 'production', 'test'] as const, 'development');
  const port = integer('PORT', 8080, 0, 65535);
  const publicUrl = url('PUBLIC_URL');
  const databaseUrl = url('DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:/.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// URL (leave it unset for the embedded SQLite database)');
  }
  const masterKey = read('GATEHOUSE_MASTER_KEY');
  if (masterKey !== undefined && decodeMasterKey(masterKey) === null) {
    problems.push(
      'GATEHOUSE_MASTER_KEY must be 32 bytes as base64 or 64 hex characters (generate one: openssl rand -base64 32)',
    );
  }
  if (nodeEnv === 'production') {
    if (!masterKey) problems.push('GATEHOUSE_MASTER_KEY is required when NODE_ENV=production');
    if (!publicUrl) problems.push('PUBLIC_URL is required when NODE_ENV=production');
  }

  const accessTtlMs = duration('ACCESS_TOKEN_TTL', '15m', 60_000);
  const maxAccessTtlMs = duration('MAX_ACCESS_TOKEN_TTL', '24h', 60_000);
  if (accessTtlMs > maxAccessTtlMs) problems.push('ACCESS_TOKEN_TTL must not exceed MAX_ACCESS_TOKEN_TTL');
  const refreshIdleTtlMs = duration('REFRESH_TOKEN_IDLE_TTL', '7d', 60_000);
  const refreshAbsoluteTtlMs = duration('REFRESH_TOKEN_ABSOLUTE_TTL', '30d', 60_000);
  if (refreshIdleTtlMs > refreshAbsoluteTtlMs) {
    problems.push('REFRESH_TOKEN_IDLE_TTL must not exceed REFRESH_TOKEN_ABSOLUTE_TTL');
  }
  const cores = availableParallelism();
  let outboundAllowedNetworks: Network[] = [];
  try {
    outboundAllowedNetworks = parseNetworks(read('OUTBOUND_ALLOWED_NETWORKS') ?? '');
  } catch (error) {
    problems.push(`OUTBOUND_ALLOWED_NETWORKS: ${(error as Error).message}`);
  }

  const metricsToken = read('METRICS_TOKEN');
  // OWASP ASVS 5.0 V6.2.1 (a secret of at least 128 bits): 22 base64 characters or more.
  if (metricsToken !== undefined && metricsToken.length < 22) {
    problems.push('METRICS_TOKEN must be at least 22 characters (generate one: openssl rand -base64 24)');
  }
  const metricsPort = read('METRICS_PORT') === undefined ? undefined : integer('METRICS_PORT', 0, 1, 65535);
  if (metricsPort !== undefined && metricsPort === port) problems.push('METRICS_PORT must differ from PORT');

  const config: Config = {
    nodeEnv,
    port,
    host: read('HOST') ?? '0.0.0.0',
    publicUrl: (publicUrl ?? `http://localhost:${port}`).replace(/\/$/, ''),
    databaseUrl,
    dataDir: read('DATA_DIR') ?? './data',
    redisUrl: url('REDIS_URL'),
    masterKey,
    logLevel: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    trustProxy: parseTrustProxy(read('TRUST_PROXY'), problems),
    requestTimeoutMs: duration('REQUEST_TIMEOUT', '30s', 100),
    tokens: {
      accessTtlMs,
      refreshIdleTtlMs,
      refreshAbsoluteTtlMs,
      refreshGraceMs: duration('REFRESH_TOKEN_GRACE', '10s', 0),
      maxAccessTtlMs,
    },
    apiKeys: { rotationOverlapMs: duration('API_KEY_ROTATION_OVERLAP', '24h', 0) },
    authCacheTtlMs: duration('AUTH_CACHE_TTL', '2s', 0),
    hashing: {
      // OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
      memoryCostKiB: integer('ARGON2_MEMORY_KIB', 19_456, 1024, 4_194_304),
      timeCost: integer('ARGON2_ITERATIONS', 2, 1, 100),
      parallelism: integer('ARGON2_PARALLELISM', 1, 1, 16),
      concurrency: integer('HASH_CONCURRENCY', cores, 1, 256),
      maxQueue: integer('HASH_QUEUE_MAX', cores * 8, 0, 100_000),
    },
    setupTokenTtlMs: duration('SETUP_TOKEN_TTL', '24h', 60_000),
    signUpsPerIpHourly: integer('SIGNUP_LIMIT_PER_IP', 20, 1, 1_000_000),
    limits: {
      enabled: oneOf('RATE_LIMITS', ['on', 'off'] as const, 'on') === 'on',
      onStoreFailure: oneOf('RATE_LIMIT_STORE_FAILURE', ['open', 'closed'] as const, 'open'),
      reservationTtlMs: duration('TOKEN_RESERVATION_TTL', '10m', 1000),
    },
    outboundAllowedNetworks,
    webhooks: {
      timeoutMs: duration('WEBHOOK_TIMEOUT', '15s', 100),
      secretOverlapMs: duration('WEBHOOK_SECRET_OVERLAP', '24h', 0),
    },
    vault: { refreshSkewMs: duration('VAULT_REFRESH_SKEW', '5m', 0) },
    realtime: {
      broker: oneOf('REALTIME_BROKER', ['auto', 'redis', 'postgres', 'local'] as const, 'auto'),
      resumeWindowMs: duration('REALTIME_RESUME_WINDOW', '5m', 1000),
      authTimeoutMs: duration('REALTIME_AUTH_TIMEOUT', '10s', 100),
      heartbeatMs: duration('REALTIME_HEARTBEAT', '25s', 100),
    },
    llm: {
      upstreamTimeoutMs: duration('LLM_UPSTREAM_TIMEOUT', '60s', 100),
      breakerFailures: integer('LLM_BREAKER_FAILURES', 5, 1, 1000),
      breakerCooldownMs: duration('LLM_BREAKER_COOLDOWN', '30s', 100),
    },
    database: {
      connectTimeoutMs: duration('DATABASE_CONNECT_TIMEOUT', '5s', 100),
      statementTimeoutMs: duration('DATABASE_STATEMENT_TIMEOUT', '30s', 100),
    },
    metrics: { token: metricsToken, port: metricsPort },
    shutdownTimeoutMs: duration('SHUTDOWN_TIMEOUT', '10s', 0),
  };
  if (config.realtime.broker === 'redis' && !config.redisUrl) problems.push('REALTIME_BROKER=redis needs REDIS_URL');
  if (config.realtime.broker === 'postgres' && !config.databaseUrl) {
    problems.push('REALTIME_BROKER=postgres needs DATABASE_URL (PostgreSQL)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** proxy-addr's names for ranges (Fastify's trustProxy understands them as well as addresses). */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * TRUST_PROXY: `false` (default) or a comma-separated list of the proxies' addresses or networks
 * (`10.0.0.0/8,127.0.0.1`, or proxy-addr's `loopback`, `linklocal`, `uniquelocal`). `true` is
 * refused: it would believe an X-Forwarded-For sent by anyone, so sign-in, sign-up and device limits
 * would be keyed by an address the client chose. So is a hop count: it cannot tell a proxy from a
 * client that writes enough addresses itself, and Fastify 5 ignores one (it trusts no peer then).
 */
function parseTrustProxy(text: string | undefined, problems: string[]): false | string[] {
  if (text === undefined || text === 'false') return false;
  const fix = 'set the addresses or networks of your proxies instead, e.g. TRUST_PROXY=10.0.0.0/8,127.0.0.1';
  if (text === 'true') {
    problems.push(`TRUST_PROXY=true would trust an X-Forwarded-For sent by any client; ${fix}`);
    return false;
  }
  if (/^\d+$/.test(text)) {
    problems.push(`TRUST_PROXY=${text}: a hop count cannot tell a proxy from a client; ${fix}`);
    return false;
  }
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of entries) {
    if (PROXY_RANGE_NAMES.has(entry)) continue;
    try {
      parseNetworks(entry);
    } catch (error) {
      problems.push(`TRUST_PROXY: ${(error as Error).message}; ${fix}`);
      return false;
    }
  }
  return entries;
}

/** Decodes a 32-byte master key from base64(url) or hex; null when it is not one. */
export function decodeMasterKey(text: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const key = Buffer.from(text, 'base64');
    return key.length === 32 ? key : null;
  }
  return null;
}
