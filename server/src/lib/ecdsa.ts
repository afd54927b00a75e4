/**
 * ECDSA signatures are malleable: for a valid (r, s), (r, n − s) verifies too. Gatehouse signs and
 * accepts only the low-S form (s ≤ n/2, as BIP 62 and libsecp256k1 require), so an access token
 * has exactly one valid encoding and a twin cannot slip past anything keyed by the token's text
 * (the verified-token cache, logs, a denylist).
 */

/** The order n of the P-256 group (SEC 2 §2.4.2; FIPS 186-4 D.1.2.3), used by ES256. */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const P256_HALF_ORDER = P256_ORDER >> 1n;
const SCALAR_BYTES = 32;

const scalar = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);

/** True for a raw ES256 signature (r ‖ s, 64 bytes; RFC 7518 §3.4) whose s is in the lower half. */
export function isLowS(signature: Uint8Array): boolean {
  if (signature.length !== 2 * SCALAR_BYTES) return false;
  return scalar(signature.subarray(SCALAR_BYTES)) <= P256_HALF_ORDER;
}

/** The low-S form of a raw ES256 signature: (r, n − s) when s is in the upper half, else itself. */
export function toLowS(signature: Uint8Array): Buffer {
  const buffer = Buffer.from(signature);
  if (signature.length !== 2 * SCALAR_BYTES || isLowS(signature)) return buffer;
  const flipped = (P256_ORDER - scalar(signature.subarray(SCALAR_BYTES))).toString(16).padStart(2 * SCALAR_BYTES, '0');
  Buffer.from(flipped, 'hex').copy(buffer, SCALAR_BYTES);
  return buffer;
}
