import { open, seal } from './aead.js';

/** Seals and opens secrets at rest under the instance master key (AES-256-GCM, see aead.ts). */
export interface MasterKey {
  seal(plaintext: string | Buffer, aad: string): string;
  open(sealed: string, aad: string): Buffer;
}

export function createMasterKey(key: Buffer): MasterKey {
  if (key.length !== 32) throw new Error('The master key must be 32 bytes');
  return { seal: (plaintext, aad) => seal(key, plaintext, aad), open: (sealed, aad) => open(key, sealed, aad) };
}
