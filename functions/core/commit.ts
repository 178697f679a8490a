/**
 * The commit protocol (docs/design-notes.md, "Commit"). One commit is one all-or-nothing write
 * (TransactWriteItems on DynamoDB): the version item at head + 1, the path's head moved to it,
 * the shard's feed counter moved from seq to seq + 1 with the feed entry at seq + 1, the
 * upload ended as committed and, from the ingest, the verified blob's record and a check that
 * each folder of the path holds no live file. Each piece is conditioned on the state read just
 * before, so:
 *
 * - versions are gap-free and the head only moves forward, one version at a time;
 * - the feed is prefix-closed: entry seq + 1 is written only with the counter at seq, which only
 *   the write of entry seq moved there; a reader that sees seq n sees everything below it;
 * - duplicate deliveries of one upload end in one version: only a pending upload commits;
 * - `ifVersion` is checked against the head the write is conditioned on: no lost update.
 * - the folder/file rule holds at the instant the version is written, not at a read before it.
 *
 * A refused write says what it found, so a lost race costs one more write, not a re-read.
 * Fan-out follows the write; the feed entry is the outbox (lag.ts resends what was not marked).
 */
import { crashPoint } from '../../common/crash-points.ts';
import { backoffMs, sleep } from '../../common/retry.ts';
import type { Blob, Change, FileVersion, VersionContent } from '../../contracts/model.js';
import {
  folderOfFilesError,
  MAX_RULED_FOLDERS,
  type PolicyTarget,
  underFileError,
} from '../../contracts/paths.ts';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { targetSelects } from '../../contracts/topology.js';
import { UploadFinishedError, VersionConflictError } from './errors.js';
import { asValidationError, PathPolicy } from './paths.js';
import type {
  BlobRecord,
  Clock,
  CommitResult,
  CommitState,
  FanoutQueue,
  FolderRuleWrite,
  UploadLedger,
  VersionLedger,
} from './ports.js';
import { type FeedShards, feedShardsOf } from './shards.js';

export interface CommitDeps {
  readonly ledger: VersionLedger;
  readonly fanout: FanoutQueue;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly PolicyTarget[];
  /** Who lends this process's commits their feed shards. @default this process's (feedShardsOf) */
  readonly shardLender?: FeedShards | undefined;
}

export interface CommitRequest {
  /** Recorded on the version: the upload (or the delete request) it came from. */
  readonly uploadId: string;
  readonly path: string;
  readonly sha256: string | null;
  readonly size: number;
  readonly contentType: string | null;
  readonly deleted: boolean;
  /** Optimistic concurrency: the version the caller saw (0 = the path must not exist). */
  readonly ifVersion?: number | undefined;
  /**
   * The commit ends the pending upload `uploadId` (content `sha256`) in the same write: only a
   * pending upload commits, so every worker delivering it ends in one version.
   */
  readonly endsUpload?: { readonly deduplicated: boolean } | undefined;
  /**
   * The folder/file rule of a pull target (folderRuleFor), held by the commit's own write: a folder
   * that holds a live file, or live files under the path, refuse it (`path_conflict`). Absent where
   * no pull target takes the path. A tombstone needs none: it counts its file out of the folders
   * the file was counted into, whatever the targets are now.
   */
  readonly folderRule?: FolderRule | undefined;
  /**
   * Content equal to the path's head (same SHA-256, size and type, not deleted) makes no new
   * version: nothing is written and the head is returned, its `uploadId` another's; the caller
   * ends its upload at it. An upload claimed before a twin committed the same bytes to the same
   * path would otherwise commit them again (what the claim answers `unchanged` when it comes after).
   */
  readonly keepsEqualHead?: boolean | undefined;
  /**
   * A verified blob's record to write with the commit (one write fewer than putBlob before it);
   * `held` is set to the record that holds once a write settles it: this one, or another pin.
   */
  readonly blob?: BlobRecordWrite | undefined;
  /**
   * Called once this call's own write holds the version, before the fan-out; never for a version
   * another call wrote (another delivery of the upload, an equal head). What counts commits counts
   * here: the invocation may die in the fan-out, and no retry finds the upload left to commit.
   */
  readonly onWritten?: ((version: FileVersion) => void) | undefined;
}

/** The path's folders a pull target takes (at most MAX_RULED_FOLDERS: deeper paths are refused at their claim). */
export interface FolderRule {
  readonly folders: readonly string[];
}

export interface BlobRecordWrite extends BlobRecord {
  held?: Blob | undefined;
}

/**
 * Far more than contention needs (each refusal names the state that won): reached only when
 * the ledger holds a version item above its head, which no commit of this protocol leaves.
 */
const MAX_ATTEMPTS = 200;

/**
 * Commits the next version of a path, appends it to the feed and fans it out. The feed shard is
 * lent by this process's FeedShards from the read to the write's answer: this process's commits
 * never race each other for a counter, and a shard another process appended to first is left to it
 * (docs/design-notes.md, "Which shard a commit takes").
 */
export async function commitVersion(deps: CommitDeps, request: CommitRequest): Promise<FileVersion> {
  const shards = deps.shardLender ?? feedShardsOf(deps.feedShards);
  const lease: Lease = { shards, shard: await shards.acquire(), held: true, fresh: true };
  const release = () => {
    if (lease.held) shards.release(lease.shard);
    lease.held = false;
  };
  try {
    const committed = await commitOnShards(deps, request, lease);
    release();
    if (committed.change !== undefined) {
      request.onWritten?.(committed.version);
      await publish(deps, committed.version, committed.change);
    }
    return committed.version;
  } finally {
    release();
  }
}

/** The shard lent to a commit; `fresh` until a write on it is refused. */
interface Lease {
  readonly shards: FeedShards;
  shard: number;
  held: boolean;
  fresh: boolean;
}

/** The commit's attempts, on the lent shard (moved to another when another process appended to it first). */
async function commitOnShards(
  deps: CommitDeps,
  request: CommitRequest,
  lease: Lease,
): Promise<{ version: FileVersion; change?: Change }> {
  const { ledger, clock } = deps;
  let state = await ledger.readCommitState(request.path, lease.shard);
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    if (movedPast(request, state)) return { version: await ownVersionOrConflict(deps, request, state) };
    const same = await equalHead(deps, request, state);
    if (same !== undefined) return { version: same };
    const version = nextVersion(request, state, clock.now().toISOString());
    const change = feedEntry(version, lease.shard, state.feedSeq + 1, clock.now().toISOString());
    const blob = unsettled(request.blob);
    const started = performance.now();
    const result = await ledger.commit({
      version,
      change,
      upload: request.endsUpload,
      folderRule: await folderRuleWrite(deps, request, state, lease.shard),
      blob,
    });
    const roundTripMs = performance.now() - started;
    settleBlob(blob, result);
    if (result.committed) {
      // Appended at the first write on this shard: no other process is appending to it.
      if (lease.fresh) lease.shards.won(lease.shard);
      return { version, change };
    }
    lease.fresh = false;
    const settled = await settledOrRefused(deps, request, result);
    if (settled !== undefined) return { version: settled };
    state = await stateToRetry(deps, request, lease, { result, read: state, attempt, roundTripMs });
  }
  throw new Error(`commit of "${request.path}" refused ${MAX_ATTEMPTS} times: the ledger is inconsistent`);
}

/**
 * What to write again from after a refusal. The counter moved while this process held the shard:
 * another process appended to it first, and the commit goes on on another shard, read afresh.
 * Otherwise the state the refusal returned, after a backoff (none when the blob's pin alone
 * refused it: the head and seq were as read).
 */
async function stateToRetry(
  deps: CommitDeps,
  request: CommitRequest,
  lease: Lease,
  refusal: {
    result: Extract<CommitResult, { committed: false }>;
    read: CommitState;
    attempt: number;
    roundTripMs: number;
  },
): Promise<CommitState> {
  const { result, read } = refusal;
  const found = withContent(result.state, read);
  if (found.feedSeq !== read.feedSeq && (await movedShard(lease))) {
    lease.fresh = true;
    return deps.ledger.readCommitState(request.path, lease.shard);
  }
  if (result.pinned === undefined) await backOff(refusal.attempt, refusal.roundTripMs);
  return found;
}

/**
 * The shard was lost to another process: marks it, gives it back and takes another. True when the
 * commit now holds a different shard (its counter unknown); false when it got the same one back.
 */
async function movedShard(lease: Lease): Promise<boolean> {
  const lost = lease.shard;
  lease.shards.lost(lost);
  lease.shards.release(lost);
  lease.held = false;
  lease.shard = await lease.shards.acquire();
  lease.held = true;
  return lease.shard !== lost;
}

const unsettled = (blob: BlobRecordWrite | undefined) => (blob?.held === undefined ? blob : undefined);

/** The record that holds after a write that carried it: ours when it committed, else the pin that refused it. */
function settleBlob(blob: BlobRecordWrite | undefined, result: CommitResult): void {
  if (blob !== undefined) blob.held = result.committed ? blob.record : result.pinned;
}

/** After a refusal: the answer when the upload ended elsewhere or our own write landed; throws when the path cannot be committed. */
async function settledOrRefused(
  deps: CommitDeps,
  request: CommitRequest,
  result: Extract<CommitResult, { committed: false }>,
): Promise<FileVersion | undefined> {
  if (result.upload !== undefined) return settledElsewhere(deps, request, result.upload);
  if (result.occupied !== undefined) throw asValidationError(underFileError(result.occupied));
  if (result.holdsFiles === true) throw asValidationError(folderOfFilesError(request.path));
  // A retried write that did land (the SDK retries on a lost answer) finds its own version at head.
  return ownHead(deps, request, result.state);
}

/**
 * How this commit changes the path for the folder rule, from the head it is conditioned on: a
 * file appears (no head, or a tombstone), stays (content over a live file) or goes (a tombstone
 * over a live file); a tombstone over a tombstone changes nothing.
 */
async function folderRuleWrite(
  deps: CommitDeps,
  request: CommitRequest,
  state: CommitState,
  shard: number,
): Promise<FolderRuleWrite | undefined> {
  const live = state.version > 0 && !(await headDeleted(deps, request.path, state));
  if (request.deleted) {
    // Counted out of the folders its row recorded, whatever the targets are now: a pull target
    // removed or narrowed since must not leave a count that refuses the folder for ever.
    if (!live) return undefined;
    const counted = state.counted ?? (await deps.ledger.readCommitState(request.path, shard)).counted;
    return counted === undefined || counted.length === 0 ? undefined : { folders: counted, change: 'goes' };
  }
  if (request.folderRule === undefined) return undefined;
  return { folders: request.folderRule.folders, change: live ? 'stays' : 'appears' };
}

/** Whether the head the commit is conditioned on is a tombstone (read when the state does not say). */
async function headDeleted(deps: CommitDeps, path: string, state: CommitState): Promise<boolean> {
  if (state.content !== undefined) return state.content.deleted;
  const head = await deps.ledger.getVersion(path, state.version);
  if (head === undefined)
    throw new Error(`"${path}": version ${state.version} is at the head but not stored`);
  return head.deleted;
}

/** A refusal that did not concern the head leaves it as read, and so its content. */
const withContent = (found: CommitState, read: CommitState): CommitState =>
  found.content === undefined && found.version === read.version
    ? { ...found, content: read.content, counted: found.counted ?? read.counted }
    : found;

/** With `keepsEqualHead`, the head when it is another upload's commit of exactly the request's content. */
async function equalHead(
  deps: CommitDeps,
  request: CommitRequest,
  state: CommitState,
): Promise<FileVersion | undefined> {
  const held = state.content;
  if (
    request.keepsEqualHead !== true ||
    held === undefined ||
    held.deleted ||
    request.deleted ||
    state.uploadId === request.uploadId ||
    held.sha256 !== request.sha256 ||
    held.size !== request.size ||
    held.contentType !== request.contentType
  )
    return undefined;
  return deps.ledger.getVersion(request.path, state.version);
}

/** Whether a claim's commit ends at an equal head (`keepsEqualHead`): it named no head and asked no new version. */
export const keepsEqualHeadOf = (claim: {
  readonly ifVersion?: number | undefined;
  readonly newVersion?: boolean | undefined;
}): boolean => claim.ifVersion === undefined && claim.newVersion !== true;

/**
 * Ends a pending upload at `head`, another upload's commit of the same content (`keepsEqualHead`):
 * committed at that version, its pointer gone. Undefined when it ended so; else the status it had
 * ended with meanwhile (expired, rejected), which stands.
 */
export async function endUploadAtHead(
  deps: { ledger: Pick<UploadLedger, 'finishUpload' | 'getUpload' | 'removePendingUpload'>; clock: Clock },
  upload: { readonly uploadId: string; readonly sha256: string },
  head: FileVersion,
  deduplicated: boolean,
): Promise<string | undefined> {
  const { ledger, clock } = deps;
  await ledger.finishUpload(
    upload.uploadId,
    { status: 'committed', version: head.version, ...(deduplicated ? { deduplicated: true as const } : {}) },
    clock.now().toISOString(),
  );
  // finishUpload ends only a pending upload: what it holds now says whether this ending won.
  const ended = await ledger.getUpload(upload.uploadId);
  await ledger.removePendingUpload(upload.sha256, upload.uploadId);
  return ended?.status === 'committed' && ended.version === head.version
    ? undefined
    : (ended?.status ?? 'ended');
}

const movedPast = (request: CommitRequest, state: CommitState): boolean =>
  request.ifVersion !== undefined && request.ifVersion !== state.version;

/**
 * The head is not where the caller saw it. Our own commit at `ifVersion + 1` (another delivery of
 * this upload, or a write whose answer was lost) is not a conflict: it is the answer.
 */
async function ownVersionOrConflict(
  deps: CommitDeps,
  request: CommitRequest,
  state: CommitState,
): Promise<FileVersion> {
  const expected = request.ifVersion ?? 0;
  const current = state.version;
  const own = current > expected ? await deps.ledger.getVersion(request.path, expected + 1) : undefined;
  if (own?.uploadId === request.uploadId) return own;
  throw new VersionConflictError(request.path, expected, current);
}

function nextVersion(request: CommitRequest, state: CommitState, committedAt: string): FileVersion {
  return {
    path: request.path,
    version: state.version + 1,
    sha256: request.sha256,
    size: request.size,
    contentType: request.contentType,
    deleted: request.deleted,
    committedAt,
    uploadId: request.uploadId,
  };
}

function feedEntry(version: FileVersion, shard: number, seq: number, appendedAt: string): Change {
  return {
    shard,
    seq,
    path: version.path,
    version: version.version,
    sha256: version.sha256,
    size: version.size,
    contentType: version.contentType,
    deleted: version.deleted,
    committedAt: version.committedAt,
    appendedAt,
  };
}

/** The upload ended while this worker committed it: another delivery's commit stands, or its rejection. */
async function settledElsewhere(
  deps: CommitDeps,
  request: CommitRequest,
  upload: { status: string; version?: number | undefined },
): Promise<FileVersion> {
  const committed =
    upload.status === 'committed' && upload.version !== undefined
      ? await deps.ledger.getVersion(request.path, upload.version)
      : undefined;
  if (committed === undefined) throw new UploadFinishedError(request.uploadId, upload.status);
  return committed;
}

const ownHead = async (deps: CommitDeps, request: CommitRequest, state: CommitState) =>
  state.uploadId === request.uploadId ? deps.ledger.getVersion(request.path, state.version) : undefined;

/**
 * Full-jitter exponential backoff after a refused write, in units of the write's own round trip:
 * n writers racing for one path or one feed shard get through without colliding again once their
 * retries spread over about n round trips, whatever the store's latency (milliseconds on
 * DynamoDB, more on a loaded emulator). Capped at 64 round trips.
 */
const backOff = (attempt: number, roundTripMs: number): Promise<void> => {
  const unit = Math.max(1, roundTripMs);
  return sleep(backoffMs(attempt - 1, unit, 64 * unit));
};

/** Fans the version out, then marks its feed entry: an entry left unmarked is resent by the lag monitor. */
async function publish(deps: CommitDeps, version: FileVersion, change: Change): Promise<void> {
  crashPoint('commit.before-fanout');
  await fanOut(deps, version);
  await deps.ledger.markFannedOut(change.shard, change.seq);
}

/**
 * The file/folder rule of a pull target (a path cannot be a file where another live path makes it a
 * folder, nor lie under a live file), checked for a version about to be committed at `path`: what
 * lies under it through the live-files index here, its folders in the commit's own write (the
 * returned rule: no window between check and commit). Every commit of content goes
 * through it: an upload's bytes, a proof of possession, a restore. Refuses with `path_conflict`.
 */
export async function folderRuleFor(
  deps: Pick<CommitDeps, 'ledger' | 'targets'>,
  path: string,
): Promise<FolderRule | undefined> {
  const policy = new PathPolicy(deps.targets);
  const checked = policy.check(path);
  const folders = await policy.checkOccupancy(checked, deps.ledger, { deferFolders: MAX_RULED_FOLDERS });
  return policy.takesAsFile(checked) ? { folders } : undefined;
}

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
