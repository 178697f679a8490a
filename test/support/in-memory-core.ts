/**
 * The core's use cases wired to InMemoryLedger and an in-memory versioned origin, for unit tests
 * that need no emulator: the ingest's dependencies, a pending upload claimed as createUpload
 * records it, and the storage event of the browser's PUT.
 */
import { randomUUID } from 'node:crypto';
import type { Upload } from '../../contracts/model.js';
import type { PolicyTarget } from '../../contracts/paths.js';
import type { ReplicationMessage } from '../../contracts/replication-message.js';
import { InMemoryLedger } from '../../functions/adapters/in-memory-ledger.js';
import type { BlobEvent, IngestDeps } from '../../functions/core/ingest.js';
import type { FanoutQueue, Ledger, UploadLedger } from '../../functions/core/ports.js';
import { issueChallenge } from '../../functions/core/possession.js';
import { RecordingMetrics, sha256Hex } from './domain.js';
import { VersionedBlobs } from './versioned-blobs.js';

export interface InMemoryCoreOptions<L extends IngestDeps['ledger'], B extends VersionedBlobs> {
  /** Default: a fresh InMemoryLedger. */
  readonly ledger?: L;
  /** Default: a fresh versioned origin. */
  readonly blobs?: B;
  /** Default: one S3 target, alpha, selecting every path. */
  readonly targets?: readonly PolicyTarget[];
  /** Default: 2. */
  readonly feedShards?: number;
  /** Default: records every message into `sent`. */
  readonly fanout?: FanoutQueue;
}

export interface InMemoryCore<L, B> {
  readonly deps: IngestDeps & { ledger: L; blobs: B; metrics: RecordingMetrics };
  readonly ledger: L;
  readonly blobs: B;
  /** What the default fan-out sent, in order. */
  readonly sent: ReplicationMessage[];
}

export function inMemoryCore<
  L extends IngestDeps['ledger'] = InMemoryLedger,
  B extends VersionedBlobs = VersionedBlobs,
>(options: InMemoryCoreOptions<L, B> = {}): InMemoryCore<L, B> {
  const ledger = options.ledger ?? (new InMemoryLedger() as unknown as L);
  const blobs = options.blobs ?? (new VersionedBlobs({ versioned: true }) as B);
  const sent: ReplicationMessage[] = [];
  const deps = {
    ledger,
    blobs,
    metrics: new RecordingMetrics(),
    clock: { now: () => new Date() },
    feedShards: options.feedShards ?? 2,
    targets: options.targets ?? [{ id: 'alpha', kind: 's3' as const }],
    fanout: options.fanout ?? {
      async send(message: ReplicationMessage) {
        sent.push(message);
      },
    },
  };
  return { deps, ledger, blobs, sent };
}

export interface ClaimOptions {
  /** A proof-of-possession challenge, as createUpload issues one. Default true. */
  readonly challenge?: boolean;
  /**
   * Whether the pending pointer carries the claim, as createUpload writes it now; pointers
   * written before did not, and the ingest reads the upload for them. Default false.
   */
  readonly pointerCarriesClaim?: boolean;
}

/** A pending upload of `bytes` to `path` and its pending pointer, as createUpload records them (without presigning). */
export async function claimPendingUpload(
  ledger: Pick<UploadLedger, 'putUpload' | 'addPendingUpload'>,
  path: string,
  bytes: Buffer,
  extra: Partial<Upload> = {},
  options: ClaimOptions = {},
): Promise<Upload> {
  const now = new Date(Date.now() - 1000);
  const expiresAt = new Date(now.getTime() + 15 * 60 * 1000);
  const upload: Upload = {
    uploadId: randomUUID(),
    path,
    sha256: sha256Hex(bytes),
    size: bytes.length,
    contentType: 'image/png',
    status: 'pending',
    ...(options.challenge === false ? {} : { challenge: issueChallenge(bytes.length, expiresAt) }),
    expiresAt: expiresAt.toISOString(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    ...extra,
  };
  await ledger.putUpload(upload);
  await ledger.addPendingUpload(
    upload.sha256,
    upload.uploadId,
    options.pointerCarriesClaim ? upload : undefined,
  );
  return upload;
}

/** The browser's PUT: bytes stored at blobs/<sha256>, and the storage event for them. */
export function storeBlob(blobs: VersionedBlobs, bytes: Buffer): BlobEvent {
  const sha256 = sha256Hex(bytes);
  const versionId = blobs.put(sha256, bytes);
  return { key: `blobs/${sha256}`, size: bytes.length, etag: undefined, versionId };
}

/** An in-memory ledger, and every method called on it, in order (`calls`). */
export function countingLedger(inner = new InMemoryLedger()): {
  ledger: Ledger;
  inner: InMemoryLedger;
  calls: string[];
} {
  const calls: string[] = [];
  const ledger = new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(name));
        return value.apply(target, args);
      };
    },
  }) as unknown as Ledger;
  return { ledger, inner, calls };
}
