import { transaction } from '../../db/index.js';
import type { Deps } from '../../deps.js';
import {
  addToBudget,
  type BudgetKey,
  type BudgetRow,
  chargedAtExpiry,
  closeReservation,
  ensureBudget,
  findExpiredHolds,
  insertReservation,
  lockBudget,
  stretchLease,
} from './budget.repo.js';
import {
  announceBudget,
  type BudgetOwner,
  type BudgetView,
  budgetView,
  expireHolds,
  forgetBudget,
  noteExceeded,
  quotaExceeded,
  readBudget,
  recordUsage,
  type UsageRecord,
} from './budget.service.js';
import { type Period, periodAt } from './periods.js';

// Budget leases (ADR 0011): the LLM gateway's holds and charges, kept in memory against a slice
// of each user's budget that this instance holds in the database, so a call costs no database
// write. The slice is a reservation row (`lse_…`) whose tokens are part of the budget's
// `tokens_reserved`: instances together can never hold more than the budget, so calls admitted
// against slices can never overspend it, on any number of instances. Charges are written with the
// usage records every second (flushUsage); a slice an instance stops renewing (a crash) expires
// and is charged in full, since its instance may have served calls it never wrote.

/** How long a lease row holds its tokens unless renewed (every flush renews it when half is gone). */
export const LEASE_TTL_MS = 60_000;
/** Calls are admitted against a lease only while its row is sure to hold for this much longer. */
const LEASE_MARGIN_MS = 15_000;
/** A lease nobody reserved from for this long, with nothing in flight, is given back. */
export const LEASE_IDLE_MS = 5_000;

/** One user's budget period as this instance holds it. */
export interface Lease {
  key: string;
  budget: BudgetKey;
  period: Period;
  /** The owner as last seen (limits change with the plan). */
  owner: BudgetOwner;
  /** The limit the slice was last checked against; another limit sends the next call to the database. */
  limit: number | null;
  /** The lease row, null while this instance holds none. */
  id: string | null;
  /** Tokens the lease row holds (already lowered by a flush in flight). */
  granted: number;
  /** Tokens held by calls in flight. */
  held: number;
  /** Tokens charged by finished calls, not yet written. */
  charged: number;
  /**
   * Tokens an expired slice of this lease was charged in full (ADR 0011) that no call has used
   * yet: the next charges count against them instead of the budget, so nothing is charged twice.
   */
  cover: number;
  /** What a flush in flight is writing: charges, and tokens it gives back from the row. */
  flushing: { charged: number; returned: number } | null;
  /** When the lease row expires (as last written). */
  validUntil: number;
  /** The budget row as this lease last wrote it. */
  row: BudgetRow | undefined;
  /** Tokens asked for since the last flush, and a decaying peak of that: how big a slice to keep. */
  demand: number;
  rate: number;
  lastUsed: number;
  holds: Set<Hold>;
  /** Database work of this lease (growing the slice), one at a time. */
  queue: Promise<unknown>;
  /** Calls waiting for the slice to grow. */
  growing: number;
  /** A grow's transaction is running: flushes leave this lease for the next one (never both at once). */
  inGrow: boolean;
}

/** Tokens held for one call; settled (or released) once. */
export interface Hold {
  readonly lease: Lease;
  /** Whose call: its usage record names the key it was made with. */
  readonly owner: BudgetOwner;
  /** Lowered by `shrinkHold` once the call's real need is known. */
  tokens: number;
  readonly expiresAt: number;
  open: boolean;
}

/** This instance's leases (on `deps`), and what budget reads need of them. */
export interface BudgetLeases {
  leases: Map<string, Lease>;
  /** The usage flush in flight (or waiting for the one in flight), if any: readers of a budget wait for it. */
  flushing: Promise<void> | null;
  /** A flush that has not started yet: later calls join it rather than queue more. */
  nextFlush: Promise<void> | null;
  /**
   * Corrects a budget as stored for this instance's lease on it: charges not yet written count
   * as used, and the slice counts only as much as calls in flight hold.
   */
  adjust(key: BudgetKey, stored: { used: number; reserved: number }): { used: number; reserved: number };
  /** Waits for database work in flight on the lease of `key` (a flush, a growing slice), so a read sees it whole. */
  settled(key: BudgetKey): Promise<void>;
}

const leaseKey = (key: BudgetKey) => `${key.tenantId}\u0000${key.userId}\u0000${key.periodStart}`;

export function createBudgetLeases(): BudgetLeases {
  const leases = new Map<string, Lease>();
  const registry: BudgetLeases = {
    leases,
    flushing: null,
    nextFlush: null,
    adjust(key, stored) {
      const lease = leases.get(leaseKey(key));
      return lease ? corrected(lease, stored) : stored;
    },
    async settled(key) {
      const lease = leases.get(leaseKey(key));
      // A failed flush or grant is reported where it ran; a read only waits for it to end.
      if (lease?.flushing) await registry.flushing?.catch(() => undefined);
      if (lease?.growing) await lease.queue;
    },
  };
  return registry;
}

const available = (lease: Lease) => lease.granted - lease.held - lease.charged;

/** A budget as stored, with this lease's unwritten charges as used and its slice only as far as calls hold it. */
function corrected(lease: Lease, stored: { used: number; reserved: number }) {
  const { flushing } = lease;
  return {
    used: stored.used + lease.charged + (flushing?.charged ?? 0),
    reserved: stored.reserved - lease.granted - (flushing?.returned ?? 0) + lease.held,
  };
}

function leaseFor(deps: Deps, owner: BudgetOwner, now: number): Lease {
  const period = periodAt(owner.limits.tokenPeriod, now);
  const budget = { tenantId: owner.tenantId, userId: owner.userId, periodStart: period.start };
  const key = leaseKey(budget);
  let lease = deps.budgetLeases.leases.get(key);
  if (!lease) {
    lease = {
      key,
      budget,
      period,
      owner,
      limit: owner.limits.tokenBudget,
      id: null,
      granted: 0,
      held: 0,
      charged: 0,
      cover: 0,
      flushing: null,
      validUntil: 0,
      row: undefined,
      demand: 0,
      rate: 0,
      lastUsed: now,
      holds: new Set(),
      queue: Promise.resolve(),
      growing: 0,
      inGrow: false,
    };
    deps.budgetLeases.leases.set(key, lease);
  }
  lease.owner = owner;
  return lease;
}

/** The call fits what this instance already holds (or the plan has no token limit). */
function fitsLocally(lease: Lease, owner: BudgetOwner, tokens: number, now: number): boolean {
  const limit = owner.limits.tokenBudget;
  if (limit !== lease.limit) return false;
  // Without a limit nothing is held, but the budget row is read once, for the figures users see.
  if (limit === null) return lease.row !== undefined;
  return lease.id !== null && now < lease.validUntil - LEASE_MARGIN_MS && available(lease) >= tokens;
}

function take(deps: Deps, lease: Lease, owner: BudgetOwner, tokens: number, now: number): Hold {
  lease.held += tokens;
  const hold: Hold = { lease, owner, tokens, expiresAt: now + deps.config.limits.reservationTtlMs, open: true };
  lease.holds.add(hold);
  forgetBudget(deps, lease.budget);
  return hold;
}

/**
 * Holds `tokens` of the owner's budget for one call: from this instance's slice when it has
 * enough (no I/O), else after growing the slice in the database. With `atLeast`, a budget that
 * cannot cover `tokens` but covers `atLeast` holds what is left of it instead. Throws 429
 * quota_exceeded when the budget cannot cover the call (`atLeast`, else `tokens`), counting every
 * instance's slices and holds.
 */
export function holdTokens(
  deps: Deps,
  owner: BudgetOwner,
  tokens: number,
  options: { atLeast?: number } = {},
): Hold | Promise<Hold> {
  const now = deps.clock.now();
  const lease = leaseFor(deps, owner, now);
  lease.demand += tokens;
  lease.lastUsed = now;
  if (fitsLocally(lease, owner, tokens, now)) return take(deps, lease, owner, tokens, now);
  lease.growing++;
  const atLeast = Math.min(options.atLeast ?? tokens, tokens);
  const grown = lease.queue.then(() => growLease(deps, lease, owner, tokens, atLeast));
  lease.queue = grown.catch(() => undefined);
  return grown.finally(() => {
    lease.growing--;
  });
}

/** Lowers a hold to what its call can use at most, once that is known; the rest goes back to the slice. */
export function shrinkHold(hold: Hold, tokens: number): void {
  if (!hold.open || tokens >= hold.tokens) return;
  hold.lease.held -= hold.tokens - tokens;
  hold.tokens = tokens;
}

/** Ends a hold whose call was refused before any provider was called: nothing charged, nothing recorded. */
export function releaseHold(deps: Deps, hold: Hold): void {
  if (!hold.open) return;
  hold.open = false;
  hold.lease.held -= hold.tokens;
  hold.lease.holds.delete(hold);
  forgetBudget(deps, hold.lease.budget);
}

/** Charges `tokens` to the lease, against what an expired slice was already charged first. */
function charge(lease: Lease, tokens: number): void {
  const covered = Math.min(lease.cover, tokens);
  lease.cover -= covered;
  lease.charged += tokens - covered;
}

/**
 * The lease row was found expired (its tokens no longer held): it was charged in full, so the
 * charges not yet written, and later ones up to that, are covered already.
 */
export function loseRow(lease: Lease, id: string, charged: number): void {
  if (lease.id === id) {
    lease.id = null;
    lease.granted = 0;
  }
  lease.cover += charged;
  const covered = Math.min(lease.cover, lease.charged);
  lease.cover -= covered;
  lease.charged -= covered;
}

/** How much to ask for beyond what the call needs: about two flushes' worth of this user's demand. */
const slack = (lease: Lease, tokens: number) => Math.max(4 * tokens, 2 * Math.max(lease.rate, lease.demand));

/**
 * Sizes the slice so the call fits, in one transaction. Locks are taken in the order everything
 * else takes them (reservation rows, then the budget row), so PostgreSQL never deadlocks: this
 * lease's row, then the user's expired holds (freed first, as a direct reservation frees them),
 * then the budget row. The slice becomes what this instance has committed (the call, the calls in
 * flight, charges not yet written) plus some room: half of what is left at most, so that another
 * instance still finds some. It shrinks when the limit went down. A flush never writes this lease
 * while the transaction runs, so the row and the lease agree throughout.
 */
async function growLease(deps: Deps, lease: Lease, owner: BudgetOwner, tokens: number, atLeast: number): Promise<Hold> {
  while (lease.flushing && deps.budgetLeases.flushing) await deps.budgetLeases.flushing.catch(() => undefined);
  if (fitsLocally(lease, owner, tokens, deps.clock.now())) return take(deps, lease, owner, tokens, deps.clock.now());
  const limit = owner.limits.tokenBudget;
  const now = deps.clock.now();
  const expiresAt = now + LEASE_TTL_MS;
  const { tenantId } = lease.budget;
  lease.inGrow = true;
  /** The row this lease holds now: renewed below, or given up for a new one. */
  const rowId = lease.id;
  let outcome: (
    | { granted: false }
    | { granted: true; id: string | null; size: number; row: BudgetRow; call: number }
  ) & { dropped: boolean; lost?: number };
  try {
    outcome = await transaction(deps.db.kysely, async (trx) => {
      const alive = rowId !== null && (await stretchLease(trx, tenantId, rowId, { tokens: 0, expiresAt, now }));
      const dropped = rowId !== null && !alive;
      // A row past its expiry is not renewed (ADR 0011). Still held, it is given back here: this
      // instance knows what its calls used. Taken by the sweeper first, it was charged in full.
      let freed = 0;
      let lost: number | undefined;
      if (dropped && rowId !== null) {
        const released = await closeReservation(trx, tenantId, rowId, { status: 'released', charged: null, now });
        if (released) freed = released.tokens;
        else lost = await chargedAtExpiry(trx, tenantId, rowId);
      }
      await expireHolds(trx, deps, await findExpiredHolds(trx, now, owner));
      await ensureBudget(trx, tenantId, owner.userId, lease.period, now);
      const row = await lockBudget(trx, deps.db.dialect, lease.budget);
      if (!row) throw new Error('budget row missing after ensureBudget');
      const base = alive ? lease.granted : 0;
      /** Resizes this instance's part of `reserved` from `base` (and a row given back) to `size`. */
      const resize = async (size: number) =>
        size - base - freed !== 0
          ? addToBudget(trx, lease.budget, { reserved: size - base - freed, used: 0, limit: null, now })
          : row;
      if (limit === null) {
        const updated = (await resize(base)) ?? row;
        return {
          granted: true as const,
          id: alive ? lease.id : null,
          size: base,
          row: updated,
          call: tokens,
          dropped,
          lost,
        };
      }
      const room = limit - (row.tokens_used + row.tokens_reserved - base - freed);
      const owed = lease.held + lease.charged;
      // The whole call if it fits, else what is left when that is at least `atLeast`.
      const call = Math.min(tokens, room - owed);
      if (call < atLeast) {
        await resize(base);
        await noteExceeded(trx, deps, owner, lease.period);
        return { granted: false as const, dropped, lost };
      }
      const committed = call + owed;
      const size = committed + Math.min(slack(lease, call), Math.floor((room - committed) / 2));
      const updated = await resize(size);
      if (!updated) throw new Error('budget row missing under its lock');
      let id = alive ? lease.id : null;
      if (id !== null) {
        if (size !== base) await stretchLease(trx, tenantId, id, { tokens: size - base, expiresAt, now });
      } else {
        id = deps.ids.next('lse');
        await insertReservation(trx, {
          id,
          tenant_id: tenantId,
          user_id: owner.userId,
          api_key_id: null,
          period_start: lease.period.start,
          tokens: size,
          status: 'held',
          charged: null,
          created_at: now,
          expires_at: expiresAt,
          closed_at: null,
        });
      }
      return { granted: true as const, id, size, row: updated, call, dropped, lost };
    });
  } finally {
    lease.inGrow = false;
  }
  if (outcome.dropped && rowId !== null) loseRow(lease, rowId, outcome.lost ?? 0);
  if (!outcome.granted) {
    forgetBudget(deps, lease.budget);
    throw quotaExceeded(await readBudget(deps, owner, now), atLeast, deps.clock.now());
  }
  lease.granted = outcome.size;
  lease.id = outcome.id;
  if (outcome.id !== null) lease.validUntil = expiresAt;
  lease.limit = limit;
  lease.row = outcome.row;
  return take(deps, lease, owner, outcome.call, deps.clock.now());
}

/** Charges what a call used and ends its hold; the charge is written with the next flush. */
export function settleHold(deps: Deps, hold: Hold, usage: UsageRecord): BudgetView {
  if (hold.open) {
    hold.open = false;
    hold.lease.held -= hold.tokens;
    hold.lease.holds.delete(hold);
  }
  // A hold that outlived TOKEN_RESERVATION_TTL may outlive its idle lease too: the charge goes to
  // the lease of its budget now, so it is still written.
  const { leases } = deps.budgetLeases;
  let lease = leases.get(hold.lease.key);
  if (!lease) {
    lease = hold.lease;
    leases.set(lease.key, lease);
  }
  charge(lease, usage.promptTokens + usage.completionTokens);
  recordUsage(deps, hold.owner, usage);
  forgetBudget(deps, lease.budget);
  return announceBudget(deps, hold.owner, leaseView(lease));
}

/** The budget just after a hold was taken: for the response's headers (no read needed). */
export function budgetOfHold(hold: Hold): BudgetView {
  return leaseView(hold.lease);
}

/** The budget as the lease last wrote it, with what this instance holds and charged since. */
function leaseView(lease: Lease): BudgetView {
  const { row } = lease;
  return budgetView(
    lease.owner,
    lease.period,
    corrected(lease, { used: row?.tokens_used ?? 0, reserved: row?.tokens_reserved ?? 0 }),
  );
}
