import { describe, expect, it } from 'vitest';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { randomBytes } from '../../support/domain.js';
import { claimPendingUpload, countingLedger, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';

function setup() {
  const { ledger, inner, calls } = countingLedger();
  const core = inMemoryCore({
    ledger,
    feedShards: 4,
    // A pull target: the folder/file rule applies to every path.
    targets: [
      { id: 's3', kind: 's3' as const },
      { id: 'dc', kind: 'pull' as const },
    ],
    fanout: { send: async () => undefined },
  });
  return { deps: core.deps, ledger: inner, blobs: core.blobs, calls };
}

type Setup = ReturnType<typeof setup>;

/** A claim as createUpload records it: the pointer carries it, unless `bare` (a pointer of before). */
const claim = (s: Setup, path: string, bytes: Buffer, bare = false) =>
  claimPendingUpload(s.ledger, path, bytes, {}, { challenge: false, pointerCarriesClaim: !bare });

describe("the ingest's ledger calls per commit", () => {
  it('new bytes for one upload three folders deep: no folder head read, no read-back of what it wrote', async () => {
    const s = setup();
    const bytes = randomBytes(1500);
    const upload = await claim(s, 'media/a/b/one.png', bytes);
    s.calls.length = 0;
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    expect(outcome).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: upload.uploadId, version: 1 }],
    });
    // The verified record rides on the commit: no putBlob of its own.
    expect(s.calls).toEqual([
      'getBlobAndPending',
      'hasLiveFileUnder',
      'readCommitState',
      'commit',
      'markFannedOut',
    ]);
    expect(await s.ledger.getBlob(upload.sha256)).toMatchObject({ size: 1500 });
  });

  it("bytes sent through their upload's URL: the pin and that upload's pointer in one read, 5 calls in all", async () => {
    const s = setup();
    const bytes = randomBytes(1700);
    const upload = await claim(s, 'media/a/b/sent.png', bytes);
    // Another claim of the same content by hash alone: the sender's bytes do not commit it.
    const other = await claim(s, 'media/a/b/other.png', bytes);
    s.calls.length = 0;
    // The object names the upload whose URL sent it (the metadata signed into that URL).
    const versionId = s.blobs.put(upload.sha256, bytes, upload.uploadId);
    const event = { key: `blobs/${upload.sha256}`, size: bytes.length, etag: undefined, versionId };
    const outcome = await ingestBlob(s.deps, event);
    expect(outcome).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: upload.uploadId, version: 1 }],
    });
    expect(s.calls).toEqual([
      'getBlobAndPendingOf',
      'hasLiveFileUnder',
      'readCommitState',
      'commit',
      'markFannedOut',
    ]);
    expect(await s.ledger.getUpload(other.uploadId)).toMatchObject({ status: 'pending' });
    expect(await s.ledger.listPendingUploads(upload.sha256)).toEqual([other.uploadId]);
  });

  it('a pointer that carries no claim (written before pointers did) still commits, reading its upload', async () => {
    const s = setup();
    const bytes = randomBytes(1400);
    const upload = await claim(s, 'media/old.png', bytes, true);
    s.calls.length = 0;
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    expect(outcome).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: upload.uploadId, version: 1 }],
    });
    expect(s.calls.filter((c) => c === 'getUpload')).toHaveLength(1);
  });

  it('a claim whose upload ended after its pointer was read is refused by the commit itself: its outcome stands', async () => {
    const s = setup();
    const bytes = randomBytes(1300);
    const upload = await claim(s, 'media/late.png', bytes);
    // The upload expires while the ingest runs, its pointer not yet removed (a crash in between).
    await s.ledger.finishUpload(
      upload.uploadId,
      { status: 'expired', reason: 'late' },
      new Date().toISOString(),
    );
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    expect(outcome).toMatchObject({ kind: 'committed', committed: [] });
    expect(await s.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'expired', reason: 'late' });
    expect(await s.ledger.getHead('media/late.png')).toBeUndefined();
    expect(await s.ledger.listPendingUploads(upload.sha256)).toEqual([]);
  });

  it('a folder that became a live file after the claim refuses the upload in the commit itself (path_conflict)', async () => {
    const s = setup();
    const bytes = randomBytes(1600);
    const upload = await claim(s, 'media/dir/file.png', bytes);
    const other = randomBytes(1601);
    await claim(s, 'media/dir', other);
    await ingestBlob(s.deps, storeBlob(s.blobs, other));
    expect(await s.ledger.getHead('media/dir')).toMatchObject({ version: 1, deleted: false });
    s.calls.length = 0;
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    expect(outcome).toMatchObject({ kind: 'committed', committed: [], rejected: [upload.uploadId] });
    expect(s.calls).not.toContain('liveFilesAmong');
    expect(await s.ledger.getHead('media/dir/file.png')).toBeUndefined();
    expect(await s.ledger.getUpload(upload.uploadId)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/path_conflict.*"media\/dir", which is a file/),
    });
    expect(await s.ledger.listPendingUploads(upload.sha256)).toEqual([]);
    // No commit carried the verified record: it is written on its own.
    expect(s.calls).toContain('putBlob');
    expect(await s.ledger.getBlob(upload.sha256)).toMatchObject({ size: 1600 });
  });
});
