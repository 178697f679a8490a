/**
 * A blob landed in the origin bucket: prove its bytes, then commit every
 * upload waiting for them. Nothing is committed before the proof (invariant 2).
 */

import type { Blob, Upload } from '../../contracts/model.js';
import {
  type BlobRecordWrite,
  type CommitDeps,
  commitVersion,
  endUploadAtHead,
  folderRuleFor,
  keepsEqualHeadOf,
} from './commit.js';
import { UploadFinishedError, ValidationError, VersionConflictError } from './errors.js';
import { expireUpload, isLapsed, storedInWindow, uploadExpiresAt } from './expiry.js';
import {
  type BlobLedger,
  type BlobStore,
  type Metrics,
  type PendingClaim,
  type PendingPointer,
  pendingClaimOf,
  type UploadLedger,
  type VersionLedger,
} from './ports.js';
import {
  DEFAULT_ONE_PASS_MAX_BYTES,
  hashInRanges,
  type VerificationOptions,
  type VerificationPointer,
  type VerificationProgress,
} from './verification.js';

export interface IngestDeps extends CommitDeps {
  readonly ledger: UploadLedger & BlobLedger & VersionLedger;
  readonly blobs: BlobStore;
  readonly metrics: Metrics;
}

/** What the storage event says; claims, not facts. */
export interface BlobEvent {
  readonly key: string;
  readonly size: number;
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
  /** When the event says the object was created (S3's eventTime): the stored time if the object is gone. */
  readonly eventTime?: string | undefined;
}

/** How to verify: large objects in ranges across invocations, going on from `resume`. */
export interface IngestOptions {
  /** Without it every object is hashed in one pass, however large. */
  readonly verification?: VerificationOptions | undefined;
  /** A verification part-way through, as the ingest saved it (`savedProgress`). */
  readonly resume?: VerificationProgress | undefined;
}

export type IngestOutcome =
  | { kind: 'ignored'; reason: string }
  /** Not proven yet: the hash goes on from `progress` in another invocation. */
  | { kind: 'verifying'; sha256: string; progress: VerificationProgress }
  | {
      kind: 'rejected';
      sha256: string;
      reason: string;
      uploads: string[];
      /** Set when the rejected bytes were another version over a pinned blob (deleted by its id). */
      discarded?: DiscardedVersion;
    }
  | {
      kind: 'committed';
      sha256: string;
      committed: { uploadId: string; path: string; version: number }[];
      rejected: string[];
      /** Uploads whose bytes were stored after they expired: ended, never committed. */
      expired?: string[];
      /** Another object version at the blob's key, deleted: the verified one stays pinned. */
      discarded?: DiscardedVersion;
    };

export interface DiscardedVersion {
  readonly versionId: string;
  readonly reason: string;
}

/** Why a version holding the pinned bytes again was deleted. */
const DUPLICATE = 'duplicate of the pinned version';

const BLOB_KEY = /^blobs\/([0-9a-f]{64})$/;

function sha256OfKey(key: string): string | undefined {
  return BLOB_KEY.exec(key)?.[1];
}

/** The storage event a continuation stands for. */
export function progressEvent(pointer: VerificationPointer): BlobEvent {
  return {
    key: `blobs/${pointer.sha256}`,
    size: pointer.size,
    etag: pointer.etag,
    versionId: pointer.versionId,
    eventTime: pointer.eventTime,
  };
}

/**
 * The progress the ingest saved for the object a continuation names, to go on from; none (the hash
 * starts over) when it saved none of that size. The message is a claim like S3's event: whoever may
 * send to the queue can send one, so nothing it says is taken but which object to hash.
 */
export async function savedProgress(
  ledger: BlobLedger,
  pointer: VerificationPointer,
): Promise<VerificationProgress | undefined> {
  const saved = await ledger.getVerificationProgress(pointer);
  return saved?.size === pointer.size ? saved : undefined;
}

export async function ingestBlob(
  deps: IngestDeps,
  event: BlobEvent,
  options: IngestOptions = {},
): Promise<IngestOutcome> {
  const sha256 = sha256OfKey(event.key);
  if (!sha256) {
    deps.metrics.count('IngestIgnored');
    return { kind: 'ignored', reason: `key "${event.key}" is not blobs/<sha256>` };
  }
  const { known, pending, stored } = await readBeforeProof(deps, event, sha256);
  const proof = await proveBlob(deps, event, sha256, known, stored, options);
  if ('kind' in proof) return proof;
  const run = pendingRun(deps, event, sha256, proof, stored);
  for (const pointer of pending) await settlePending(run, pointer);
  await settleSender(run, pending);
  const discarded = proof.record ? await recordBlob(deps, proof.record) : proof.discarded;
  // Only now: the uploads that sent this duplicate are committed, and a redelivered event (this
  // invocation dying before here) still finds the version that names them.
  if (discarded?.reason === DUPLICATE) await discardDuplicate(deps, sha256, discarded.versionId);
  return {
    kind: 'committed',
    sha256,
    committed: run.committed,
    rejected: run.rejected,
    ...(run.expired.length > 0 ? { expired: run.expired } : {}),
    ...(discarded ? { discarded } : {}),
  };
}

type StoredObject = NonNullable<Awaited<ReturnType<BlobStore['stat']>>>;

/**
 * Before the proof: the event's object version as storage holds it, the blob's record, and the
 * uploads waiting for the content. A claim made after the read is not missed: every claim is told
 * to send its bytes (or prove it holds them once they are verified), and bytes sent through its
 * URL name it, so only their own event commits it. For the same reason bytes that name their
 * upload commit that upload alone (bytesAreForUpload): its pointer is read with the record in one
 * call (getBlobAndPendingOf). Bytes that name none (written around the API), or an object gone,
 * read every pointer beside the record, as before.
 */
async function readBeforeProof(
  deps: IngestDeps,
  event: BlobEvent,
  sha256: string,
): Promise<{ known: Blob | undefined; pending: PendingPointer[]; stored: StoredObject | undefined }> {
  const stored = await deps.blobs.stat(sha256, event.versionId);
  const { blob, pending } =
    stored?.uploadId === undefined
      ? await deps.ledger.getBlobAndPending(sha256)
      : await deps.ledger.getBlobAndPendingOf(sha256, stored.uploadId);
  return { known: blob, pending, stored };
}

/** The blob's bytes, proven: the verified record, and what storage said of the event's object version. */
interface Proof {
  readonly blob: Blob;
  /** Another object version at the blob's key, deleted: the verified one stays pinned. */
  readonly discarded?: DiscardedVersion | undefined;
  /** Kept when storage was asked: the event's object version may be discarded meanwhile. */
  readonly eventStat: StoredObject | undefined;
  /** The verified record not written yet: the first commit carries it (recordBlob writes it if none did). */
  readonly record?: BlobRecordWrite | undefined;
}

/**
 * The verified record, if no commit carried it; the event's version is a duplicate to delete when
 * another version holds the pin (a concurrent verification pinned it first).
 */
async function recordBlob(deps: IngestDeps, write: BlobRecordWrite): Promise<DiscardedVersion | undefined> {
  write.held ??= await deps.ledger.putBlob(write.record, { replaces: write.replaces });
  const { versionId } = write.record;
  return versionId !== undefined && write.held.versionId !== versionId
    ? { versionId, reason: DUPLICATE }
    : undefined;
}

/** Proves the event's bytes (or finds them proven already); an outcome when they cannot be. */
async function proveBlob(
  deps: IngestDeps,
  event: BlobEvent,
  sha256: string,
  known: Blob | undefined,
  stored: StoredObject | undefined,
  options: IngestOptions,
): Promise<Proof | IngestOutcome> {
  if (known && isVerifiedObject(known, event)) return { blob: known, eventStat: undefined };
  if (!stored) return { kind: 'ignored', reason: 'the object is gone (deleted after the event)' };
  const pinning = await checkPinned(deps, sha256, known, stored, options);
  if ('kind' in pinning) return pinning;
  if (pinning.blob) return { blob: pinning.blob, discarded: pinning.discarded, eventStat: stored };
  return verifyStoredBytes(deps, sha256, known, stored, pinning.pinnedGone, options);
}

/**
 * Versioned storage: the verified version stays pinned whatever is written over it later. The
 * pinned blob when the event is about it or about a duplicate of it (discarded); pinnedGone when
 * the pinned version no longer exists.
 */
async function checkPinned(
  deps: IngestDeps,
  sha256: string,
  known: Blob | undefined,
  stored: StoredObject,
  options: IngestOptions,
): Promise<
  { blob?: Blob | undefined; discarded?: DiscardedVersion | undefined; pinnedGone: boolean } | IngestOutcome
> {
  const pinned = known?.versionId;
  if (!known || pinned === undefined || stored.versionId === undefined) return { pinnedGone: false };
  if (stored.versionId === pinned) return { blob: known, pinnedGone: false };
  if (!(await deps.blobs.stat(sha256, pinned))) return { pinnedGone: true };
  const discarded = await discardVersion(deps, known, { ...stored, versionId: stored.versionId }, options);
  // Still hashing (or gone meanwhile): nothing is deleted or decided until every byte is read.
  if ('kind' in discarded) return discarded;
  // Bad bytes commit nothing: a claim of known content is committed by its proof of
  // possession or by good bytes of its own, never by someone's failed overwrite. The upload the
  // bytes name (signed into its URL) is over, though: it ends now with the mismatch, not at the
  // sweep as "expired" (probe 9, F2). Bytes that name none end no one's upload here.
  if (discarded.reason !== DUPLICATE) {
    const uploads =
      stored.uploadId === undefined
        ? []
        : await rejectWaiting(deps, sha256, [stored.uploadId], discarded.reason);
    return { kind: 'rejected', sha256, reason: discarded.reason, uploads, discarded };
  }
  return { blob: known, discarded, pinnedGone: false };
}

/** Hashes the stored bytes (or trusts storage's full-object SHA-256) and records the blob as verified. */
async function verifyStoredBytes(
  deps: IngestDeps,
  sha256: string,
  known: Blob | undefined,
  stored: StoredObject,
  pinnedGone: boolean,
  options: IngestOptions,
): Promise<Proof | IngestOutcome> {
  const { ledger, clock, metrics } = deps;
  // Unversioned, bad bytes have replaced the verified ones; a lost pin held nothing either.
  const rejectStored = (reason: string) =>
    reject(
      deps,
      { sha256, versionId: stored.versionId, sentBy: stored.uploadId },
      known !== undefined && (stored.versionId === undefined || pinnedGone),
      reason,
    );
  // Right bytes served with a header of the uploader's choosing are wrong bytes to whoever reads
  // them (content-encoding: gzip gets them decoded), for every file that later shares the blob.
  if (stored.unsignedHeaders !== undefined && stored.unsignedHeaders.length > 0)
    return rejectStored(
      `unsigned_headers: stored with ${stored.unsignedHeaders.join(', ')}, which no upload URL signs`,
    );
  const actual = await hashStored(deps, sha256, stored, options);
  if ('kind' in actual) return actual;
  if (actual.sha256 !== sha256 || actual.size !== stored.size)
    return rejectStored(`sha256 mismatch: the stored bytes hash to ${actual.sha256}`);
  const record: Blob = {
    sha256,
    size: actual.size,
    verifiedAt: clock.now().toISOString(),
    etag: stored.etag,
    versionId: stored.versionId,
  };
  const replaces = pinnedGone ? known?.versionId : undefined;
  metrics.count('BlobsVerified');
  metrics.bytes('BytesVerified', actual.size);
  // Proven in one pass, the record rides on the first commit (a crash before it costs one hash
  // again); a proof that took ranges across invocations is written at once.
  if (options.resume === undefined && stored.size <= onePassMaxBytes(options))
    return { blob: record, eventStat: stored, record: { record, replaces } };
  const blob = await ledger.putBlob(record, { replaces });
  if (stored.versionId !== undefined && blob.versionId !== stored.versionId) {
    // A concurrent verification pinned another version first: this one would never be read (it
    // goes once the uploads it carries are settled).
    return { blob, discarded: { versionId: stored.versionId, reason: DUPLICATE }, eventStat: stored };
  }
  return { blob, eventStat: stored };
}

const onePassMaxBytes = (options: IngestOptions): number =>
  options.verification?.onePassMaxBytes ?? DEFAULT_ONE_PASS_MAX_BYTES;

/**
 * Trusts a full-object SHA-256 that storage reports having stored; else hashes the bytes: in one
 * pass up to `onePassMaxBytes`, above it in ranges, going on from a continuation of this very
 * object (same version, or same ETag and size when storage keeps no versions).
 */
async function hashStored(
  deps: IngestDeps,
  sha256: string,
  stored: StoredObject,
  options: IngestOptions,
): Promise<{ sha256: string; size: number } | IngestOutcome> {
  if (stored.sha256 !== undefined) return { sha256: stored.sha256, size: stored.size };
  const { verification, resume } = options;
  if (
    verification === undefined ||
    stored.size <= (verification.onePassMaxBytes ?? DEFAULT_ONE_PASS_MAX_BYTES)
  ) {
    return deps.blobs.hash(sha256, stored.versionId);
  }
  const target = {
    sha256,
    versionId: stored.versionId,
    etag: stored.etag,
    size: stored.size,
    eventTime: resume?.eventTime,
  };
  const sameObject =
    resume !== undefined &&
    resume.sha256 === sha256 &&
    resume.versionId === stored.versionId &&
    resume.size === stored.size &&
    (stored.versionId !== undefined || resume.etag === stored.etag);
  const result = await hashInRanges(deps.blobs, target, verification, sameObject ? resume : undefined);
  if (stored.versionId === undefined && (await deps.blobs.stat(sha256))?.etag !== stored.etag) {
    // Unversioned, other bytes replaced these while they were hashed (the ranges may mix both): the
    // new bytes' own event verifies them.
    return { kind: 'ignored', reason: 'the object was replaced while it was hashed' };
  }
  if (result.done) return { sha256: result.sha256, size: result.size };
  if ('gone' in result)
    return { kind: 'ignored', reason: 'the object is gone (deleted while it was hashed)' };
  await deps.ledger.putVerificationProgress(result.progress);
  deps.metrics.count('VerificationsContinued');
  return { kind: 'verifying', sha256, progress: result.progress };
}

/** The uploads waiting for a proven blob, and what became of each. */
interface PendingRun {
  readonly deps: IngestDeps;
  readonly sha256: string;
  readonly blob: Blob;
  /** The verified record, until a commit carries it. */
  readonly record: BlobRecordWrite | undefined;
  /** The event's object version: when storage stored it, and which upload's URL sent it. */
  readonly storedObject: () => Promise<{ at: Date; uploadId: string | undefined }>;
  /** Whether storedObject() costs no request: the proof or a pending upload asked storage already. */
  readonly storedObjectKnown: () => boolean;
  readonly committed: { uploadId: string; path: string; version: number }[];
  readonly rejected: string[];
  readonly expired: string[];
}

function pendingRun(
  deps: IngestDeps,
  event: BlobEvent,
  sha256: string,
  proof: Proof,
  stat: StoredObject | undefined,
): PendingRun {
  const { blobs, clock } = deps;
  // The version this event is about (the bytes that just arrived, not an older pinned copy): when
  // storage stored it, and which upload's URL sent it. Looked up once, when a pending upload asks.
  let eventObject: Promise<{ at: Date; uploadId: string | undefined }> | undefined;
  const storedObject = () => {
    eventObject ??= (
      proof.eventStat || stat ? Promise.resolve(proof.eventStat ?? stat) : blobs.stat(sha256, event.versionId)
    ).then((stored) => ({
      at: stored?.lastModified ?? (event.eventTime === undefined ? clock.now() : new Date(event.eventTime)),
      uploadId: stored?.uploadId,
    }));
    return eventObject;
  };
  return {
    deps,
    sha256,
    blob: proof.blob,
    record: proof.record,
    storedObject,
    storedObjectKnown: () => proof.eventStat !== undefined || eventObject !== undefined,
    committed: [],
    rejected: [],
    expired: [],
  };
}

/**
 * Commits, rejects, expires or leaves one pending upload; the pending entry goes once it is decided.
 * The claim comes on its pointer: the upload is not read. One ended meanwhile is refused by the
 * commit's own condition (only a pending upload commits), and its outcome stands.
 */
async function settlePending(run: PendingRun, pointer: PendingPointer): Promise<void> {
  const { metrics } = run.deps;
  const { uploadId } = pointer;
  const upload = pointer.claim ?? (await readPending(run, uploadId));
  if (upload === undefined) return;
  if (upload.size !== run.blob.size) {
    // A claim of known content at another size: no PUT can have sent those bytes (the size is
    // signed into it). Ending it here would tell the claimant that the content exists (and a
    // reason, its size); left pending it expires like any upload whose bytes never came.
    metrics.count('IngestSizeMismatch');
    return;
  }
  if (!(await bytesAreForUpload(run, uploadId))) return;
  if (await storedOutsideWindow(run, upload, uploadId)) return;
  await commitUpload(run, upload, uploadId);
}

/**
 * The upload whose URL sent these bytes, when no pointer named it: a pointer written under the
 * blob's own partition before pointers had one of their own (docs/deploy.md, "Upgrading"), or
 * one that is gone. The object names its sender, so that upload's commit never hangs on its
 * pointer. New bytes are always asked of storage by their proof, so this asks nothing more.
 */
async function settleSender(run: PendingRun, pending: readonly PendingPointer[]): Promise<void> {
  // Not known means the event is for the verified version itself, already settled: read nothing.
  if (!run.storedObjectKnown()) return;
  const sender = (await run.storedObject()).uploadId;
  if (sender === undefined || pending.some((pointer) => pointer.uploadId === sender)) return;
  const upload = await run.deps.ledger.getUpload(sender);
  // Only a pending upload of this very content: bytes naming another's upload commit nothing.
  if (upload?.status !== 'pending' || upload.sha256 !== run.sha256) return;
  await settlePending(run, { uploadId: sender, claim: pendingClaimOf(upload) });
}

/** A pointer carrying no claim (written before pointers carried one): the upload, if still pending; else the pointer goes. */
async function readPending(run: PendingRun, uploadId: string): Promise<Upload | undefined> {
  const { ledger } = run.deps;
  const upload = await ledger.getUpload(uploadId);
  if (upload?.status === 'pending') return upload;
  await ledger.removePendingUpload(run.sha256, uploadId);
  return undefined;
}

/**
 * Bytes sent through another upload's URL are that upload's: a claim by hash alone does not ride
 * on them (it proves possession or sends its own). Objects naming no upload (written with the
 * bucket's own credentials) count for every claim, as before.
 */
async function bytesAreForUpload(run: PendingRun, uploadId: string): Promise<boolean> {
  const sender = (await run.storedObject()).uploadId;
  return sender === undefined || sender === uploadId;
}

/**
 * Bytes stored after the upload expired never commit (an abandoned upload must not roll its path
 * back); stored in time, they commit however late the verification. Bytes stored before the claim are not its bytes either:
 * a claim of content already stored is committed by its proof of possession or by its own PUT,
 * so a duplicate event of the verified version commits nothing new. True when the upload is left
 * (still pending) or ended as expired.
 */
async function storedOutsideWindow(run: PendingRun, claim: PendingClaim, uploadId: string): Promise<boolean> {
  const storedAt = (await run.storedObject()).at;
  if (storedInWindow(claim, storedAt)) return false;
  if (!isLapsed(claim, run.deps.clock.now())) return true;
  // The whole upload, to end it: expiry aborts a multipart upload at storage.
  const upload = await readPending(run, uploadId);
  if (upload === undefined) return true;
  const at = storedAt.toISOString();
  await expireUpload(
    run.deps,
    upload,
    `expired: its bytes were stored at ${at}, outside ${claim.createdAt} to ${uploadExpiresAt(claim).toISOString()}`,
  );
  run.expired.push(uploadId);
  return true;
}

/**
 * Commits the upload's version, ending the upload and its pending entry in the same write; a
 * version conflict or a path no longer admitted rejects it.
 */
async function commitUpload(run: PendingRun, upload: PendingClaim, uploadId: string): Promise<void> {
  const { deps } = run;
  const { ledger, clock, metrics } = deps;
  try {
    // The path was admitted at claim time; another path may have taken its folder or file since
    // (a pull target cannot hold both), or the targets changed.
    const folderRule = await folderRuleFor(deps, upload.path);
    const version = await commitVersion(deps, {
      folderRule,
      uploadId,
      path: upload.path,
      sha256: run.sha256,
      size: upload.size,
      contentType: upload.contentType,
      deleted: false,
      ifVersion: upload.ifVersion,
      keepsEqualHead: keepsEqualHeadOf(upload),
      endsUpload: { deduplicated: false },
      blob: run.record,
      // At once, not at the invocation's end: a retry finds this upload committed and counts
      // nothing, so a count held back until then is lost with an invocation killed past its
      // commit (a timeout in the fan-out, or in a later record's backoff).
      onWritten: () => metrics.countAtOnce('VersionsCommitted'),
    });
    if (version.uploadId !== uploadId) {
      // Another upload committed these very bytes to this path after this one was claimed: it
      // ends at that version, as a claim made after it is answered (no second identical version);
      // unless it ended otherwise meanwhile (expired), which stands.
      if ((await endUploadAtHead(deps, { uploadId, sha256: run.sha256 }, version, false)) === undefined) {
        run.committed.push({ uploadId, path: upload.path, version: version.version });
        metrics.count('UploadsUnchanged');
      }
      return;
    }
    // Counted by onWritten when this commit wrote it, not when another delivery of the upload did.
    run.committed.push({ uploadId, path: upload.path, version: version.version });
  } catch (error) {
    // Ended meanwhile (expired, or rejected by another delivery): that outcome stands.
    if (error instanceof UploadFinishedError) return ledger.removePendingUpload(run.sha256, uploadId);
    if (!(error instanceof VersionConflictError || error instanceof ValidationError)) throw error;
    await ledger.finishUpload(
      uploadId,
      { status: 'rejected', reason: `${error.code}: ${error.message}` },
      clock.now().toISOString(),
    );
    await ledger.removePendingUpload(run.sha256, uploadId);
    run.rejected.push(uploadId);
  }
}

/** The ledger's record describes this very object (a duplicate event): nothing to prove again. */
function isVerifiedObject(known: Blob, event: BlobEvent): boolean {
  if (known.versionId !== undefined || event.versionId !== undefined)
    return known.versionId === event.versionId;
  return event.etag !== undefined && known.etag === event.etag;
}

/** Deletes a version holding the pinned bytes again: nothing reads it (reads are pinned). */
async function discardDuplicate(deps: IngestDeps, sha256: string, versionId: string): Promise<void> {
  await deps.blobs.delete(sha256, versionId);
  deps.metrics.count('BlobVersionsDiscarded');
}

/**
 * Another object version landed on a pinned blob. Nothing reads it (reads are pinned), so it goes
 * whatever it holds; bad bytes count as a rejection, so an overwrite attempt shows on the alarm.
 * Its bytes are hashed as any upload's are (a large one in ranges across invocations): the upload
 * that sent them commits on their proof.
 */
async function discardVersion(
  deps: IngestDeps,
  pinned: Blob,
  stored: StoredObject & { versionId: string },
  options: IngestOptions,
): Promise<DiscardedVersion | IngestOutcome> {
  const { blobs, metrics } = deps;
  const { versionId } = stored;
  let actual: { sha256: string; size: number } | undefined;
  if (stored.size === pinned.size) {
    const hashed = await hashStored(deps, pinned.sha256, stored, options);
    if ('kind' in hashed) return hashed;
    actual = hashed;
  }
  // A duplicate goes once the uploads it carries are settled (ingestBlob); bad bytes go now.
  if (actual?.sha256 === pinned.sha256 && actual.size === pinned.size)
    return { versionId, reason: DUPLICATE };
  await blobs.delete(pinned.sha256, versionId);
  metrics.count('BlobVersionsDiscarded');
  metrics.count('IngestRejected');
  const reason = actual
    ? `sha256 mismatch: the stored bytes hash to ${actual.sha256}`
    : `size mismatch: ${stored.size} bytes stored over the verified ${pinned.size}`;
  return { versionId, reason };
}

/**
 * Bad bytes at blobs/<sha256>: their version goes, and so do the uploads they were for. Bytes that
 * name their upload (the metadata signed into its URL) end that upload only: anyone who knows a
 * hash and a size can claim it and send junk, and must not end another client's upload of that
 * content (its bytes may still be on their way). Bytes that name none were written around the
 * API: every upload waiting for that content ends, as nothing else will decide it.
 */
async function reject(
  deps: IngestDeps,
  object: { sha256: string; versionId: string | undefined; sentBy: string | undefined },
  forgetBlob: boolean,
  reason: string,
): Promise<IngestOutcome> {
  const { sha256, versionId, sentBy } = object;
  const { ledger, blobs, metrics } = deps;
  // Only the rejected version goes (with versioning, earlier versions stay). A record of bytes no
  // longer stored goes too, so the next upload re-sends them.
  await blobs.delete(sha256, versionId);
  if (forgetBlob) await ledger.deleteBlob(sha256);
  // Another version at the key has its own event, which decides the waiting uploads: bad bytes
  // must not get an honest upload whose bytes are stored rejected. (Of two bad versions handled at
  // once, the later delete sees none left, so one of them rejects.)
  if (versionId !== undefined && (await blobs.stat(sha256)) !== undefined) {
    metrics.count('IngestRejected');
    return { kind: 'rejected', sha256, reason, uploads: [] };
  }
  const uploads = await rejectWaiting(deps, sha256, sentBy === undefined ? undefined : [sentBy], reason);
  metrics.count('IngestRejected', Math.max(1, uploads.length));
  return { kind: 'rejected', sha256, reason, uploads };
}

/**
 * Ends with `reason` the uploads still waiting for `sha256`: those of `only` among them, or all.
 * An upload no longer waiting (ended by another delivery) is left as it ended.
 */
async function rejectWaiting(
  deps: IngestDeps,
  sha256: string,
  only: readonly string[] | undefined,
  reason: string,
): Promise<string[]> {
  const { ledger, clock } = deps;
  const waiting = await ledger.listPendingUploads(sha256);
  const uploads = only === undefined ? waiting : waiting.filter((id) => only.includes(id));
  for (const uploadId of uploads) {
    await ledger.finishUpload(uploadId, { status: 'rejected', reason }, clock.now().toISOString());
    await ledger.removePendingUpload(sha256, uploadId);
  }
  return uploads;
}
