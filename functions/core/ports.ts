/**
 * What the domain needs from the outside world. Adapters in functions/adapters
 * implement these with the AWS SDK; the domain imports none of it.
 */
import type { PresignedPart, PresignedPut } from '../../contracts/api.js';
import type { Blob, Challenge, Change, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import type { ReplicationMessage } from '../../contracts/replication-message.js';

export interface ClaimedVersion {
  readonly version: FileVersion;
  /** Set once the version's feed entry exists. */
  readonly feedSeq: number | undefined;
  /** A feed seq an earlier attempt reserved but may not have claimed. */
  readonly feedSeqReserved: number | undefined;
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

export interface Ledger {
  // Uploads
  putUpload(upload: Upload): Promise<void>;
  getUpload(uploadId: string): Promise<Upload | undefined>;
  /**
   * Compare-and-set of the upload's reserved version: sets `next` if the reservation is still
   * `expected` (or absent when `expected` is undefined). Returns the reservation that holds.
   */
  reserveVersion(uploadId: string, expected: number | undefined, next: number): Promise<number>;
  /** Ends a pending upload; an upload already ended keeps its outcome. */
  finishUpload(
    uploadId: string,
    outcome:
      | { status: 'committed'; version: number; deduplicated?: true | undefined }
      | { status: 'rejected' | 'expired'; reason: string },
    at: string,
  ): Promise<void>;
  addPendingUpload(sha256: string, uploadId: string): Promise<void>;
  /** Replaces a pending upload's proof-of-possession challenge (a new claim of it). */
  setChallenge(uploadId: string, challenge: Challenge): Promise<void>;
  /**
   * Marks the challenge with this nonce answered, if it is the upload's current one and was not
   * answered yet (a conditional write). False otherwise: each challenge is weighed once.
   */
  spendChallenge(uploadId: string, nonce: string): Promise<boolean>;

  // Idempotency keys
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
  /** Records a part the uploader reports stored (S3 re-checks its ETag at completion). */
  recordPart(uploadId: string, part: StoredPart): Promise<void>;
  listParts(uploadId: string): Promise<StoredPart[]>;
  listPendingUploads(sha256: string): Promise<string[]>;
  removePendingUpload(sha256: string, uploadId: string): Promise<void>;

  // Blobs
  getBlob(sha256: string): Promise<Blob | undefined>;
  /**
   * Records a verified blob. One with a versionId pins that object version: it is written only over
   * no pin, the same pin, or `replaces` (a pinned version found gone). Returns the record that holds,
   * which is another writer's pin when that one won.
   */
  putBlob(blob: Blob, options?: { replaces?: string | undefined }): Promise<Blob>;
  deleteBlob(sha256: string): Promise<void>;

  // Versions
  /** The highest claimed version of a path (strongly consistent). */
  latestVersion(path: string): Promise<FileVersion | undefined>;
  /**
   * Claims `version.version` for its path, or finds it already claimed by the same upload (then the
   * stored claim is returned as it is). Throws ClaimTakenError if another upload holds it.
   */
  claimVersion(version: FileVersion, shard: number): Promise<ClaimedVersion>;
  getVersion(path: string, version: number): Promise<FileVersion | undefined>;
  listVersions(path: string, options: { limit: number; before?: number }): Promise<FileVersion[]>;
  recordFeedSeq(path: string, version: number, seq: number): Promise<void>;
  /** Moves the head forward to this version; never back. Returns false if the head was already at or past it. */
  advanceHead(version: FileVersion): Promise<boolean>;
  getHead(path: string): Promise<FileVersion | undefined>;
  /** Those of `paths` whose head is a live (not deleted) file. */
  liveFilesAmong(paths: readonly string[]): Promise<string[]>;
  /** Whether any live file lies under `folder/` (an index, so eventually consistent). */
  hasLiveFileUnder(folder: string): Promise<boolean>;

  // Change feed
  latestFeedSeq(shard: number): Promise<number>;
  /** Claims `(shard, seq)`, or finds it held by the same path and version; throws ClaimTakenError if another holds it. */
  claimFeedEntry(change: Change): Promise<void>;
  /** Marks a feed entry's fan-out done: every selecting target's queue accepted the version. */
  markFannedOut(shard: number, seq: number): Promise<void>;
  /** Entries of one shard with seq > afterSeq, oldest first. */
  readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]>;
  /** Compare-and-set of the feed seq reserved on a version item (as reserveVersion does on uploads). */
  reserveFeedSeq(path: string, version: number, expected: number | undefined, next: number): Promise<number>;

  /** Every path's head, page by page (a table scan: for reconciliation, not for requests). */
  scanHeads(): AsyncIterable<FileVersion>;
  /** Every upload still waiting for its blob (a table scan, likewise). */
  scanPendingUploads(): AsyncIterable<{ sha256: string; uploadId: string }>;

  // Lag
  /** The feed cursor below which every change is applied at the target (see lag.ts). */
  getWatermark(targetId: string): Promise<readonly number[] | undefined>;
  setWatermark(targetId: string, cursor: readonly number[]): Promise<void>;
  /** When a pull target's agent last reported (its row `AGENT#<target>`). */
  getAgentHeartbeat(targetId: string): Promise<string | undefined>;

  // Targets
  getTargetState(path: string, targetId: string): Promise<TargetState | undefined>;
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
  /** A GET URL for the blob; with a versionId, for that object version only (the verified bytes). */
  presignGet(sha256: string, expiresInSeconds: number, versionId?: string): Promise<string>;

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
  ): Promise<{ storedSha256: string | undefined; etag: string | undefined }>;
  delete(path: string): Promise<void>;
  presignGet(path: string, expiresInSeconds: number): Promise<string>;
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
  bytes(name: string, value: number, dimensions?: Record<string, string>): void;
  milliseconds(name: string, value: number, dimensions?: Record<string, string>): void;
  seconds(name: string, value: number, dimensions?: Record<string, string>): void;
}
