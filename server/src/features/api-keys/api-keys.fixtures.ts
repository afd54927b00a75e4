import assert from 'node:assert/strict';
import type { Harness } from '../../../test/harness.js';
import { createSecret } from '../../lib/tokens.js';

/** A key as POST /api/keys answers it. */
export interface IssuedKey {
  id: string;
  name: string;
  start: string;
  scopes: string[];
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  key: string;
}

/** Calls of the API-key routes, shared by the API-key test files (`harness` is read at call time). */
export function keyCalls(harness: () => Harness) {
  const h = { request: (...args: Parameters<Harness['request']>) => harness().request(...args) };
  return {
    me: (token: string) => h.request({ method: 'GET', url: '/api/auth/me', token }),
    list: (token: string) => h.request({ method: 'GET', url: '/api/keys', token }),
    remove: (token: string, id: string) => h.request({ method: 'DELETE', url: `/api/keys/${id}`, token }),
    verify: (serviceKey: string, key: string) =>
      h.request({ method: 'POST', url: '/api/keys/verify', token: serviceKey, body: { key } }),
    async createKey(token: string, body: Record<string, unknown> = { name: 'test key' }): Promise<IssuedKey> {
      const res = await h.request({ method: 'POST', url: '/api/keys', token, body });
      assert.equal(res.status, 201, res.text);
      return res.body;
    },
    async rotate(token: string, id: string, body?: Record<string, unknown>) {
      const res = await h.request({ method: 'POST', url: `/api/keys/${id}/rotate`, token, body });
      assert.equal(res.status, 201, res.text);
      return res.body as IssuedKey & { previous_key_expires_at: string };
    },
  };
}

/** A well-formed key (valid checksum) that the server never issued. */
export const unknownKey = () => createSecret('gk');
