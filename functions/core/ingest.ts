/**
 * A blob landed in the origin bucket: prove its bytes, then commit every
 * upload waiting for them. Nothing is committed before the proof (invariant 2).
 */
import { type CommitDeps, commitVersion } from './commit.js';
import { VersionConflictError } from './errors.js';
import { expireUpload, isLapsed, uploadExpiresAt } from './expiry.js';
import type { BlobStore, Metrics } from './ports.js';

export interface IngestDeps extends CommitDeps {
  readonly blobs: BlobStore;
  readonly metrics: Metrics;
}

/** What the storage event says; claims, not facts. */
export interface BlobEvent {
  readonly key: string;
  readonly size: number;
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
}

export type IngestOutcome =
  | { kind: 'ignored'; reason: string }
  | { kind: 'rejected'; sha256: string; reason: string; uploads: string[] }
  | {
      kind: 'committed';
      sha256: string;
      committed: { uploadId: string; path: string; version: number }[];
      rejected: string[];
      /** Uploads whose bytes were stored after they expired: ended, never committed. */
      expired?: string[];
    };

const BLOB_KEY = /^blobs\/([0-9a-f]{64})$/;

export function sha256OfKey(key: string): string | undefined {
  return BLOB_KEY.exec(key)?.[1];
}

export async function ingestBlob(deps: IngestDeps, event: BlobEvent): Promise<IngestOutcome> {
  const { ledger, blobs, clock, metrics } = deps;
  const sha256 = sha256OfKey(event.key);
  if (!sha256) {
    metrics.count('IngestIgnored');
    return { kind: 'ignored', reason: `key "${event.key}" is not blobs/<sha256>` };
  }

  const known = await ledger.getBlob(sha256);
  const sameObject = known !== undefined && event.etag !== undefined && known.etag === event.etag;
  if (!sameObject) {
    const stored = await blobs.stat(sha256, event.versionId);
    if (!stored) return { kind: 'ignored', reason: 'the object is gone (deleted after the event)' };
    // Trust a full-object SHA-256 that storage reports having stored; else hash the bytes ourselves.
    const actual =
      stored.sha256 !== undefined
        ? { sha256: stored.sha256, size: stored.size }
        : await blobs.hash(sha256, stored.versionId);
    if (actual.sha256 !== sha256 || actual.size !== stored.size) {
      return reject(
        deps,
        sha256,
        stored.versionId,
        known !== undefined,
        `sha256 mismatch: the stored bytes hash to ${actual.sha256}`,
      );
    }
    await ledger.putBlob({
      sha256,
      size: actual.size,
      verifiedAt: clock.now().toISOString(),
      etag: stored.etag,
      versionId: stored.versionId,
    });
    metrics.count('BlobsVerified');
    metrics.bytes('BytesVerified', actual.size);
  }

  const blob = known && sameObject ? known : await ledger.getBlob(sha256);
  const committed: { uploadId: string; path: string; version: number }[] = [];
  const rejected: string[] = [];
  const expired: string[] = [];
  // When storage stored the verified bytes, looked up only for an upload past its expiry.
  let storedAtLookup: Promise<Date> | undefined;
  const storedAt = () => {
    storedAtLookup ??= blobs
      .stat(sha256, blob?.versionId ?? event.versionId)
      .then((stored) => stored?.lastModified ?? clock.now());
    return storedAtLookup;
  };
  for (const uploadId of await ledger.listPendingUploads(sha256)) {
    const upload = await ledger.getUpload(uploadId);
    if (upload?.status !== 'pending') {
      await ledger.removePendingUpload(sha256, uploadId);
      continue;
    }
    const now = clock.now().toISOString();
    if (blob && upload.size !== blob.size) {
      await ledger.finishUpload(
        uploadId,
        { status: 'rejected', reason: `size mismatch: declared ${upload.size}, stored ${blob.size}` },
        now,
      );
      await ledger.removePendingUpload(sha256, uploadId);
      metrics.count('IngestRejected');
      rejected.push(uploadId);
      continue;
    }
    // Bytes stored after the upload expired never commit (an abandoned upload must not roll its path
    // back); stored in time, they commit however late the verification. One already claiming a
    // version is mid-commit: it finishes.
    if (
      upload.claimingVersion === undefined &&
      isLapsed(upload, clock.now()) &&
      isLapsed(upload, await storedAt())
    ) {
      const at = (await storedAt()).toISOString();
      await expireUpload(
        deps,
        upload,
        `expired: its bytes were stored at ${at}, after ${uploadExpiresAt(upload).toISOString()}`,
      );
      expired.push(uploadId);
      continue;
    }
    try {
      const version = await commitVersion(deps, {
        uploadId,
        path: upload.path,
        sha256,
        size: upload.size,
        contentType: upload.contentType,
        deleted: false,
        ifVersion: upload.ifVersion,
        reserveOnUpload: true,
      });
      await ledger.finishUpload(
        uploadId,
        { status: 'committed', version: version.version },
        clock.now().toISOString(),
      );
      committed.push({ uploadId, path: upload.path, version: version.version });
      metrics.count('VersionsCommitted');
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
      await ledger.finishUpload(
        uploadId,
        { status: 'rejected', reason: `conflict: ${error.message}` },
        clock.now().toISOString(),
      );
      rejected.push(uploadId);
    }
    await ledger.removePendingUpload(sha256, uploadId);
  }
  return {
    kind: 'committed',
    sha256,
    committed,
    rejected,
    ...(expired.length > 0 ? { expired } : {}),
  };
}

async function reject(
  deps: IngestDeps,
  sha256: string,
  versionId: string | undefined,
  hadVerifiedBlob: boolean,
  reason: string,
): Promise<IngestOutcome> {
  const { ledger, blobs, clock, metrics } = deps;
  // With bucket versioning only the bad version goes and verified bytes stay. Without it the bad
  // bytes have replaced the verified ones: the blob record goes too, so the next upload re-sends them.
  await blobs.delete(sha256, versionId);
  if (hadVerifiedBlob && versionId === undefined) await ledger.deleteBlob(sha256);
  const uploads = await ledger.listPendingUploads(sha256);
  for (const uploadId of uploads) {
    await ledger.finishUpload(uploadId, { status: 'rejected', reason }, clock.now().toISOString());
    await ledger.removePendingUpload(sha256, uploadId);
  }
  metrics.count('IngestRejected', Math.max(1, uploads.length));
  return { kind: 'rejected', sha256, reason, uploads };
}
