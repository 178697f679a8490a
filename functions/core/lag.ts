/**
 * Replication lag, computed centrally from the ledger (so a dead agent or a
 * stuck queue still shows lag growing): per target, the age of the oldest
 * committed change it has not applied, and how many such changes there are.
 *
 * Each target keeps a watermark: a feed cursor below which every change is
 * applied (or not selected). A run advances it past applied changes and stops
 * at the first unapplied one in each shard, so each change is looked up once
 * on its way past the watermark, plus a bounded look-ahead to count the backlog.
 */

import type { Change } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { type Cursor, initialCursor } from './changes.js';
import { fanOut } from './commit.js';
import type { Clock, FanoutQueue, Ledger } from './ports.js';

export interface LagDeps {
  readonly ledger: Pick<
    Ledger,
    'readFeed' | 'getTargetState' | 'getWatermark' | 'setWatermark' | 'getAgentHeartbeat' | 'markFannedOut'
  >;
  /** Given, the run also drains the outbox: changes whose fan-out never completed are sent again. */
  readonly fanout?: FanoutQueue | undefined;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly {
    readonly id: string;
    readonly kind: 's3' | 'pull';
    readonly pathPrefix?: string | undefined;
  }[];
}

export interface TargetLag {
  readonly targetId: string;
  readonly kind: 's3' | 'pull';
  /** Age of the oldest committed change not applied; 0 when caught up. */
  readonly lagSeconds: number;
  /** Changes not applied (counted up to the look-ahead limit). */
  readonly pending: number;
  readonly pendingCapped: boolean;
  readonly oldestPending?:
    | { readonly path: string; readonly version: number; readonly committedAt: string }
    | undefined;
  /** Pull targets: seconds since the agent's last heartbeat; undefined if it never reported. */
  readonly heartbeatAgeSeconds?: number | undefined;
}

const PAGE = 100;

/**
 * A commit marks its feed entry right after the fan-out; an entry still unmarked this long after
 * it was appended lost its fan-out (a failed send, or a crash between commit and send).
 */
export const OUTBOX_GRACE_MS = 30_000;

/** Sends an unmarked change again (a distinct deduplication id; targets apply it idempotently). */
async function drainOutbox(deps: LagDeps, change: Change, now: number): Promise<void> {
  if (!deps.fanout || change.fannedOut || now - Date.parse(change.appendedAt) < OUTBOX_GRACE_MS) return;
  await fanOut({ fanout: deps.fanout, targets: deps.targets }, change, { resend: 'outbox' });
  await deps.ledger.markFannedOut(change.shard, change.seq);
}

export async function measureLag(deps: LagDeps, options: { lookAhead?: number } = {}): Promise<TargetLag[]> {
  const limits: ScanLimits = { lookAhead: options.lookAhead ?? 1000, now: deps.clock.now().getTime() };
  return Promise.all(deps.targets.map((target) => measureTargetLag(deps, target, limits)));
}

type LagTarget = LagDeps['targets'][number];

interface ScanLimits {
  /** Stop counting a target's backlog at this many pending changes. */
  readonly lookAhead: number;
  /** The run's one "now", in epoch milliseconds. */
  readonly now: number;
}

/** One target's scan of the feed: its watermark as it advances, and the backlog found past it. */
interface TargetScan {
  readonly watermark: number[];
  pending: number;
  oldest: Change | undefined;
  capped: boolean;
}

/** Scans every shard past the target's watermark, stores the advanced watermark, and reports the lag. */
async function measureTargetLag(deps: LagDeps, target: LagTarget, limits: ScanLimits): Promise<TargetLag> {
  const scan: TargetScan = {
    watermark: await loadWatermark(deps, target.id),
    pending: 0,
    oldest: undefined,
    capped: false,
  };
  for (let shard = 0; shard < deps.feedShards; shard++) await scanShard(deps, target, scan, shard, limits);
  await deps.ledger.setWatermark(target.id, scan.watermark as Cursor);
  const heartbeat = target.kind === 'pull' ? await deps.ledger.getAgentHeartbeat(target.id) : undefined;
  return lagReport(target, scan, heartbeat, limits.now);
}

/** The stored watermark, or the feed's start when none is stored or the shard count changed. */
async function loadWatermark(deps: LagDeps, targetId: string): Promise<number[]> {
  const stored = await deps.ledger.getWatermark(targetId);
  return stored?.length === deps.feedShards ? [...stored] : [...initialCursor(deps.feedShards)];
}

/**
 * Reads one shard's feed past the watermark: advances the watermark over applied changes up to
 * the first unapplied one, then counts the backlog until the feed ends or the look-ahead is reached.
 */
async function scanShard(
  deps: LagDeps,
  target: LagTarget,
  scan: TargetScan,
  shard: number,
  limits: ScanLimits,
): Promise<void> {
  const position: ShardPosition = { shard, after: scan.watermark[shard] ?? 0, advancing: true };
  for (;;) {
    const page = await deps.ledger.readFeed(shard, position.after, PAGE);
    if (await scanPage(deps, target, scan, position, page, limits)) return;
    if (page.length < PAGE) return;
  }
}

/** Where a shard's scan is: the last change read, and whether the watermark still follows it. */
interface ShardPosition {
  readonly shard: number;
  after: number;
  advancing: boolean;
}

/** Visits one page of a shard's feed; true once the look-ahead is reached. */
async function scanPage(
  deps: LagDeps,
  target: LagTarget,
  scan: TargetScan,
  position: ShardPosition,
  page: readonly Change[],
  limits: ScanLimits,
): Promise<boolean> {
  for (const change of page) {
    position.after = change.seq;
    if (await isApplied(deps, target, change)) {
      if (position.advancing) scan.watermark[position.shard] = change.seq;
      continue;
    }
    position.advancing = false;
    if (await countPending(deps, scan, change, limits)) return true;
  }
  return false;
}

/** A change the target does not select counts as applied: it never will be. */
async function isApplied(deps: LagDeps, target: LagTarget, change: Change): Promise<boolean> {
  return (
    !targetSelects(target, change.path) ||
    ((await deps.ledger.getTargetState(change.path, target.id))?.appliedVersion ?? 0) >= change.version
  );
}

/** Counts an unapplied change (re-sending it if its fan-out was lost); true once the look-ahead is reached. */
async function countPending(
  deps: LagDeps,
  scan: TargetScan,
  change: Change,
  limits: ScanLimits,
): Promise<boolean> {
  await drainOutbox(deps, change, limits.now);
  scan.pending++;
  if (!scan.oldest || change.committedAt < scan.oldest.committedAt) scan.oldest = change;
  if (scan.pending < limits.lookAhead) return false;
  scan.capped = true;
  return true;
}

function lagReport(
  target: LagTarget,
  scan: TargetScan,
  heartbeat: string | undefined,
  now: number,
): TargetLag {
  const { oldest } = scan;
  return {
    targetId: target.id,
    kind: target.kind,
    lagSeconds: oldest ? Math.max(0, (now - Date.parse(oldest.committedAt)) / 1000) : 0,
    pending: scan.pending,
    pendingCapped: scan.capped,
    oldestPending: oldest && {
      path: oldest.path,
      version: oldest.version,
      committedAt: oldest.committedAt,
    },
    heartbeatAgeSeconds:
      heartbeat === undefined ? undefined : Math.max(0, (now - Date.parse(heartbeat)) / 1000),
  };
}
