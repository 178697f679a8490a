/**
 * Commit without transactions (docs/design-notes.md).
 *
 * - A version is claimed by a conditional put of `(path, n)`; the loser reads
 *   the latest and tries n+1. Claims only ever go to latest+1: gap-free.
 * - Duplicate deliveries of one upload must end in one version, even when they
 *   run at the same time. The upload record holds a reservation (`claimingVersion`)
 *   moved by compare-and-set, and a claim succeeds for the upload that already
 *   holds the item: every worker for one upload converges on one version.
 * - The feed entry is claimed the same way, its reservation held on the version item.
 * - The head only moves forward; fan-out is deduplicated by the FIFO queues, and a fan-out that
 *   failed is retried from the feed (an outbox: see OUTBOX_GRACE_MS in lag.ts).
 */
import { backoffMs, sleep } from '../../common/retry.ts';
import type { Change, FileVersion, VersionContent } from '../../contracts/model.js';
import type { PolicyTarget } from '../../contracts/paths.ts';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { targetSelects } from '../../contracts/topology.js';
import { ClaimTakenError, VersionConflictError } from './errors.js';
import type { Clock, FanoutQueue, Ledger } from './ports.js';
import { shardOf } from './shards.js';

export interface CommitDeps {
  readonly ledger: Ledger;
  readonly fanout: FanoutQueue;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly PolicyTarget[];
}

export interface CommitRequest {
  readonly uploadId: string;
  readonly path: string;
  readonly sha256: string | null;
  readonly size: number;
  readonly contentType: string | null;
  readonly deleted: boolean;
  /** Optimistic concurrency: the version the caller saw (0 = the path must not exist). */
  readonly ifVersion?: number | undefined;
  /** Coordinate through the upload record: set when the same upload may be committed by several workers. */
  readonly reserveOnUpload: boolean;
}

/** Claims the next version of a path, appends it to the feed, moves the head and fans it out. */
export async function commitVersion(deps: CommitDeps, request: CommitRequest): Promise<FileVersion> {
  const { ledger } = deps;
  const shard = shardOf(request.path, deps.feedShards);
  const { version, feedSeq, feedSeqReserved } = await claimVersion(deps, request, shard);
  let seq = feedSeq;
  if (seq === undefined) {
    seq = await appendToFeed(deps, version, shard, feedSeqReserved);
    await ledger.recordFeedSeq(version.path, version.version, seq);
  }
  await ledger.advanceHead(version);
  // The feed entry is the outbox: marked once every target's queue took the version. One left
  // unmarked (a send failed, or the process died here) is sent again by the lag monitor.
  await fanOut(deps, version);
  await ledger.markFannedOut(shard, seq);
  return version;
}

async function claimVersion(deps: CommitDeps, request: CommitRequest, shard: number) {
  const { ledger, clock } = deps;
  const latest = async () => (await ledger.latestVersion(request.path))?.version ?? 0;
  let reserved = request.reserveOnUpload
    ? (await ledger.getUpload(request.uploadId))?.claimingVersion
    : undefined;
  let next = reserved ?? (await latest()) + 1;
  let lost = 0;
  for (;;) {
    if (request.reserveOnUpload) {
      next = await ledger.reserveVersion(request.uploadId, reserved, next);
      reserved = next;
    }
    next = await checkIfVersion(ledger, request, next);
    try {
      return await ledger.claimVersion(
        {
          path: request.path,
          version: next,
          sha256: request.sha256,
          size: request.size,
          contentType: request.contentType,
          deleted: request.deleted,
          committedAt: clock.now().toISOString(),
          uploadId: request.uploadId,
        },
        shard,
      );
    } catch (error) {
      if (!(error instanceof ClaimTakenError)) throw error;
      // Another upload holds `next`; there may be more above it by now.
      await backOff(++lost);
      next = Math.max(next, await latest()) + 1;
    }
  }
}

/**
 * Optimistic concurrency: the version about to be claimed must follow the one the caller saw.
 * Returns the version to claim, or throws VersionConflictError.
 */
async function checkIfVersion(ledger: Ledger, request: CommitRequest, next: number): Promise<number> {
  if (request.ifVersion === undefined || next - 1 === request.ifVersion) return next;
  // Our own earlier claim at ifVersion + 1 is not a conflict: the claim finds it.
  const own = await ledger.getVersion(request.path, request.ifVersion + 1);
  if (own?.uploadId !== request.uploadId)
    throw new VersionConflictError(request.path, request.ifVersion, next - 1);
  return request.ifVersion + 1;
}

/** Appends the version to its shard's feed exactly once, however many workers try. */
async function appendToFeed(
  deps: CommitDeps,
  version: FileVersion,
  shard: number,
  reservedSeq: number | undefined,
): Promise<number> {
  const { ledger, clock } = deps;
  let reserved = reservedSeq;
  let next = reserved ?? (await ledger.latestFeedSeq(shard)) + 1;
  let lost = 0;
  for (;;) {
    next = await ledger.reserveFeedSeq(version.path, version.version, reserved, next);
    reserved = next;
    const change: Change = {
      shard,
      seq: next,
      path: version.path,
      version: version.version,
      sha256: version.sha256,
      size: version.size,
      contentType: version.contentType,
      deleted: version.deleted,
      committedAt: version.committedAt,
      appendedAt: clock.now().toISOString(),
    };
    try {
      await ledger.claimFeedEntry(change);
      return next;
    } catch (error) {
      if (!(error instanceof ClaimTakenError)) throw error;
      await backOff(++lost);
      next = Math.max(next, await ledger.latestFeedSeq(shard)) + 1;
    }
  }
}

/**
 * Full-jitter backoff after a lost claim: without it, many writers racing for one
 * shard or path re-read and collide again in lockstep.
 */
const backOff = (attempt: number): Promise<void> => sleep(backoffMs(attempt, 1, 50));

/** One message per target that selects the path. FIFO deduplication makes a resend harmless. */
export async function fanOut(
  deps: {
    readonly fanout: FanoutQueue;
    readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
  },
  version: VersionContent,
  options: { resend?: string } = {},
): Promise<string[]> {
  const selected = deps.targets.filter((t) => targetSelects(t, version.path));
  await Promise.all(selected.map((t) => deps.fanout.send(replicationMessage(t.id, version), options)));
  return selected.map((t) => t.id);
}

export function replicationMessage(targetId: string, version: VersionContent): ReplicationMessage {
  return {
    targetId,
    path: version.path,
    version: version.version,
    sha256: version.sha256,
    size: version.size,
    contentType: version.contentType,
    deleted: version.deleted,
    committedAt: version.committedAt,
  };
}
