/**
 * Pending uploads expire. An upload whose bytes never came must not be committed when the same
 * bytes turn up months later (that would roll its path back over newer versions), and a multipart
 * upload cannot be resumed once the bucket's lifecycle rule has aborted it at storage.
 *
 * - A single PUT may be sent until its presigned URL expires; the grace lets a PUT that started
 *   just before then (and a large one on a slow link) finish.
 * - A multipart upload may be resumed, its parts presigned and completed, while storage still
 *   holds it: RESUMABLE_FOR_MS, kept below the lifecycle rule's abort age.
 *
 * Whether bytes came in time is decided by when storage STORED them, not by when the ingest
 * verifies them: a PUT finished in time but verified late still commits.
 */
import { MULTIPART_ABORT_AFTER_DAYS } from '../../contracts/ledger-keys.js';
import type { Upload } from '../../contracts/model.js';
import type { BlobStore, Clock, Metrics, UploadLedger } from './ports.js';

const HOUR_MS = 60 * 60 * 1000;

/** How long a multipart upload can be resumed: a margin below the lifecycle abort, which S3 applies lazily but never early. */
export const RESUMABLE_FOR_MS = MULTIPART_ABORT_AFTER_DAYS * 24 * HOUR_MS - 4 * HOUR_MS;

/** Added to a single PUT's URL lifetime: S3 checks the expiry when the PUT starts, not when it ends. */
export const PUT_GRACE_MS = 5 * 60 * 1000;

/** The slowest sender the grace allows for: a PUT that started in time is not expired for being large. */
export const SLOWEST_PUT_BYTES_PER_SECOND = 256 * 1024;

/** How far storage's clock and the functions' may disagree. */
export const CLOCK_SKEW_MS = 2 * 60 * 1000;

/**
 * Past its expiry by this much, a pending upload is ended whatever storage holds: no event for its
 * bytes can still be delivered (the queues, dead-letter queues included, keep messages 14 days).
 */
export const LAST_CHANCE_MS = 14 * 24 * HOUR_MS;

/** The longest presigned URL lifetime the API can be configured with (its schema's maximum). */
const MAX_PRESIGN_TTL_SECONDS = 900;

/** When a new upload expires. */
export function expiresAtFor(
  kind: 'put' | 'multipart',
  now: Date,
  size: number,
  presignTtlSeconds: number,
): string {
  const ms =
    kind === 'multipart'
      ? RESUMABLE_FOR_MS
      : presignTtlSeconds * 1000 + PUT_GRACE_MS + Math.ceil((size / SLOWEST_PUT_BYTES_PER_SECOND) * 1000);
  return new Date(now.getTime() + ms).toISOString();
}

/** An upload's expiry; uploads recorded before expiry existed get the longest window they could have had. */
export function uploadExpiresAt(
  upload: Pick<Upload, 'expiresAt' | 'createdAt' | 'multipart' | 'size'>,
): Date {
  if (upload.expiresAt !== undefined) return new Date(upload.expiresAt);
  return new Date(
    expiresAtFor(
      upload.multipart ? 'multipart' : 'put',
      new Date(upload.createdAt),
      upload.size,
      MAX_PRESIGN_TTL_SECONDS,
    ),
  );
}

/** Past its expiry at `at` (a pending upload's clock time, or when its bytes were stored). */
export function isLapsed(upload: Pick<Upload, 'expiresAt' | 'createdAt' | 'multipart' | 'size'>, at: Date) {
  return at.getTime() > uploadExpiresAt(upload).getTime();
}

/**
 * Bytes stored at `storedAt` are this upload's if they landed in its window: not before it was
 * claimed (older copies are content it did not send: a claim of known content proves possession or
 * sends the bytes) and not after it expired.
 */
export function storedInWindow(
  upload: Pick<Upload, 'expiresAt' | 'createdAt' | 'multipart' | 'size'>,
  storedAt: Date,
): boolean {
  return storedAt.getTime() >= Date.parse(upload.createdAt) - CLOCK_SKEW_MS && !isLapsed(upload, storedAt);
}

export interface ExpiryDeps {
  readonly ledger: UploadLedger;
  readonly blobs: BlobStore;
  readonly clock: Clock;
  readonly metrics?: Metrics | undefined;
}

/**
 * Ends a pending upload as expired and cleans up after it: the pending pointer goes (so the ingest
 * never commits it) and a multipart upload is aborted at storage (best effort: the lifecycle rule
 * aborts it anyway). Safe to repeat; an upload already ended keeps its outcome.
 */
export async function expireUpload(
  deps: Pick<ExpiryDeps, 'ledger' | 'clock' | 'metrics'> & { readonly blobs?: BlobStore | undefined },
  upload: Upload,
  why: string,
): Promise<Upload> {
  await deps.ledger.finishUpload(
    upload.uploadId,
    { status: 'expired', reason: why },
    deps.clock.now().toISOString(),
  );
  const after = (await deps.ledger.getUpload(upload.uploadId)) ?? upload;
  // Committed meanwhile (the ingest won the race): its outcome stands and nothing is cleaned up.
  if (after.status !== 'expired') return after;
  deps.metrics?.count('UploadsExpired');
  await deps.ledger.removePendingUpload(upload.sha256, upload.uploadId);
  if (upload.multipart && deps.blobs) {
    try {
      await deps.blobs.abortMultipart(upload.sha256, upload.multipart.multipartId);
    } catch {
      deps.metrics?.count('MultipartAbortFailed');
    }
  }
  return after;
}

/**
 * Why a pending upload is expired now, or undefined if it is not: past its expiry with no bytes
 * stored, or bytes stored only after it. Bytes stored in time leave the decision to the ingest
 * (which may still be verifying them).
 */
export async function lapsedWithoutBytes(
  deps: Pick<ExpiryDeps, 'blobs' | 'clock'>,
  upload: Upload,
): Promise<string | undefined> {
  const now = deps.clock.now();
  if (upload.status !== 'pending' || !isLapsed(upload, now)) return undefined;
  const by = uploadExpiresAt(upload);
  if (now.getTime() > by.getTime() + LAST_CHANCE_MS)
    return `expired: nothing committed it by ${by.toISOString()}`;
  const stored = await deps.blobs.stat(upload.sha256);
  if (stored?.lastModified !== undefined && storedInWindow(upload, stored.lastModified)) return undefined;
  return stored
    ? `expired: no bytes of its own were stored by ${by.toISOString()}`
    : `expired: no bytes arrived by ${by.toISOString()}`;
}

/** Expires a pending upload if it is past its expiry without bytes; returns the upload as it now stands. */
export async function settleIfLapsed(deps: ExpiryDeps, upload: Upload): Promise<Upload> {
  let why: string | undefined;
  try {
    why = await lapsedWithoutBytes(deps, upload);
  } catch {
    // Storage could not say (on AWS the api may not HEAD a missing blob: 403, not 404). The upload
    // is refused as lapsed all the same; the ingest or the sweep ends it.
    return upload;
  }
  return why === undefined ? upload : expireUpload(deps, upload, why);
}

/**
 * The sweep decides from the ledger alone (the reconcile function holds no permission on the
 * origin): a pending upload still pending this long after its expiry is ended. By then bytes
 * stored in time have long been ingested (the ingest retries an event for about 7.5 hours before
 * its dead-letter queue: 5 receives, a 90-minute visibility timeout each; docs/deploy.md, "Alarms")
 * and the bucket's lifecycle rule has aborted a multipart upload.
 */
export const SWEEP_AFTER_MS = 24 * HOUR_MS;

export interface ExpirySweepReport {
  /** Pending-upload pointers looked at. */
  readonly pending: number;
  /** Uploads ended as expired by this sweep. */
  readonly expired: number;
  /** Pointers to uploads that had already ended (removed). */
  readonly stale: number;
}

/**
 * The scheduled sweep: every pending upload a day past its expiry is ended and its pointer removed.
 * It counts the pending uploads it finds past their expiry, ended or not (UploadsPendingPastExpiry).
 */
export async function expirePendingUploads(
  deps: Pick<ExpiryDeps, 'ledger' | 'clock' | 'metrics'>,
  options: { dryRun?: boolean } = {},
): Promise<ExpirySweepReport> {
  let pending = 0;
  let expired = 0;
  let stale = 0;
  let pastExpiry = 0;
  for await (const pointer of deps.ledger.scanPendingUploads()) {
    pending++;
    const upload = await deps.ledger.getUpload(pointer.uploadId);
    if (upload?.status !== 'pending') {
      stale++;
      if (!options.dryRun) await deps.ledger.removePendingUpload(pointer.sha256, pointer.uploadId);
      continue;
    }
    const by = uploadExpiresAt(upload);
    const now = deps.clock.now().getTime();
    if (now > by.getTime()) pastExpiry++;
    if (now <= by.getTime() + SWEEP_AFTER_MS) continue;
    const why = `expired: still pending a day after ${by.toISOString()}`;
    // Without the blob store: storage is not touched (see SWEEP_AFTER_MS).
    const ledgerOnly = { ledger: deps.ledger, clock: deps.clock, metrics: deps.metrics };
    if (options.dryRun || (await expireUpload(ledgerOnly, upload, why)).status === 'expired') expired++;
  }
  // Every run, 0 included: the alarm on it (docs/deploy.md) then has one datapoint per run.
  deps.metrics?.count('UploadsPendingPastExpiry', pastExpiry);
  return { pending, expired, stale };
}
