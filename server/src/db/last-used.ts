import type { Kysely } from 'kysely';
import { transaction } from './index.js';
import type { Database } from './schema.js';

type Table = 'api_keys' | 'service_keys';

/**
 * Keeps `last_used_at` without a database write per request (issue 2): uses are noted in memory
 * and written in one transaction every few seconds and at shutdown. The value may lag by the
 * flush interval, which is what "last used" needs.
 */
export interface LastUsedBuffer {
  mark(table: Table, id: string, at: number): void;
  flush(): Promise<void>;
}

export function createLastUsedBuffer(db: Kysely<Database>): LastUsedBuffer {
  // Marked on every authenticated request: one Map write, no allocation.
  let pending = { api_keys: new Map<string, number>(), service_keys: new Map<string, number>() };
  return {
    mark(table, id, at) {
      pending[table].set(id, at);
    },
    async flush() {
      const batch = pending;
      if (batch.api_keys.size === 0 && batch.service_keys.size === 0) return;
      pending = { api_keys: new Map(), service_keys: new Map() };
      await transaction(db, async (trx) => {
        for (const table of ['api_keys', 'service_keys'] as const) {
          // In id order, so two instances flushing at once lock rows in the same order (no deadlock).
          for (const [id, at] of [...batch[table]].sort(([a], [b]) => (a < b ? -1 : 1))) {
            await trx.updateTable(table).set({ last_used_at: at }).where('id', '=', id).execute();
          }
        }
      });
    },
  };
}
