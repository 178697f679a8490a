/**
 * Commit without transactions (DESIGN.md): a version is claimed by a
 * conditional put, the feed entry likewise, the head only moves forward, and a
 * retried commit finds its own claim and carries on from where it stopped.
 */
import { ClaimTakenError, VersionConflictError } from './errors.js';
import type { Change, FileVersion, ReplicationMessage } from './model.js';
import { shardOf } from './paths.js';
import type { Clock, FanoutQueue, Ledger } from './ports.js';
import { targetSelects } from './topology.js';

export interface CommitDeps {
  readonly ledger: Ledger;
  readonly fanout: FanoutQueue;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
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
  /** True when an earlier attempt may have claimed a version already. */
  readonly retry: boolean;
}

/** Claims the next version of a path, appends it to the feed, moves the head and fans it out. */
export async function commitVersion(deps: CommitDeps, request: CommitRequest): Promise<FileVersion> {
  const { ledger } = deps;
  const shard = shardOf(request.path, deps.feedShards);

  const earlier = request.retry
    ? await ledger.findVersionByUpload(request.path, request.uploadId)
    : undefined;
  const version = earlier ?? (await claimNextVersion(deps, request, shard));

  if (earlier?.feedSeq === undefined) {
    const seq = await appendOnce(deps, version, shard, earlier !== undefined);
    await ledger.recordFeedSeq(version.path, version.version, seq);
  }
  await ledger.advanceHead(version);
  await fanOut(deps, version);
  return version;
}

async function claimNextVersion(
  deps: CommitDeps,
  request: CommitRequest,
  shard: number,
): Promise<FileVersion> {
  const { ledger, clock } = deps;
  let current = (await ledger.latestVersion(request.path))?.version ?? 0;
  for (;;) {
    if (request.ifVersion !== undefined && current !== request.ifVersion) {
      throw new VersionConflictError(request.path, request.ifVersion, current);
    }
    const candidate: FileVersion = {
      path: request.path,
      version: current + 1,
      sha256: request.sha256,
      size: request.size,
      contentType: request.contentType,
      deleted: request.deleted,
      committedAt: clock.now().toISOString(),
      uploadId: request.uploadId,
    };
    try {
      await ledger.claimVersion(candidate, shard);
      return candidate;
    } catch (error) {
      if (!(error instanceof ClaimTakenError)) throw error;
      // Someone holds current + 1; there may be more above it by now.
      current = Math.max(current + 1, (await ledger.latestVersion(request.path))?.version ?? 0);
    }
  }
}

/** Appends the version to its shard's feed, unless a retry finds it already there. */
async function appendOnce(
  deps: CommitDeps,
  version: FileVersion,
  shard: number,
  retry: boolean,
): Promise<number> {
  const { ledger, clock } = deps;
  if (retry) {
    const found = await ledger.findFeedEntry(shard, version.path, version.version, version.committedAt);
    if (found) return found.seq;
  }
  let last = await ledger.latestFeedSeq(shard);
  for (;;) {
    const change: Change = {
      shard,
      seq: last + 1,
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
      return change.seq;
    } catch (error) {
      if (!(error instanceof ClaimTakenError)) throw error;
      last = Math.max(last + 1, await ledger.latestFeedSeq(shard));
    }
  }
}

/** One message per target that selects the path. FIFO deduplication makes a resend harmless. */
export async function fanOut(
  deps: Pick<CommitDeps, 'fanout' | 'targets'>,
  version: FileVersion,
): Promise<string[]> {
  const selected = deps.targets.filter((t) => targetSelects(t, version.path));
  await Promise.all(selected.map((t) => deps.fanout.send(replicationMessage(t.id, version))));
  return selected.map((t) => t.id);
}

export function replicationMessage(targetId: string, version: FileVersion): ReplicationMessage {
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
