/**
 * The core's use cases on InMemoryLedger (which keeps DynamoLedger's contract,
 * test/support/ledger-contract.ts) and an in-memory versioned origin: the ingest committing
 * waiting uploads, duplicate deliveries, conflicts, proof of possession racing the ingest,
 * deletes and the versions listing. No emulator, no network port.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { initialCursor, readChanges } from '../../../functions/core/changes.js';
import { NotFoundError } from '../../../functions/core/errors.js';
import { type IngestDeps, ingestBlob } from '../../../functions/core/ingest.js';
import {
  issueChallenge,
  ProofNotAcceptedError,
  proofDigest,
  proveUpload,
} from '../../../functions/core/possession.js';
import { reconcileTargets } from '../../../functions/core/reconcile.js';
import { deleteFile } from '../../../functions/core/uploads.js';
import { listFileVersions } from '../../../functions/core/versions.js';
import { RecordingMetrics, randomBytes, sha256Hex } from '../../support/domain.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

function setup() {
  const ledger = new InMemoryLedger();
  const blobs = new VersionedBlobs({ versioned: true });
  const sent: ReplicationMessage[] = [];
  const deps: IngestDeps & { ledger: InMemoryLedger; metrics: RecordingMetrics } = {
    ledger,
    blobs,
    metrics: new RecordingMetrics(),
    clock: { now: () => new Date() },
    feedShards: 2,
    targets: [
      { id: 'alpha', kind: 's3' as const },
      { id: 'beta', kind: 's3' as const, pathPrefix: 'public/' },
    ],
    fanout: {
      async send(message: ReplicationMessage) {
        sent.push(message);
      },
    },
  };
  return { deps, ledger, blobs, sent };
}

type Setup = ReturnType<typeof setup>;

/** A pending upload of `bytes` to `path`, as createUpload records it (without presigning). */
async function claim(s: Setup, path: string, bytes: Buffer, extra: Partial<Upload> = {}): Promise<Upload> {
  const now = new Date(Date.now() - 1000);
  const upload: Upload = {
    uploadId: randomUUID(),
    path,
    sha256: sha256Hex(bytes),
    size: bytes.length,
    contentType: 'image/png',
    status: 'pending',
    challenge: issueChallenge(bytes.length, new Date(now.getTime() + 15 * 60 * 1000)),
    expiresAt: new Date(now.getTime() + 15 * 60 * 1000).toISOString(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    ...extra,
  };
  await s.ledger.putUpload(upload);
  await s.ledger.addPendingUpload(upload.sha256, upload.uploadId);
  return upload;
}

/** The browser's PUT: bytes stored at blobs/<sha256>, and the storage event for them. */
function store(s: Setup, bytes: Buffer) {
  const sha256 = sha256Hex(bytes);
  const versionId = s.blobs.put(sha256, bytes);
  return { key: `blobs/${sha256}`, size: bytes.length, etag: undefined, versionId };
}

describe('ingest on InMemoryLedger', () => {
  it('commits every upload waiting for the bytes: versions, feed entries, fan-out per selecting target', async () => {
    const s = setup();
    const bytes = randomBytes(3000);
    const a = await claim(s, 'public/a.png', bytes);
    const b = await claim(s, 'private/b.png', bytes);
    const outcome = await ingestBlob(s.deps, store(s, bytes));
    expect(outcome).toMatchObject({ kind: 'committed', rejected: [] });
    expect(await s.ledger.getUpload(a.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    expect(await s.ledger.getUpload(b.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    expect(await s.ledger.listPendingUploads(a.sha256)).toEqual([]);
    const page = await readChanges(s.ledger, initialCursor(2), 10);
    expect(page.changes.map((c) => `${c.path}@${c.version}`).sort()).toEqual([
      'private/b.png@1',
      'public/a.png@1',
    ]);
    expect(page.changes.every((c) => c.fannedOut === true)).toBe(true);
    expect(s.sent.map((m) => `${m.targetId}:${m.path}`).sort()).toEqual([
      'alpha:private/b.png',
      'alpha:public/a.png',
      'beta:public/a.png',
    ]);
  });

  it('the same event delivered by four workers at once gives one version and one feed entry', async () => {
    const s = setup();
    const bytes = randomBytes(2048);
    const upload = await claim(s, 'media/dup.png', bytes);
    const event = store(s, bytes);
    await Promise.all(Array.from({ length: 4 }, () => ingestBlob(s.deps, event)));
    expect((await s.ledger.listVersions('media/dup.png', { limit: 10 })).map((v) => v.uploadId)).toEqual([
      upload.uploadId,
    ]);
    const page = await readChanges(s.ledger, initialCursor(2), 10);
    expect(page.changes.map((c) => `${c.path}@${c.version}`)).toEqual(['media/dup.png@1']);
    expect(await s.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
  });

  it('an upload whose ifVersion no longer holds is rejected, its pointer removed, nothing overwritten', async () => {
    const s = setup();
    const first = randomBytes(1000);
    await claim(s, 'media/x.png', first);
    await ingestBlob(s.deps, store(s, first));
    const stale = randomBytes(1001);
    const late = await claim(s, 'media/x.png', stale, { ifVersion: 0 });
    const outcome = await ingestBlob(s.deps, store(s, stale));
    expect(outcome).toMatchObject({ kind: 'committed', committed: [], rejected: [late.uploadId] });
    expect(await s.ledger.getUpload(late.uploadId)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/version_conflict/),
    });
    expect(await s.ledger.listPendingUploads(late.sha256)).toEqual([]);
    expect(await s.ledger.getHead('media/x.png')).toMatchObject({ version: 1, sha256: sha256Hex(first) });
  });
});

describe('proof of possession on InMemoryLedger', () => {
  const answer = (upload: Upload, bytes: Buffer) =>
    proofDigest(
      upload.challenge?.nonce as string,
      (upload.challenge?.ranges ?? []).map((r) => bytes.subarray(r.offset, r.offset + r.length)),
    );

  it('a holder of verified bytes commits without sending them, once; a second answer is refused', async () => {
    const s = setup();
    const bytes = randomBytes(4000);
    await claim(s, 'media/original.png', bytes);
    await ingestBlob(s.deps, store(s, bytes));
    const copy = await claim(s, 'media/copy.png', bytes);
    const result = await proveUpload(s.deps, copy, answer(copy, bytes));
    expect(result).toEqual({
      status: 'committed',
      uploadId: copy.uploadId,
      path: 'media/copy.png',
      version: 1,
      deduplicated: true,
    });
    expect(await s.ledger.getUpload(copy.uploadId)).toMatchObject({
      status: 'committed',
      deduplicated: true,
    });
    await expect(proveUpload(s.deps, copy, answer(copy, bytes))).rejects.toBeInstanceOf(
      ProofNotAcceptedError,
    );
    expect(await s.ledger.listVersions('media/copy.png', { limit: 10 })).toHaveLength(1);
  });

  it('a proof racing the ingest of the same upload: one version, whichever commits first', async () => {
    const s = setup();
    const bytes = randomBytes(5000);
    await claim(s, 'media/seed.png', bytes);
    await ingestBlob(s.deps, store(s, bytes));
    const racer = await claim(s, 'media/race.png', bytes);
    // Its own bytes arrive too (a client that both proves and uploads).
    const event = store(s, bytes);
    const [proof] = await Promise.allSettled([
      proveUpload(s.deps, racer, answer(racer, bytes)),
      ingestBlob(s.deps, event),
    ]);
    const versions = await s.ledger.listVersions('media/race.png', { limit: 10 });
    expect(versions.map((v) => `${v.version}:${v.uploadId}`)).toEqual([`1:${racer.uploadId}`]);
    if (proof.status === 'fulfilled') expect(proof.value.version).toBe(1);
    expect(await s.ledger.getUpload(racer.uploadId)).toMatchObject({ status: 'committed', version: 1 });
  });

  it('a wrong digest is refused and commits nothing', async () => {
    const s = setup();
    const bytes = randomBytes(4000);
    await claim(s, 'media/o.png', bytes);
    await ingestBlob(s.deps, store(s, bytes));
    const liar = await claim(s, 'media/liar.png', bytes);
    await expect(proveUpload(s.deps, liar, '0'.repeat(64))).rejects.toBeInstanceOf(ProofNotAcceptedError);
    expect(await s.ledger.getHead('media/liar.png')).toBeUndefined();
    expect(await s.ledger.getUpload(liar.uploadId)).toMatchObject({ status: 'pending' });
  });
});

describe('deletes and the versions listing on InMemoryLedger', () => {
  it('a delete commits a tombstone; versions list newest first a page at a time; an unknown path is not found', async () => {
    const s = setup();
    for (let i = 0; i < 3; i++) {
      const bytes = randomBytes(100 + i);
      await claim(s, 'docs/list.txt', bytes);
      await ingestBlob(s.deps, store(s, bytes));
    }
    const tombstone = await deleteFile(s.deps, 'docs/list.txt', 3);
    expect(tombstone).toMatchObject({ version: 4, deleted: true, sha256: null });
    expect(await s.ledger.liveFilesAmong(['docs/list.txt'])).toEqual([]);
    await expect(deleteFile(s.deps, 'docs/list.txt', undefined)).rejects.toBeInstanceOf(NotFoundError);

    const first = await listFileVersions(s.deps, 'docs/list.txt', { limit: 3 });
    expect(first.versions.map((v) => v.version)).toEqual([4, 3, 2]);
    expect(first.nextBefore).toBe(2);
    const second = await listFileVersions(s.deps, 'docs/list.txt', { limit: 3, before: first.nextBefore });
    expect(second.versions.map((v) => v.version)).toEqual([1]);
    expect(second.nextBefore).toBeUndefined();
    await expect(listFileVersions(s.deps, 'docs/none.txt', { limit: 3 })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});

describe('reconcile on InMemoryLedger', () => {
  // A target with no row for a path may still hold it: replicate copied the file and died before
  // recording the row, and the later delete's message was lost. "No row" is not "never held".
  it('re-sends a delete to a target with no row for the path, once: after the row is written nothing more', async () => {
    const s = setup();
    const bytes = randomBytes(300);
    await claim(s, 'docs/gone.txt', bytes);
    await ingestBlob(s.deps, store(s, bytes));
    const tombstone = await deleteFile(s.deps, 'docs/gone.txt', 1);
    s.sent.length = 0;

    const first = await reconcileTargets(s.deps);
    expect(first.targets.alpha?.resent).toBe(1);
    expect(s.sent).toMatchObject([{ targetId: 'alpha', path: 'docs/gone.txt', version: tombstone.version }]);

    await s.ledger.recordTargetState({
      targetId: 'alpha',
      path: 'docs/gone.txt',
      appliedVersion: tombstone.version,
      status: 'verified',
      appliedAt: new Date().toISOString(),
      etag: undefined,
    });
    s.sent.length = 0;
    const second = await reconcileTargets(s.deps);
    expect(second.targets.alpha?.resent).toBe(0);
    expect(s.sent).toEqual([]);
  });
});
