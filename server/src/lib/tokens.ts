import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Encodes bytes as base62 (big-endian), padded to `length` characters. */
function toBase62(bytes: Buffer, length: number): string {
  let n = BigInt(`0x${bytes.toString('hex') || '0'}`);
  let out = '';
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(length, '0');
}

/** CRC32 of the body as 6 base62 characters (62^6 > 2^32), in plain number arithmetic. */
function checksumOf(body: string): string {
  let n = crc32(body) >>> 0;
  let out = '';
  for (let i = 0; i < 6; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/**
 * Creates a secret of the form `<prefix>_<32 base62 chars><6 char CRC32>`.
 * The body is 23 random bytes (184 bits, ≥128 as DESIGN requires) in 32 base62 characters
 * (62^32 > 2^184, so it always fits: 24 bytes would not);
 * the CRC32 tail lets secret scanners and our own verifier reject typos and fakes without a
 * database lookup, the way GitHub's token format does.
 */
export function createSecret(prefix: string): string {
  const body = toBase62(randomBytes(23), 32);
  return `${prefix}_${body}${checksumOf(`${prefix}_${body}`)}`;
}

/** True when `secret` has the given prefix, the right length and a matching checksum. */
export function hasValidChecksum(secret: string, prefix: string): boolean {
  if (secret.length !== prefix.length + 1 + 38 || !secret.startsWith(`${prefix}_`)) return false;
  const body = secret.slice(0, -6);
  return checksumOf(body) === secret.slice(-6);
}

/** The short, non-secret beginning of a secret shown in lists (`gk_AbC123`). */
export function visibleStart(secret: string): string {
  const underscore = secret.indexOf('_');
  return secret.slice(0, underscore + 7);
}

/** Hex SHA-256: how every token and key is stored (DESIGN: no usable secret in any table). */
export function sha256(value: string): string {
  return hash('sha256', value, 'hex');
}

/** Constant-time string comparison. */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** Opaque random token (base64url) of `bytes` random bytes, for refresh tokens and one-time codes. */
export function randomToken(prefix: string, bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}
