/**
 * How the local stack converges after a restart. DynamoDB (dynalite) and S3 (local/s3)
 * keep their data in the data folder; SQS (fauxqs) keeps queues in memory, so whatever
 * was queued at stop is gone: S3 notifications of blobs not yet ingested, and
 * replication messages not yet applied. At start the stack therefore
 *
 * 1. re-sends the S3 notification of every stored version of every blob that uploads
 *    still wait for (the ingest is idempotent: a blob already ingested commits nothing
 *    twice). Each version is named: two uploads that PUT the same bytes stored two
 *    versions, each the bytes of its own upload, and only its own event commits it; and
 * 2. reconciles every target against the ledger (the scheduler's first reconcile run),
 *    which re-sends what a target lacks.
 */
import type { S3ObjectCreated } from './emulators.ts';

export interface RenotifyDeps {
  /** The ledger's pending-upload pointers (`DynamoLedger.scanPendingUploads`). */
  readonly pendingUploads: () => AsyncIterable<{ sha256: string; uploadId: string }>;
  /** Every version of `blobs/<sha256>` stored in the origin bucket; empty when it is not there. */
  readonly versions: (key: string) => Promise<readonly StoredVersion[]>;
  /** The S3 notifier's entry (it sends to the ingest queue). */
  readonly notify: (event: S3ObjectCreated) => void;
  readonly bucket: string;
  readonly signal?: AbortSignal;
}

export interface StoredVersion {
  readonly size: number;
  readonly eTag: string;
  /** Undefined in an unversioned bucket. */
  readonly versionId?: string | undefined;
}

export interface RenotifyReport {
  /** Distinct blobs that uploads wait for. */
  readonly waiting: number;
  /** Of those, blobs found in the bucket: their notification was sent again. */
  readonly renotified: number;
}

export async function renotifyPendingUploads(deps: RenotifyDeps): Promise<RenotifyReport> {
  const seen = new Set<string>();
  let renotified = 0;
  for await (const { sha256 } of deps.pendingUploads()) {
    if (deps.signal?.aborted) break;
    if (seen.has(sha256)) continue;
    seen.add(sha256);
    const key = `blobs/${sha256}`;
    const versions = await deps.versions(key);
    for (const object of versions) {
      deps.notify({
        eventName: 'ObjectCreated:Put',
        bucket: deps.bucket,
        key,
        size: object.size,
        eTag: object.eTag,
        versionId: object.versionId,
        sourceIp: '127.0.0.1',
        requestId: `renotify-${sha256.slice(0, 16)}`,
        time: new Date(),
      });
    }
    if (versions.length > 0) renotified++;
  }
  return { waiting: seen.size, renotified };
}
