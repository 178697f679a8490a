/**
 * What the domain needs from the outside world. Adapters in functions/adapters
 * implement these with the AWS SDK; the domain imports none of it.
 */
import type { PresignedPart, PresignedPut } from '../../contracts/api.js';
import type { Blob, Challenge, Change, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import type { VerificationProgress } from './verification.js';

/** What a commit reads before it writes: the path's head and its feed shard's last seq, read together. */
export interface CommitState {
  /** The path's newest version, 0 when it has none (versions and head move together in one write). */
  readonly version: number;
  /** The upload (or delete request) that wrote that version, when the ledger said. */
  readonly uploadId?: string | undefined;
  /** What that version holds, when the ledger said: content equal to the head makes no new version (core/commit.ts). */
  readonly content?: Pick<FileVersion, 'sha256' | 'size' | 'contentType' | 'deleted'> | undefined;
  /** The last seq appended to the shard's feed (0 for an empty shard). */
  readonly feedSeq: number;
  /**
   * The folders the path's live file was counted into (FolderRuleWrite), as its rule row records
   * them; [] when none; undefined when not read (a refusal's state).
   */
  readonly counted?: readonly string[] | undefined;
}

/**
 * One commit, written all or nothing: the version at `head + 1`, the path's head moved to it,
 * the shard's feed entry at `feedSeq + 1`, and, with `upload`, the pending upload ended as
 * committed (its pending pointer removed).
 */
export interface CommitWrite {
  readonly version: FileVersion;
  readonly change: Change;
  readonly upload?: { readonly deduplicated: boolean } | undefined;
  /**
   * The folder/file rule of a pull target, held by the write itself (docs/design-notes.md, "The
   * folder/file rule"): absent where no pull target takes the path.
   */
  readonly folderRule?: FolderRuleWrite | undefined;
  /** A verified blob's record written with the commit, on putBlob's condition: one write fewer. */
  readonly blob?: BlobRecord | undefined;
}

/**
 * How a commit keeps the folder/file rule. A file that `appears` (a first version, or content after
 * a tombstone) needs each of `folders` (the path's folders a pull target takes, at most
 * MAX_RULED_FOLDERS of contracts/paths.ts, which refuses deeper paths at their claim) to hold no live file and the path to
 * have no live file under it; it is counted into each folder, and the path's row records them. One
 * that `stays` (new content over a live file) needs the folders to hold no live file. One that
 * `goes` (a tombstone over a counted file) is counted out of `folders`: those its row recorded,
 * whatever the targets are now. The counts make "a live file under this path" a condition a write
 * can check, where the live-files index is only eventually consistent.
 */
export interface FolderRuleWrite {
  readonly folders: readonly string[];
  readonly change: 'appears' | 'stays' | 'goes';
}

/** A blob's record to write, pinning its object version over no pin, the same pin or `replaces`. */
export interface BlobRecord {
  readonly record: Blob;
  readonly replaces?: string | undefined;
}

export type CommitResult =
  | { readonly committed: true }
  | {
      readonly committed: false;
      /** The state that refused the write (the same one on contention with no newer state). */
      readonly state: CommitState;
      /** Set when the upload is no longer pending: its outcome stands (maybe this very version). */
      readonly upload?: Upload | undefined;
      /** Set when one of the rule's folders holds a live file: the path cannot be committed. */
      readonly occupied?: string | undefined;
      /** Set when live files lie under the path (it is their folder): the path cannot be a file. */
      readonly holdsFiles?: boolean | undefined;
      /** Set when `blob` was refused (another object version is pinned): the record that holds. */
      readonly pinned?: Blob | undefined;
    };

/**
 * What a pending pointer carries of its upload, as claimed: what the ingest needs to commit it.
 * Never the challenge (a pointer is readable by content); never the status, which the commit's own
 * condition checks (an upload ended meanwhile refuses it).
 */
export type PendingClaim = Pick<
  Upload,
  'uploadId' | 'path' | 'size' | 'contentType' | 'ifVersion' | 'newVersion' | 'createdAt' | 'expiresAt'
>;

export function pendingClaimOf(upload: Upload): PendingClaim {
  const { uploadId, path, size, contentType, ifVersion, newVersion, createdAt, expiresAt } = upload;
  return {
    uploadId,
    path,
    size,
    contentType,
    createdAt,
    ...(ifVersion === undefined ? {} : { ifVersion }),
    ...(newVersion === true ? { newVersion } : {}),
    ...(expiresAt === undefined ? {} : { expiresAt }),
  };
}

/** An upload waiting for its content, and the claim the pointer carries (absent on older pointers). */
export interface PendingPointer {
  readonly uploadId: string;
  readonly claim?: PendingClaim | undefined;
}

/** A request's claim on an Idempotency-Key (see core/idempotency.ts). Times are ISO-8601 UTC. */
export interface IdempotencyClaim {
  readonly key: string;
  /** SHA-256 of the request the key was first used for. */
  readonly requestHash: string;
  /** Identifies this claim: only its holder may store the answer or release it. */
  readonly claimToken: string;
  /** A claim still in progress after this (its request died) may be taken over. */
  readonly lockedUntil: string;
  /** After this the key is forgotten and may be used again. */
  readonly expiresAt: string;
  readonly now: string;
}

export interface IdempotencyRecord {
  readonly key: string;
  readonly requestHash: string;
  readonly status: 'in_progress' | 'completed';
  readonly lockedUntil: string | undefined;
  readonly expiresAt: string;
  /** The first answer, serialised, once completed. */
  readonly response?: string | undefined;
}

/** One part's presigned PUT: its size and SHA-256 are signed in. */
export interface PresignPartInput {
  readonly sha256: string;
  readonly multipartId: string;
  readonly partNumber: number;
  readonly size: number;
  readonly partSha256: string;
  readonly expiresInSeconds: number;
}

export interface Clock {
  now(): Date;
}

/** Uploads: their records, pending pointers by content, parts and proof-of-possession challenges. */
export interface UploadLedger {
  putUpload(upload: Upload): Promise<void>;
  /**
   * Records a new pending upload and its content's pointer, carrying the claim, in one atomic
   * write: written apart, a crash between the two left an upload no sweep finds, pending for good.
   * An upload id taken already is a ClaimTakenError, and nothing is written.
   */
  openUpload(upload: Upload): Promise<void>;
  getUpload(uploadId: string): Promise<Upload | undefined>;
  /** Ends a pending upload; an upload already ended keeps its outcome. */
  finishUpload(
    uploadId: string,
    outcome:
      | { status: 'committed'; version: number; deduplicated?: true | undefined }
      | { status: 'rejected' | 'expired'; reason: string },
    at: string,
  ): Promise<void>;
  /**
   * Points the content at the upload waiting for it; with `upload`, the pointer carries its claim
   * (pendingClaimOf), so the ingest commits it without reading the upload again.
   */
  addPendingUpload(sha256: string, uploadId: string, upload?: Upload): Promise<void>;
  listPendingUploads(sha256: string): Promise<string[]>;
  /** Every upload waiting for that content, with the claim its pointer carries, in one strongly consistent read. */
  listPendingClaims(sha256: string): Promise<PendingPointer[]>;
  removePendingUpload(sha256: string, uploadId: string): Promise<void>;
  /** Every upload still waiting for its blob (a table scan: for sweeps, not for requests). */
  scanPendingUploads(): AsyncIterable<{ sha256: string; uploadId: string }>;
  /**
   * One page of pending-upload pointers after `after` (an opaque position from an earlier page;
   * none: the start), eventually consistent; `next` is absent after the last page. A page reads at
   * most `limit` rows of the store, so it may hold fewer pointers (even none) and still have a next.
   */
  pagePendingUploads(options: { after?: string | undefined; limit: number }): Promise<{
    pointers: { sha256: string; uploadId: string }[];
    next?: string | undefined;
  }>;
  /** Where the lost-notification sweep's walk stopped (core/pending-sweep.ts); undefined: at a cycle's start. */
  getSweepCheckpoint(): Promise<string | undefined>;
  putSweepCheckpoint(after: string | undefined): Promise<void>;
  /** Replaces a pending upload's proof-of-possession challenge (a new claim of it). */
  setChallenge(uploadId: string, challenge: Challenge): Promise<void>;
  /**
   * Marks the challenge with this nonce answered, if it is the upload's current one and was not
   * answered yet (a conditional write). False otherwise: each challenge is weighed once.
   */
  spendChallenge(uploadId: string, nonce: string): Promise<boolean>;
  /**
   * Records when the client asked to complete the upload (a retried complete moves it), if the
   * upload is still pending (a conditional write). False when it is not: its outcome stands.
   */
  markCompletionRequested(uploadId: string, at: string): Promise<boolean>;
  /** Records a part the uploader reports stored (S3 re-checks its ETag at completion). */
  recordPart(uploadId: string, part: StoredPart): Promise<void>;
  listParts(uploadId: string): Promise<StoredPart[]>;
}

/** Idempotency keys of API requests (see core/idempotency.ts). */
export interface IdempotencyLedger {
  /**
   * Claims the key for a request. Returns undefined when the claim is ours; otherwise the record
   * holding the key (completed, or in progress elsewhere). A record past `expiresAt`, or one still in
   * progress past `lockedUntil`, is claimed over.
   */
  claimIdempotencyKey(claim: IdempotencyClaim): Promise<IdempotencyRecord | undefined>;
  /** Stores the first answer if the claim is still ours; false if it was taken over. */
  completeIdempotencyKey(key: string, claimToken: string, response: string): Promise<boolean>;
  /** Drops our in-progress claim (the request failed: a retry runs it afresh); false if not ours. */
  releaseIdempotencyKey(key: string, claimToken: string): Promise<boolean>;
}

/** Verified content, by SHA-256. */
export interface BlobLedger {
  getBlob(sha256: string): Promise<Blob | undefined>;
  /**
   * The blob's record and every upload waiting for that content, with the claim its pointer
   * carries (none for a pointer added without one): strongly consistent reads, side by side.
   */
  getBlobAndPending(sha256: string): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }>;
  /**
   * The blob's record and one upload's pointer to that content (`pending` holds it, or nothing when
   * there is none), in one strongly consistent read: bytes sent through an upload's URL name that
   * upload and commit it alone, so its ingest needs no other pointer.
   */
  getBlobAndPendingOf(
    sha256: string,
    uploadId: string,
  ): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }>;
  /**
   * Records a verified blob. One with a versionId pins that object version: it is written only over
   * no pin, the same pin, or `replaces` (a pinned version found gone). Returns the record that holds,
   * which is another writer's pin when that one won.
   */
  putBlob(blob: Blob, options?: { replaces?: string | undefined }): Promise<Blob>;
  deleteBlob(sha256: string): Promise<void>;
  /**
   * Saves a verification in ranges part-way through, over any saved before for that object. Only
   * the ingest writes these: a continuation message names the object, the state is read from here.
   */
  putVerificationProgress(progress: VerificationProgress): Promise<void>;
  /** The progress saved for that object (version, or ETag where storage keeps no versions). */
  getVerificationProgress(object: {
    readonly sha256: string;
    readonly versionId?: string | undefined;
    readonly etag?: string | undefined;
  }): Promise<VerificationProgress | undefined>;
}

/** Versions, heads and the change feed: the commit protocol (core/commit.ts, docs/design-notes.md). */
export interface VersionLedger {
  /** The path's head and the shard's last feed seq, as one consistent read. */
  readCommitState(path: string, shard: number): Promise<CommitState>;
  /**
   * Writes the commit if the path's head is still at `version - 1`, the shard's feed still ends at
   * `change.seq - 1`, and (with `upload`) the upload is still pending; otherwise writes nothing
   * and says what it found.
   */
  commit(write: CommitWrite): Promise<CommitResult>;
  getVersion(path: string, version: number): Promise<FileVersion | undefined>;
  listVersions(path: string, options: { limit: number; before?: number }): Promise<FileVersion[]>;
  /** The path's newest version, strongly consistent (a tombstone when the file was deleted). */
  getHead(path: string): Promise<FileVersion | undefined>;
  /** Those of `paths` whose head is a live (not deleted) file. */
  liveFilesAmong(paths: readonly string[]): Promise<string[]>;
  /** Whether any live file lies under `folder/` (an index, so eventually consistent). */
  hasLiveFileUnder(folder: string): Promise<boolean>;
  /**
   * One page of live files (heads that are not tombstones) whose path starts with `prefix`: '' for
   * every file, otherwise a prefix naming its top folder (it holds a '/'). Read from the live-files
   * index, so a file committed a moment ago may be missing; each file is then read strongly
   * consistently (a file deleted meanwhile is left out, a newer version shows). With a prefix, paths
   * come in order; without one, in no particular order. `after` is the `next` of an earlier page (a
   * path); a page reads at most `limit` index entries, so it may hold fewer files and still have a
   * `next`, which is absent after the last page.
   */
  listLiveFiles(options: { prefix: string; after?: string | undefined; limit: number }): Promise<{
    files: FileVersion[];
    next?: string | undefined;
  }>;
  /** Every path's head, page by page (a table scan: for reconciliation, not for requests). */
  scanHeads(): AsyncIterable<FileVersion>;
  /**
   * One page of heads after `after` (an opaque position from an earlier page; none: the start),
   * eventually consistent; `next` is absent after the last page. A page reads at most `limit` rows
   * of the store, so it may hold fewer heads (even none) and still have a next one.
   */
  pageHeads(options: { after?: string | undefined; limit: number }): Promise<{
    heads: FileVersion[];
    next?: string | undefined;
  }>;

  /** The last seq of a shard's feed (0 when empty). */
  latestFeedSeq(shard: number): Promise<number>;
  /** Marks a feed entry's fan-out done: every selecting target's queue accepted the version. */
  markFannedOut(shard: number, seq: number): Promise<void>;
  /** Entries of one shard with seq > afterSeq, oldest first. */
  readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]>;
}

/** What each target holds, and how far each target's lag has been measured. */
export interface TargetLedger {
  getTargetState(path: string, targetId: string): Promise<TargetState | undefined>;
  /**
   * What replicating a path to a target reads first, each strongly consistent, in one request
   * (DynamoDB: one BatchGetItem, not three GetItems): the path's head, the target's row for the
   * path, and the blob of `sha256` when one is named.
   */
  readForReplication(path: string, targetId: string, sha256: string | undefined): Promise<ReplicationRead>;
  listTargetStates(path: string, targetIds: readonly string[]): Promise<TargetState[]>;
  /** Records a target's state for a version; refuses (returns false) to go below what it holds. */
  recordTargetState(state: TargetState): Promise<boolean>;
  /** Records that applying a version failed, with the reason; the applied version is left as it is. */
  recordTargetFailure(failure: {
    targetId: string;
    path: string;
    version: number;
    reason: string;
    at: string;
  }): Promise<void>;
  /** Forgets what a target holds for a path (reconciliation found the object missing or altered). */
  forgetTargetState(path: string, targetId: string): Promise<void>;
  /** The feed cursor below which every change is applied at the target (see lag.ts). */
  getWatermark(targetId: string): Promise<readonly number[] | undefined>;
  /** Moves the watermark alone (the figures stored beside it stay). */
  setWatermark(targetId: string, cursor: readonly number[]): Promise<void>;
  /**
   * Which version each of `paths` has applied at the target (absent: nothing), in as few calls as
   * the store allows (DynamoDB: one BatchGetItem per 100 paths).
   */
  appliedVersions(targetId: string, paths: readonly string[]): Promise<Map<string, number>>;
  /** The lag monitor's record of a target: its watermark and the figures of its latest run. */
  getLagRecord(targetId: string): Promise<LagRecord | undefined>;
  /**
   * Stores watermark and figures in one write (a run saves as it goes, not only at its end), if the
   * record's rewinds are still `record.rewinds` (0: none); false, writing nothing, when reconcile
   * moved the watermark back since the run read it.
   */
  putLagRecord(targetId: string, record: LagRecord): Promise<boolean>;
  /**
   * Moves the target's watermark back below the feed entry of `path`'s `version`, never forward,
   * and counts the rewind: the lag monitor reads that change again. Reconcile forgot the target's
   * row for it (the replica's object was missing or altered), so the change is pending again.
   */
  rewindWatermark(targetId: string, path: string, version: number): Promise<void>;
  /** The multipart copy left open at the target for a path, if any (see CopyUpload). */
  getCopyUpload(targetId: string, path: string): Promise<CopyUpload | undefined>;
  /** Records the open multipart copy of a path, replacing any record before it. */
  putCopyUpload(targetId: string, path: string, upload: CopyUpload): Promise<void>;
  /** Forgets the record if it still names `uploadId` (a newer copy's record stays). */
  deleteCopyUpload(targetId: string, path: string, uploadId: string): Promise<void>;
}

/** See TargetLedger.readForReplication. */
export interface ReplicationRead {
  readonly head: FileVersion | undefined;
  readonly state: TargetState | undefined;
  readonly blob: Blob | undefined;
}

/**
 * A multipart copy to a replica that an invocation's deadline stopped: the upload is kept so the
 * next delivery continues it. What it copies is named in full, so a record for another version,
 * other source bytes or another part size is never continued (its upload is aborted instead).
 */
export interface CopyUpload {
  readonly uploadId: string;
  readonly version: number;
  readonly sha256: string;
  readonly sourceVersionId?: string | undefined;
  readonly partBytes: number;
  readonly startedAt: string;
  /** After this the upload is aborted, not continued: the bucket's lifecycle rule is about to drop it. */
  readonly expiresAt: string;
}

/** The record of one path's open multipart copy at one target, as the replica store sees it. */
export interface CopyCheckpoint {
  load(): Promise<CopyUpload | undefined>;
  save(upload: CopyUpload): Promise<void>;
  clear(uploadId: string): Promise<void>;
}

/** A target's replication lag as the lag monitor last measured it (core/lag.ts). */
export interface LagFigures {
  /** Age of the oldest committed change not applied, at `measuredAt`; an upper bound unless `caughtUp`. */
  readonly lagSeconds: number;
  /** Changes not applied; a lower bound when `pendingCapped`. */
  readonly pending: number;
  readonly pendingCapped: boolean;
  /** The monitor's scan reached the feed's end, or the oldest unapplied change, in every shard. */
  readonly caughtUp: boolean;
  readonly measuredAt: string;
  readonly oldestPending?:
    | { readonly path: string; readonly version: number; readonly committedAt: string }
    | undefined;
  /**
   * Pull targets: the agent rebuilds its folder from the feed (AgentReport.rebuilding); the lag is
   * then counted from the oldest change it may still lack, and is not `caughtUp`.
   */
  readonly agentRebuilding?: boolean | undefined;
}

export interface LagRecord {
  readonly cursor: readonly number[];
  readonly figures?: LagFigures | undefined;
  /**
   * The target's path prefix the watermark was measured for ('' for every path): changes the
   * watermark passed as not selected may be selected by another prefix. Absent in records saved
   * before it was kept.
   */
  readonly selection?: string | undefined;
  /**
   * How many times reconcile moved the watermark back (rewindWatermark): a monitor run saves only
   * over the count it read, so a rewind made while it ran is never written over.
   */
  readonly rewinds?: number | undefined;
}

/** Where reconciliation's walk over the heads stands, so that the next run goes on from there. */
export interface ReconcileCheckpoint {
  /** The store's position after the last page done (opaque); absent at the start of a cycle. */
  readonly after?: string | undefined;
  /** When the current cycle over every head began. */
  readonly cycleStartedAt: string;
  /** Heads visited so far in this cycle. */
  readonly heads: number;
  /** When the last full cycle ended, if one did. */
  readonly lastCycleEndedAt?: string | undefined;
  /** Where the listing of the S3 targets' buckets stopped, while one is unfinished (core/reconcile.ts). */
  readonly listing?: ListingPosition | undefined;
}

/** Where an unfinished listing of the replica buckets goes on: the target, and the key to list after. */
export interface ListingPosition {
  readonly targetId: string;
  /** Absent: the target's listing has not begun (the one before it reached its last key). */
  readonly after?: string | undefined;
}

/** Reconciliation's own progress (one row). */
export interface ReconcileLedger {
  getReconcileCheckpoint(): Promise<ReconcileCheckpoint | undefined>;
  putReconcileCheckpoint(checkpoint: ReconcileCheckpoint): Promise<void>;
}

/** What a pull target's agent last reported about itself (its row `AGENT#<target>`). */
export interface AgentReport {
  readonly heartbeatAt: string;
  /** What keeps it from applying (`disk-full`, `access-denied`...): none while it works. */
  readonly conditions: readonly string[];
  /**
   * Its folder is being rebuilt from the feed (its state was made from nothing): the target's rows,
   * written by an earlier run, overstate what it holds. `since`: when the oldest change it may
   * still lack was committed, once it knows.
   */
  readonly rebuilding?: { readonly since?: string | undefined } | undefined;
}

/** What on-premises agents report about themselves. */
export interface AgentLedger {
  getAgentReport(targetId: string): Promise<AgentReport | undefined>;
}

/** The whole ledger: one DynamoDB table (adapters/dynamo-ledger.ts), or in memory for tests. */
export interface Ledger
  extends UploadLedger,
    IdempotencyLedger,
    BlobLedger,
    VersionLedger,
    TargetLedger,
    AgentLedger,
    ReconcileLedger {}

/** What a presigned GET of a blob answers with (BlobStore.presignGet). */
export interface BlobGetOptions {
  /** The object version: the verified bytes, not whatever was written at the key since. */
  readonly versionId?: string | undefined;
  /** The file's own type: the bytes are shared by every file that holds them. */
  readonly contentType: string;
  /** `attachment`: a browser saves the file instead of showing it (core/uploads.ts, contentDisposition). */
  readonly contentDisposition?: string | undefined;
}

/** The origin bucket, where blobs live at `blobs/<sha256>`. */
export interface BlobStore {
  /** Size, storage identity and a full-object SHA-256 (hex) if storage reports one; undefined if absent. */
  stat(
    sha256: string,
    versionId?: string,
  ): Promise<
    | {
        size: number;
        etag: string | undefined;
        versionId: string | undefined;
        sha256: string | undefined;
        /** When storage stored the object (S3's LastModified): decides whether an upload's bytes came in time. */
        lastModified?: Date | undefined;
        /** The upload whose presigned URL (or multipart upload) stored these bytes, if it says. */
        uploadId?: string | undefined;
        /**
         * Response headers stored with the object that no upload URL signs and that change what a
         * reader gets (`content-encoding`, `content-disposition`): storage serves them with every read.
         */
        unsignedHeaders?: readonly string[] | undefined;
      }
    | undefined
  >;
  /** Streams the object through SHA-256: constant memory. */
  hash(sha256: string, versionId?: string): Promise<{ sha256: string; size: number }>;
  delete(sha256: string, versionId?: string): Promise<void>;
  /**
   * `length` bytes from `offset` (a ranged GET), of the given object version when there is one;
   * undefined when that object (version) is gone.
   */
  readRange(
    sha256: string,
    offset: number,
    length: number,
    versionId?: string,
  ): Promise<Uint8Array | undefined>;
  /** A PUT URL binding the bytes to `uploadId`: the stored object names the upload that sent it. */
  presignPut(input: {
    sha256: string;
    size: number;
    contentType: string;
    expiresInSeconds: number;
    uploadId: string;
  }): Promise<Pick<PresignedPut, 'url' | 'headers'>>;
  /**
   * A GET URL for the blob; with a versionId, for that object version only (the verified bytes).
   * Its answer carries `contentType`: the bytes are shared by every file that holds them, and the
   * stored object keeps the type of whichever upload sent them.
   */
  presignGet(sha256: string, expiresInSeconds: number, options: BlobGetOptions): Promise<string>;

  // Multipart uploads to blobs/<sha256>, each part's SHA-256 signed into its URL.
  /** Starts a multipart upload whose object will name `uploadId`, as a single PUT's does. */
  createMultipart(sha256: string, contentType: string, uploadId: string): Promise<string>;
  presignPart(input: PresignPartInput): Promise<Pick<PresignedPart, 'url' | 'headers'>>;
  completeMultipart(sha256: string, multipartId: string, parts: readonly StoredPart[]): Promise<void>;
  abortMultipart(sha256: string, multipartId: string): Promise<void>;
}

export interface StoredPart {
  readonly partNumber: number;
  readonly size: number;
  readonly etag: string;
  /** Hex SHA-256 of the part, as signed into its URL. */
  readonly sha256: string;
}

/** A replica bucket, files stored under their paths. */
export interface ReplicaStore {
  /** The version and SHA-256 recorded in the object's metadata, if the object exists. */
  stat(
    path: string,
  ): Promise<
    | { version: number | undefined; sha256: string | undefined; size: number; etag: string | undefined }
    | undefined
  >;
  /**
   * Server-side copy of the origin blob to the path, with metadata. Returns the stored SHA-256 if
   * storage reports it, and the new object's ETag (what reconciliation compares later).
   */
  copyFromOrigin(
    message: ReplicationMessage & {
      sha256: string;
      /** The origin object version the ledger verified: the copy reads that version, not whatever is current. */
      sourceVersionId?: string | undefined;
    },
    /**
     * `signal` aborts the copy (the invocation's deadline). Without a `checkpoint` nothing half-made
     * is left at the target; with one, a multipart copy stopped by `signal` keeps its upload and
     * records it there, and the next call for the same version continues it.
     */
    options?: { signal?: AbortSignal; checkpoint?: CopyCheckpoint },
  ): Promise<{ storedSha256: string | undefined; etag: string | undefined }>;
  delete(path: string): Promise<void>;
  /**
   * One page of the objects under the target's key prefix, in key order, each with the path it
   * stands for (the key with the prefix taken off: the inverse of where `copyFromOrigin` writes).
   * `after` is the `next` of an earlier page (opaque; none: the first page); `next` is absent
   * after the last page. A page holds at most `limit` objects.
   */
  list(options: { after?: string | undefined; limit: number }): Promise<{
    objects: { key: string; path: string }[];
    next?: string | undefined;
  }>;
  /**
   * Its answer carries the type (and disposition) of the version the link is handed out for, whatever
   * the replica object holds when it is opened: the object is the path's, a newer version may be
   * applied over it meanwhile (the bucket keeps no versions to name).
   */
  presignGet(
    path: string,
    expiresInSeconds: number,
    options: Omit<BlobGetOptions, 'versionId'>,
  ): Promise<string>;
}

export interface FanoutQueue {
  /**
   * Sends one version to one target's FIFO queue (group = path, dedup = path + version).
   * A `resend` tag makes a deliberate resend distinct from the original for the queue's deduplication.
   */
  send(message: ReplicationMessage, options?: { resend?: string }): Promise<void>;
}

export interface Metrics {
  count(name: string, value?: number, dimensions?: Record<string, string>): void;
  /**
   * A count published at once (with whatever is counted so far), not when the invocation ends: for a
   * fact no retry will count again, which an invocation killed before its end (a timeout) would
   * otherwise lose. Each call costs a log line of its own.
   */
  countAtOnce(name: string, value?: number): void;
  bytes(name: string, value: number, dimensions?: Record<string, string>): void;
  milliseconds(name: string, value: number, dimensions?: Record<string, string>): void;
  seconds(name: string, value: number, dimensions?: Record<string, string>): void;
}
