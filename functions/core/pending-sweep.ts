/**
 * Lost S3 notifications. S3 event notifications are at-least-once and may be lost; an upload whose
 * bytes are stored but whose event never reached the ingest would stay pending until the expiry
 * sweep ends it. This sweep finds such uploads (pending, with an object version at their blob's
 * key of their size, stored in their window, naming them or no upload, old enough that its event
 * should have been handled) and sends that version's event to the ingest queue in S3's own shape,
 * as S3 would have. The ingest decides everything (it verifies the bytes and commits or rejects):
 * a resend of an event that was not lost after all costs one idempotent ingest.
 *
 * Lost completions. A multipart upload whose client asked to complete it (`completionRequestedAt`)
 * but whose completion message never ran (a lost message, a queue outage) has no object stored,
 * so no event to send: for such an upload, asked long enough ago, the sweep sends the completion
 * message again. The completion is idempotent (core/completion.ts): one that was not lost after
 * all finds the upload done and converges. An upload whose completion was never asked for is
 * left alone: its client has not said its parts are all there.
 *
 * A run walks the pending-upload pointers a page at a time from a checkpoint saved after every
 * page, and stops starting pages at its deadline or once it has sent `maxSends` events: a library
 * with many uploads in flight is covered over several runs, each going on where the last stopped.
 */
import type { Upload } from '../../contracts/model.js';
import type { CompletionQueue } from './completion.js';
import { isLapsed, storedInWindow } from './expiry.js';
import type { Clock, Metrics, UploadLedger } from './ports.js';

/** One object version stored at `blobs/<sha256>`, as storage describes it. */
export interface StoredBlobVersion {
  /** Undefined in an unversioned bucket. */
  readonly versionId: string | undefined;
  readonly size: number;
  readonly etag: string | undefined;
  /** A full-object SHA-256 (hex) storage reports having checked, if any. */
  readonly sha256: string | undefined;
  readonly lastModified: Date | undefined;
  /** The upload whose presigned URL (or multipart upload) stored it, if it says. */
  readonly uploadId: string | undefined;
}

/** The origin's object versions of one blob. */
export interface OriginVersions {
  /** Every object version at `blobs/<sha256>` (none when nothing is stored there). */
  versionsOf(sha256: string): Promise<readonly StoredBlobVersion[]>;
}

/** The storage event the sweep sends for an object version: what S3 would have sent. */
export interface SweptEvent {
  readonly key: string;
  readonly size: number;
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
  readonly eventTime: string;
}

/** The ingest's queue, fed with S3 event notifications. */
export interface IngestEventQueue {
  sendObjectCreated(event: SweptEvent): Promise<void>;
}

/** The pointers the sweep walks, the uploads they name, and where its walk stands. */
export type SweepLedger = Pick<
  UploadLedger,
  'getUpload' | 'pagePendingUploads' | 'getSweepCheckpoint' | 'putSweepCheckpoint'
>;

export interface PendingSweepDeps {
  readonly ledger: SweepLedger;
  readonly origin: OriginVersions;
  readonly ingest: IngestEventQueue;
  /** Where lost multipart completions are sent again; without it they are not looked for. */
  readonly completions?: CompletionQueue | undefined;
  readonly clock: Clock;
  readonly metrics?: Metrics | undefined;
}

/** How long after storing an object S3's event has surely been handled unless it was lost. */
export const NOTIFICATION_GRACE_MS = 10 * 60 * 1000;

/**
 * The slowest verification the grace allows for: the ingest of a large object hashes it across
 * invocations (docs/scale.md), and its event is not lost while that goes on.
 */
export const VERIFY_BYTES_PER_SECOND = 64 * 1024 * 1024;

/** How old an object version must be before the sweep takes its event for lost. */
export function lostAfterMs(size: number, graceMs = NOTIFICATION_GRACE_MS): number {
  return graceMs + Math.ceil((size / VERIFY_BYTES_PER_SECOND) * 1000);
}

/**
 * The slowest CompleteMultipartUpload the grace allows for, per part: S3 assembles the parts
 * while the completion message is in flight, and that completion is not lost meanwhile.
 */
export const COMPLETE_MS_PER_PART = 100;

/** How long after a client asked to complete an upload of `partCount` parts its completion counts as lost. */
export function completionLostAfterMs(partCount: number, graceMs = NOTIFICATION_GRACE_MS): number {
  return graceMs + partCount * COMPLETE_MS_PER_PART;
}

export interface PendingSweepOptions {
  /** Epoch milliseconds (real time) after which no more pages start; one page is always read. */
  readonly deadline?: number;
  /** No page starts once this many events and completions were sent (a page is always finished). @default 100 */
  readonly maxSends?: number;
  /** Pointers read per page. @default 200 */
  readonly pageSize?: number;
  /** Overrides NOTIFICATION_GRACE_MS (the local stack's notifications take milliseconds). */
  readonly graceMs?: number;
}

export interface PendingSweepReport {
  /** Pending-upload pointers looked at. */
  readonly pointers: number;
  /** Events sent to the ingest (one per object version). */
  readonly sent: number;
  /** Uploads those events are for. */
  readonly uploads: number;
  /** Completion messages sent again (one per multipart upload whose completion looks lost). */
  readonly completionsResent: number;
  readonly pages: number;
  /** The walk reached the last pointer: the next run starts a new cycle. */
  readonly cycleComplete: boolean;
}

/** What one run carries from pointer to pointer. */
interface SweepRun {
  readonly deps: PendingSweepDeps;
  readonly graceMs: number;
  readonly maxSends: number;
  /** Object versions sent this run (`<sha256>/<versionId>`): uploads of the same bytes share one. */
  readonly sent: Set<string>;
  uploads: number;
  completionsResent: number;
}

export async function sweepLostNotifications(
  deps: PendingSweepDeps,
  options: PendingSweepOptions = {},
): Promise<PendingSweepReport> {
  const run: SweepRun = {
    deps,
    graceMs: options.graceMs ?? NOTIFICATION_GRACE_MS,
    maxSends: options.maxSends ?? 100,
    sent: new Set(),
    uploads: 0,
    completionsResent: 0,
  };
  const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
  let after = await deps.ledger.getSweepCheckpoint();
  let pointers = 0;
  let pages = 0;
  while (pages === 0 || (Date.now() < deadline && run.sent.size + run.completionsResent < run.maxSends)) {
    const page = await deps.ledger.pagePendingUploads({ after, limit: options.pageSize ?? 200 });
    pages++;
    for (const pointer of page.pointers) {
      pointers++;
      await sweepPointer(run, pointer);
    }
    after = page.next;
    await deps.ledger.putSweepCheckpoint(after);
    if (after === undefined) break;
  }
  // Every run, 0 included: a datapoint per run for the dashboard.
  deps.metrics?.count('LostNotificationsResent', run.sent.size);
  if (deps.completions) deps.metrics?.count('LostCompletionsResent', run.completionsResent);
  return {
    pointers,
    sent: run.sent.size,
    uploads: run.uploads,
    completionsResent: run.completionsResent,
    pages,
    cycleComplete: after === undefined,
  };
}

/** Sends the events of one pending upload's stored bytes, if they look lost. */
async function sweepPointer(run: SweepRun, pointer: { sha256: string; uploadId: string }): Promise<void> {
  const { deps } = run;
  const upload = await deps.ledger.getUpload(pointer.uploadId);
  // Ended already: its pointer goes with the next ingest or expiry sweep. One past its expiry is
  // still swept: bytes stored in its window commit however late their event comes.
  if (upload?.status !== 'pending') return;
  const versions = await deps.origin.versionsOf(pointer.sha256);
  if (deps.completions && completionLooksLost(run, upload, versions)) {
    run.completionsResent++;
    await deps.completions.requestCompletion(upload.uploadId);
    return;
  }
  let any = false;
  for (const stored of versions) {
    if (!looksLost(run, upload, stored)) continue;
    any = true;
    const id = `${pointer.sha256}/${stored.versionId ?? ''}`;
    if (run.sent.has(id)) continue;
    run.sent.add(id);
    await deps.ingest.sendObjectCreated({
      key: `blobs/${pointer.sha256}`,
      size: stored.size,
      etag: stored.etag,
      versionId: stored.versionId,
      eventTime: (stored.lastModified ?? deps.clock.now()).toISOString(),
    });
  }
  if (any) run.uploads++;
}

/**
 * A multipart upload whose completion was asked for long enough ago, with none of its bytes
 * stored: its completion message never ran.
 */
function completionLooksLost(run: SweepRun, upload: Upload, versions: readonly StoredBlobVersion[]): boolean {
  if (!upload.multipart || upload.completionRequestedAt === undefined) return false;
  const now = run.deps.clock.now();
  // Past its expiry, bytes assembled now would land outside its window: they could not commit it.
  if (isLapsed(upload, now)) return false;
  if (versions.some((stored) => couldBeItsBytes(upload, stored))) return false;
  const age = now.getTime() - Date.parse(upload.completionRequestedAt);
  return age >= completionLostAfterMs(upload.multipart.partCount, run.graceMs);
}

/** The version could be this upload's bytes: its size, its checksum when reported, its URL or none, its window. */
function couldBeItsBytes(upload: Upload, stored: StoredBlobVersion): boolean {
  if (stored.size !== upload.size) return false;
  if (stored.sha256 !== undefined && stored.sha256 !== upload.sha256) return false;
  if (stored.uploadId !== undefined && stored.uploadId !== upload.uploadId) return false;
  return stored.lastModified !== undefined && storedInWindow(upload, stored.lastModified);
}

/**
 * The version could be this upload's bytes (its size, its checksum when storage reports one, sent
 * through its URL or naming no upload, stored in its window) and is old enough that its event
 * should have committed the upload already.
 */
function looksLost(run: SweepRun, upload: Upload, stored: StoredBlobVersion): boolean {
  if (!couldBeItsBytes(upload, stored) || stored.lastModified === undefined) return false;
  const age = run.deps.clock.now().getTime() - stored.lastModified.getTime();
  return age >= lostAfterMs(stored.size, run.graceMs);
}
