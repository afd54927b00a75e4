import { decodeTime, encodeTime } from 'ulid';
import { json } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import type { FeedEvent } from './bus.js';

/** An offset is an event id (`evt_` and a lower-case ULID): its first ten characters are its time. */
export const OFFSET_PATTERN = /^evt_[0-9a-hjkmnp-tv-z]{26}$/;

/**
 * On PostgreSQL two transactions can commit in the other order than their events' ids were
 * made, within the time a commit takes; replay starts this long before the offset so such an
 * event is not skipped (the client drops the repeats by id). SQLite has one writer: commit
 * order is id order there.
 */
const PG_REPLAY_OVERLAP_MS = 1_000;
/** More missed events than this and the client is told to reload its state instead. */
const REPLAY_MAX = 1_000;

/** The feed's position at `ms`: every event made later has a greater id. */
export function positionAt(ms: number): string {
  return `evt_${encodeTime(Math.max(0, ms), 10).toLowerCase()}${'0'.repeat(16)}`;
}

export interface Replay {
  recovered: boolean;
  events: FeedEvent[];
}

/**
 * What a user missed since `offset`, from the events outbox: `recovered: false` (and nothing)
 * when the offset is older than the resume window or more was missed than is worth replaying;
 * the client then reloads what it shows (Socket.IO's connection-state recovery, Centrifugo's
 * `recovered` flag).
 */
export async function replaySince(deps: Deps, tenantId: string, userId: string, offset: string): Promise<Replay> {
  const now = deps.clock.now();
  const at = decodeTime(offset.slice(4));
  if (at < now - deps.config.realtime.resumeWindowMs) return { recovered: false, events: [] };
  const rows = await deps.db.kysely
    .selectFrom('events')
    .select(['id', 'type', 'data', 'created_at'])
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('id', '>', deps.db.dialect === 'postgres' ? positionAt(at - PG_REPLAY_OVERLAP_MS) : offset)
    .where('id', '!=', offset)
    .orderBy('id')
    .limit(REPLAY_MAX + 1)
    .execute();
  if (rows.length > REPLAY_MAX) return { recovered: false, events: [] };
  return {
    recovered: true,
    events: rows.map((row) => ({
      id: row.id,
      type: row.type,
      timestamp: new Date(row.created_at).toISOString(),
      data: json.read<Record<string, unknown>>(row.data, {}),
    })),
  };
}
