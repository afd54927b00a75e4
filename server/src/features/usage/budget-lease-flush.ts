import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { addToBudget, type BudgetRow, chargedAtExpiry, shrinkLease } from './budget.repo.js';
import { checkExhausted, forgetBudget } from './budget.service.js';
import { LEASE_IDLE_MS, LEASE_TTL_MS, type Lease, loseRow } from './budget-leases.js';

// The budget leases' part of the one-second usage flush (ADR 0011): what each lease writes, in
// the flush's transaction, and what the lease takes from it once committed or undoes if not.

/** One lease's part of a flush. */
interface LeaseWrite {
  lease: Lease;
  id: string | null;
  charged: number;
  /** Tokens the lease row gives back (negative: takes, to cover calls in flight after an overuse). */
  returned: number;
  close: boolean;
  expiresAt: number;
}

/**
 * Takes what each lease has to write: its charges, and how much its row gives back (or takes:
 * when calls used more than they held, the row still covers every call in flight, and the
 * budget counts the overuse as it counts any charge, in full). The row keeps the calls in flight
 * and about two flushes of demand; nothing once idle or with `final`. Holds past
 * TOKEN_RESERVATION_TTL that were never settled are dropped, as the sweeper expires a direct
 * reservation. A lease whose slice is growing is left for the next flush. Applied at once in
 * memory; `restoreLeases` undoes it.
 */
export function drainLeases(deps: Deps, options: { final?: boolean } = {}): LeaseWrite[] {
  const now = deps.clock.now();
  const writes: LeaseWrite[] = [];
  for (const lease of deps.budgetLeases.leases.values()) {
    if (lease.inGrow) continue;
    for (const hold of lease.holds) {
      if (hold.expiresAt > now) continue;
      hold.open = false;
      lease.held -= hold.tokens;
      lease.holds.delete(hold);
    }
    lease.rate = Math.max(lease.demand, Math.floor(lease.rate / 2));
    lease.demand = 0;
    const idle = lease.held === 0 && lease.growing === 0 && (options.final || now - lease.lastUsed >= LEASE_IDLE_MS);
    let size = 0;
    if (lease.id !== null && lease.limit !== null && !idle) {
      const spare = Math.max(0, lease.granted - lease.charged - lease.held);
      size = lease.held + Math.min(spare, 2 * lease.rate);
    }
    const returned = lease.granted - size;
    const close = lease.id !== null && size === 0 && lease.growing === 0;
    const renew = lease.id !== null && lease.validUntil - now < LEASE_TTL_MS / 2;
    if (lease.charged === 0 && returned === 0 && !close && !renew) {
      // Kept while an expired slice's charge still covers calls of its period.
      const covering = lease.cover > 0 && now < lease.period.end;
      if (idle && lease.id === null && lease.flushing === null && !covering) deps.budgetLeases.leases.delete(lease.key);
      continue;
    }
    writes.push({ lease, id: lease.id, charged: lease.charged, returned, close, expiresAt: now + LEASE_TTL_MS });
    lease.flushing = { charged: lease.charged, returned };
    lease.charged = 0;
    lease.granted = size;
    if (close) lease.id = null;
  }
  // Budget rows in one order on every instance, so two flushes never wait on each other in a circle.
  return writes.sort((a, b) => (a.lease.key < b.lease.key ? -1 : 1));
}

/** Writes the drained leases in the flush's transaction; returns each budget row as written. */
export async function writeLeases(trx: Kysely<Database>, deps: Deps, writes: LeaseWrite[]) {
  const now = deps.clock.now();
  const rows: { write: LeaseWrite; row: BudgetRow | undefined; alive: boolean; lost: number }[] = [];
  for (const write of writes) {
    const { lease } = write;
    let fromRow = 0;
    let alive = false;
    let lost = 0;
    if (write.id !== null) {
      const left = await shrinkLease(trx, lease.budget.tenantId, write.id, {
        tokens: write.returned,
        expiresAt: write.expiresAt,
        close: write.close,
        now,
      });
      alive = left !== undefined;
      // A closed row gives back everything it still held (nothing, unless this instance lost count).
      if (left !== undefined) fromRow = write.returned + (write.close ? left : 0);
      // Expired before this instance renewed it (ADR 0011): it was charged in full, these charges with it.
      else lost = await chargedAtExpiry(trx, lease.budget.tenantId, write.id);
    }
    const covered = Math.min(lost, write.charged);
    // The row exists: every lease read or grew it before its first call (none once the user is deleted).
    const row = await addToBudget(trx, lease.budget, {
      reserved: -fromRow,
      used: write.charged - covered,
      limit: null,
      now,
    });
    await checkExhausted(trx, deps, lease.owner, row);
    rows.push({ write, row, alive, lost: lost - covered });
  }
  return rows;
}

/** The flush committed: the leases take the rows as written. */
export function commitLeases(deps: Deps, written: Awaited<ReturnType<typeof writeLeases>>): void {
  for (const { write, row, alive, lost } of written) {
    const { lease } = write;
    lease.flushing = null;
    if (row) lease.row = row;
    if (write.id !== null && !alive) {
      // The row expired first (charged in full): calls go to the database until a new one.
      loseRow(lease, write.id, lost);
    } else if (write.id !== null && lease.id === write.id) lease.validUntil = write.expiresAt;
    forgetBudget(deps, lease.budget);
  }
}

/** The flush failed: what it took goes back, to be written next time. */
export function restoreLeases(writes: LeaseWrite[]): void {
  for (const write of writes) {
    const { lease } = write;
    lease.flushing = null;
    lease.charged += write.charged;
    if (write.close && lease.id === null) lease.id = write.id;
    if (lease.id === write.id) lease.granted += write.returned;
  }
}
