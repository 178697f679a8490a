import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import { initialCursor, readChanges } from '../../../functions/core/changes.js';
import { NotFoundError } from '../../../functions/core/errors.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { ProofNotAcceptedError, proofDigest, proveUpload } from '../../../functions/core/possession.js';
import { reconcileTargets } from '../../../functions/core/reconcile.js';
import { restoreVersion } from '../../../functions/core/restore.js';
import { deleteFile } from '../../../functions/core/uploads.js';
import { listFileVersions } from '../../../functions/core/versions.js';
import { randomBytes, recordApplied, sha256Hex } from '../../support/domain.js';
import { claimPendingUpload, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';

/** The proof a holder of `bytes` answers the upload's challenge with. */
const answer = (upload: Upload, bytes: Buffer) =>
  proofDigest(
    upload.challenge?.nonce as string,
    (upload.challenge?.ranges ?? []).map((r) => bytes.subarray(r.offset, r.offset + r.length)),
  );

afterEach(() => {
  vi.useRealTimers();
});

function setup() {
  return inMemoryCore({
    targets: [
      { id: 'alpha', kind: 's3' as const },
      { id: 'beta', kind: 's3' as const, pathPrefix: 'public/' },
    ],
  });
}

describe('ingest on InMemoryLedger', () => {
  it('commits every upload waiting for the bytes: versions, feed entries, fan-out per selecting target', async () => {
    const s = setup();
    const bytes = randomBytes(3000);
    const a = await claimPendingUpload(s.ledger, 'public/a.png', bytes);
    const b = await claimPendingUpload(s.ledger, 'private/b.png', bytes);
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
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

  it('an upload whose pointer is gone is committed by the bytes its own URL sent (the object names it)', async () => {
    // A pointer written under the blob's partition before pointers had their own (W#) is not read
    // after the upgrade: the upload must not hang pending until it expires.
    const s = setup();
    const bytes = randomBytes(1500);
    const upload = await claimPendingUpload(s.ledger, 'public/orphan.png', bytes);
    const other = await claimPendingUpload(s.ledger, 'private/other.png', randomBytes(10));
    await s.ledger.removePendingUpload(upload.sha256, upload.uploadId);
    const sha256 = sha256Hex(bytes);
    const versionId = s.blobs.put(sha256, bytes, upload.uploadId);
    const outcome = await ingestBlob(s.deps, {
      key: `blobs/${sha256}`,
      size: bytes.length,
      etag: undefined,
      versionId,
    });
    expect(outcome).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: upload.uploadId, version: 1 }],
    });
    expect(await s.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    // Bytes naming an upload of other content commit nothing for it.
    const forged = randomBytes(700);
    const forgedSha = sha256Hex(forged);
    await ingestBlob(s.deps, {
      key: `blobs/${forgedSha}`,
      size: forged.length,
      etag: undefined,
      versionId: s.blobs.put(forgedSha, forged, other.uploadId),
    });
    expect(await s.ledger.getUpload(other.uploadId)).toMatchObject({ status: 'pending' });
  });

  it('the same event delivered by four workers at once gives one version and one feed entry', async () => {
    const s = setup();
    const bytes = randomBytes(2048);
    const upload = await claimPendingUpload(s.ledger, 'media/dup.png', bytes);
    const event = storeBlob(s.blobs, bytes);
    await Promise.all(Array.from({ length: 4 }, () => ingestBlob(s.deps, event)));
    expect((await s.ledger.listVersions('media/dup.png', { limit: 10 })).map((v) => v.uploadId)).toEqual([
      upload.uploadId,
    ]);
    const page = await readChanges(s.ledger, initialCursor(2), 10);
    expect(page.changes.map((c) => `${c.path}@${c.version}`)).toEqual(['media/dup.png@1']);
    expect(await s.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
  });

  it('two uploads of the same content to one path, claimed before either committed: one version, both committed at it', async () => {
    for (const pointerCarriesClaim of [false, true]) {
      const s = setup();
      const bytes = randomBytes(1000);
      const a = await claimPendingUpload(s.ledger, 'public/same.png', bytes, {}, { pointerCarriesClaim });
      const b = await claimPendingUpload(s.ledger, 'public/same.png', bytes, {}, { pointerCarriesClaim });
      await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
      const versions = await s.ledger.listVersions('public/same.png', { limit: 10 });
      expect(versions.map((v) => v.version)).toEqual([1]);
      expect(await s.ledger.getUpload(a.uploadId)).toMatchObject({ status: 'committed', version: 1 });
      expect(await s.ledger.getUpload(b.uploadId)).toMatchObject({ status: 'committed', version: 1 });
      expect(await s.ledger.listPendingUploads(a.sha256)).toEqual([]);
      const page = await readChanges(s.ledger, initialCursor(2), 10);
      expect(page.changes.map((c) => `${c.path}@${c.version}`)).toEqual(['public/same.png@1']);
      expect(s.sent.map((m) => `${m.targetId}:${m.path}@${m.version}`).sort()).toEqual([
        'alpha:public/same.png@1',
        'beta:public/same.png@1',
      ]);
    }
  });

  it('a claim of the same SHA-256 at another size is not committed by the verified bytes: it stays pending, no version of its path', async () => {
    for (const pointerCarriesClaim of [false, true]) {
      const s = setup();
      const bytes = randomBytes(1000);
      const honest = await claimPendingUpload(
        s.ledger,
        'public/honest.png',
        bytes,
        {},
        { pointerCarriesClaim },
      );
      const wrongSize = await claimPendingUpload(
        s.ledger,
        'public/wrong-size.png',
        bytes,
        { size: bytes.length + 1 },
        { pointerCarriesClaim },
      );
      await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
      expect(await s.ledger.getUpload(honest.uploadId)).toMatchObject({ status: 'committed', version: 1 });
      expect(await s.ledger.getUpload(wrongSize.uploadId)).toMatchObject({ status: 'pending' });
      expect(await s.ledger.getHead('public/wrong-size.png')).toBeUndefined();
      const page = await readChanges(s.ledger, initialCursor(2), 10);
      expect(page.changes.map((c) => `${c.path}@${c.version}`)).toEqual(['public/honest.png@1']);
    }
  });

  it('the same content with newVersion, or with another type, is a new version', async () => {
    const s = setup();
    const bytes = randomBytes(1000);
    await claimPendingUpload(s.ledger, 'public/again.png', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const forced = await claimPendingUpload(
      s.ledger,
      'public/again.png',
      bytes,
      { newVersion: true },
      {
        pointerCarriesClaim: true,
      },
    );
    const retyped = await claimPendingUpload(s.ledger, 'public/again.png', bytes, {
      contentType: 'image/gif',
    });
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const versions = await s.ledger.listVersions('public/again.png', { limit: 10 });
    expect(versions.map((v) => v.version)).toEqual([3, 2, 1]);
    expect((await s.ledger.getUpload(forced.uploadId))?.status).toBe('committed');
    expect((await s.ledger.getUpload(retyped.uploadId))?.status).toBe('committed');
    expect(versions.map((v) => v.uploadId)).toContain(forced.uploadId);
    expect(versions.map((v) => v.uploadId)).toContain(retyped.uploadId);
  });

  it('an upload whose ifVersion no longer holds is rejected, its pointer removed, nothing overwritten', async () => {
    const s = setup();
    const first = randomBytes(1000);
    await claimPendingUpload(s.ledger, 'media/x.png', first);
    await ingestBlob(s.deps, storeBlob(s.blobs, first));
    const stale = randomBytes(1001);
    const late = await claimPendingUpload(s.ledger, 'media/x.png', stale, { ifVersion: 0 });
    const outcome = await ingestBlob(s.deps, storeBlob(s.blobs, stale));
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
  it('a holder of verified bytes commits without sending them, once; a second answer is refused', async () => {
    const s = setup();
    const bytes = randomBytes(4000);
    await claimPendingUpload(s.ledger, 'media/original.png', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const copy = await claimPendingUpload(s.ledger, 'media/copy.png', bytes);
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
    await claimPendingUpload(s.ledger, 'media/seed.png', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const racer = await claimPendingUpload(s.ledger, 'media/race.png', bytes);
    // Its own bytes arrive too (a client that both proves and uploads).
    const event = storeBlob(s.blobs, bytes);
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
    await claimPendingUpload(s.ledger, 'media/o.png', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const liar = await claimPendingUpload(s.ledger, 'media/liar.png', bytes);
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
      await claimPendingUpload(s.ledger, 'docs/list.txt', bytes);
      await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    }
    const tombstone = await deleteFile(s.deps, 'docs/list.txt', 3);
    expect(tombstone).toMatchObject({ version: 4, deleted: true, sha256: null });
    expect(await s.ledger.liveFilesAmong(['docs/list.txt'])).toEqual([]);
    await expect(deleteFile(s.deps, 'docs/list.txt', undefined)).rejects.toBeInstanceOf(NotFoundError);
    // A condition on another version than the tombstone's is a conflict, as on a live head (probe V3);
    // on the tombstone's own version there is nothing left to delete.
    await expect(deleteFile(s.deps, 'docs/list.txt', 3)).rejects.toMatchObject({
      code: 'version_conflict',
      currentVersion: 4,
    });
    await expect(deleteFile(s.deps, 'docs/list.txt', 4)).rejects.toBeInstanceOf(NotFoundError);

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

describe('the file/folder rule of a pull target, on every way a version is committed', () => {
  const withPull = () =>
    inMemoryCore({
      targets: [
        { id: 'alpha', kind: 's3' as const },
        { id: 'dc1', kind: 'pull' as const },
      ],
    });

  it('a proof of possession for a path under a live file is refused (path_conflict) and the upload ends rejected', async () => {
    const s = withPull();
    const known = randomBytes(3000);
    await claimPendingUpload(s.ledger, 'elsewhere/known.bin', known);
    await ingestBlob(s.deps, storeBlob(s.blobs, known));
    // Claimed while pf/a was free; pf/a is a file by the time the proof comes.
    const copy = await claimPendingUpload(s.ledger, 'pf/a/b', known);
    const file = randomBytes(10);
    await claimPendingUpload(s.ledger, 'pf/a', file);
    await ingestBlob(s.deps, storeBlob(s.blobs, file));
    await expect(proveUpload(s.deps, copy, answer(copy, known))).rejects.toMatchObject({
      code: 'path_conflict',
    });
    expect(await s.ledger.getHead('pf/a/b')).toBeUndefined();
    expect(await s.ledger.getUpload(copy.uploadId)).toMatchObject({ status: 'rejected' });
    expect(await s.ledger.listPendingUploads(copy.sha256)).not.toContain(copy.uploadId);
  });

  it('a restore of a file where a folder now holds live files is refused (path_conflict), nothing committed', async () => {
    const s = withPull();
    const old = randomBytes(20);
    await claimPendingUpload(s.ledger, 'rs/a', old);
    await ingestBlob(s.deps, storeBlob(s.blobs, old));
    await deleteFile(s.deps, 'rs/a', undefined);
    const under = randomBytes(21);
    await claimPendingUpload(s.ledger, 'rs/a/b', under);
    await ingestBlob(s.deps, storeBlob(s.blobs, under));
    await expect(restoreVersion(s.deps, 'rs/a', 1, undefined)).rejects.toMatchObject({
      code: 'path_conflict',
    });
    expect(await s.ledger.getHead('rs/a')).toMatchObject({ version: 2, deleted: true });
  });

  it('a restore of content storage no longer has (its pinned object removed out of band) is refused, and commits nothing (probe V4)', async () => {
    const s = setup();
    const old = randomBytes(24);
    await claimPendingUpload(s.ledger, 'rl/a', old);
    const stored = storeBlob(s.blobs, old);
    await ingestBlob(s.deps, stored);
    await deleteFile(s.deps, 'rl/a', undefined);
    await s.blobs.delete(sha256Hex(old), stored.versionId);
    await expect(restoreVersion(s.deps, 'rl/a', 1, undefined)).rejects.toMatchObject({
      code: 'not_found',
      status: 404,
      field: 'from',
    });
    expect(await s.ledger.getHead('rl/a')).toMatchObject({ version: 2, deleted: true });
  });

  it('a restore under a live file is refused too', async () => {
    const s = withPull();
    const old = randomBytes(22);
    await claimPendingUpload(s.ledger, 'rt/a/b', old);
    await ingestBlob(s.deps, storeBlob(s.blobs, old));
    await deleteFile(s.deps, 'rt/a/b', undefined);
    const file = randomBytes(23);
    await claimPendingUpload(s.ledger, 'rt/a', file);
    await ingestBlob(s.deps, storeBlob(s.blobs, file));
    await expect(restoreVersion(s.deps, 'rt/a/b', 1, undefined)).rejects.toMatchObject({
      code: 'path_conflict',
    });
  });
});

describe('concurrent deletes on InMemoryLedger', () => {
  it('five deletes of one file at once (no ifVersion): one tombstone, the others find no file', async () => {
    const s = setup();
    const bytes = randomBytes(64);
    await claimPendingUpload(s.ledger, 'docs/once.txt', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => deleteFile(s.deps, 'docs/once.txt', undefined)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r) => r.status === 'rejected')) {
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(NotFoundError);
    }
    const { versions } = await listFileVersions(s.deps, 'docs/once.txt', { limit: 10 });
    expect(versions.map((v) => [v.version, v.deleted])).toEqual([
      [2, true],
      [1, false],
    ]);
  });

  it('a delete racing a new upload deletes whichever head it saw last, never a tombstone twice', async () => {
    const s = setup();
    const one = randomBytes(64);
    await claimPendingUpload(s.ledger, 'docs/race.txt', one);
    await ingestBlob(s.deps, storeBlob(s.blobs, one));
    const two = randomBytes(65);
    await claimPendingUpload(s.ledger, 'docs/race.txt', two);
    const [deleted] = await Promise.all([
      deleteFile(s.deps, 'docs/race.txt', undefined),
      ingestBlob(s.deps, storeBlob(s.blobs, two)),
    ]);
    const { versions } = await listFileVersions(s.deps, 'docs/race.txt', { limit: 10 });
    expect(versions.filter((v) => v.deleted)).toHaveLength(1);
    expect(deleted.deleted).toBe(true);
  });
});

describe('reconcile on InMemoryLedger', () => {
  // A target with no row for a path may still hold it: replicate copied the file and died before
  // recording the row, and the later delete's message was lost. "No row" is not "never held".
  it('re-sends a delete to a target with no row for the path, once: after the row is written nothing more', async () => {
    const s = setup();
    const bytes = randomBytes(300);
    await claimPendingUpload(s.ledger, 'docs/gone.txt', bytes);
    await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
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

  it('paces its object checks on time passed: a clock stepped 2 hours back does not stall the run (probe skew)', async () => {
    const s = setup();
    const paths = ['a.txt', 'b.txt', 'c.txt'];
    for (const path of paths) {
      const bytes = randomBytes(100);
      await claimPendingUpload(s.ledger, path, bytes);
      await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
    }
    const heads = await Promise.all(paths.map((p) => s.ledger.getHead(p)));
    for (const head of heads) {
      if (!head) throw new Error('no head');
      await recordApplied(s.ledger, 'alpha', head.path, head.version);
    }
    // The operator's laptop runs `media-mirror-ops reconcile`; NTP steps its clock back mid-run.
    vi.useFakeTimers({ toFake: ['Date'] });
    let stats = 0;
    const replica = {
      async stat(path: string) {
        if (++stats === 1) vi.setSystemTime(Date.now() - 2 * 3600_000);
        const head = heads.find((h) => h?.path === path);
        return { version: head?.version, sha256: head?.sha256, size: head?.size ?? 0, etag: undefined };
      },
    };
    const started = performance.now();
    const report = await reconcileTargets(
      { ...s.deps, replicas: (id: string) => (id === 'alpha' ? (replica as never) : undefined) },
      // The HEADs are paced; the listing is not the subject here.
      { targetIds: ['alpha'], checkObjects: true, listObjects: false },
    );
    expect(stats).toBe(3);
    expect(report.targets.alpha).toEqual({ resent: 0, missing: 0, altered: 0 });
    // Three checks at 50 a second; before, the second waited out the 2 hours the clock went back.
    expect(performance.now() - started).toBeLessThan(2000);
  }, 5000);
});
