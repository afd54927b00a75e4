import type { Kysely } from 'kysely';
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
  let pending = new Map<string, { table: Table; id: string; at: number }>();
  return {
    mark(table, id, at) {
      pending.set(`${table}:${id}`, { table, id, at });
    },
    async flush() {
      if (pending.size === 0) return;
      const batch = [...pending.values()];
      pending = new Map();
      await db.transaction().execute(async (trx) => {
        for (const { table, id, at } of batch) {
          await trx.updateTable(table).set({ last_used_at: at }).where('id', '=', id).execute();
        }
      });
    },
  };
}
