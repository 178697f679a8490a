import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { NotFoundError, UploadFinishedError, VersionConflictError } from '../../../functions/core/errors.js';
import { type IngestDeps, ingestBlob } from '../../../functions/core/ingest.js';
import { proofDigest } from '../../../functions/core/possession.js';
import { restoreRequestId, restoreVersion } from '../../../functions/core/restore.js';
import {
  abortUpload,
  deleteFile,
  deleteRequestId,
  proveUploadById,
  type UploadDeps,
} from '../../../functions/core/uploads.js';
import { randomBytes, sha256Hex } from '../../support/domain.js';
import { claimPendingUpload, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';

function setup() {
  let failFanouts = 0;
  const core = inMemoryCore({
    fanout: {
      async send(_message: ReplicationMessage) {
        // The api dying between its commit and its fan-out, as the crash point commit.before-fanout does.
        if (failFanouts > 0) {
          failFanouts--;
          throw new Error('the invocation died');
        }
      },
    },
  });
  const deps = {
    ...core.deps,
    replicas: () => undefined,
    limits: {
      maxUploadBytes: 1024 ** 3,
      multipartThresholdBytes: 1024 ** 3,
      contentTypes: ['image/png'],
      presignTtlSeconds: 900,
    },
  } as unknown as UploadDeps & IngestDeps;
  return { deps, ledger: core.ledger, blobs: core.blobs, dieAfterNextCommit: () => (failFanouts = 1) };
}

type Setup = ReturnType<typeof setup>;

const claim = (s: Setup, path: string, bytes: Buffer) => claimPendingUpload(s.ledger, path, bytes);

async function ingest(s: Setup, bytes: Buffer) {
  await ingestBlob(s.deps, storeBlob(s.blobs, bytes));
}

const digest = (upload: Upload, bytes: Buffer) =>
  proofDigest(
    upload.challenge?.nonce as string,
    (upload.challenge?.ranges ?? []).map((r) => bytes.subarray(r.offset, r.offset + r.length)),
  );

describe('a retried proof of possession', () => {
  it('after the api died past the commit, the retry answers the committed version and commits nothing more', async () => {
    const s = setup();
    const bytes = randomBytes(3000);
    await claim(s, 'retry/original.png', bytes);
    await ingest(s, bytes);
    const copy = await claim(s, 'retry/copy.png', bytes);
    s.dieAfterNextCommit();
    await expect(proveUploadById(s.deps, copy.uploadId, digest(copy, bytes))).rejects.toThrow(
      'the invocation died',
    );
    expect(await s.ledger.getUpload(copy.uploadId)).toMatchObject({ status: 'committed', version: 1 });

    const retried = await proveUploadById(s.deps, copy.uploadId, digest(copy, bytes));
    expect(retried).toEqual({
      status: 'committed',
      uploadId: copy.uploadId,
      path: 'retry/copy.png',
      version: 1,
      deduplicated: true,
    });
    expect(await s.ledger.listVersions('retry/copy.png', { limit: 10 })).toHaveLength(1);
  });

  it('after an answered proof, a second one gets the same answer', async () => {
    const s = setup();
    const bytes = randomBytes(2000);
    await claim(s, 'again/original.png', bytes);
    await ingest(s, bytes);
    const copy = await claim(s, 'again/copy.png', bytes);
    const first = await proveUploadById(s.deps, copy.uploadId, digest(copy, bytes));
    expect(await proveUploadById(s.deps, copy.uploadId, digest(copy, bytes))).toEqual(first);
    expect(await s.ledger.listVersions('again/copy.png', { limit: 10 })).toHaveLength(1);
  });

  it('an upload its own bytes committed, or one aborted, still answers upload_finished: no proof committed it', async () => {
    const s = setup();
    const bytes = randomBytes(1500);
    const sent = await claim(s, 'bytes/sent.png', bytes);
    await ingest(s, bytes);
    expect(await s.ledger.getUpload(sent.uploadId)).toMatchObject({ status: 'committed' });
    await expect(proveUploadById(s.deps, sent.uploadId, digest(sent, bytes))).rejects.toBeInstanceOf(
      UploadFinishedError,
    );

    const other = randomBytes(1500);
    const aborted = await claim(s, 'bytes/aborted.png', other);
    await abortUpload(s.deps, aborted.uploadId);
    await expect(proveUploadById(s.deps, aborted.uploadId, digest(aborted, other))).rejects.toThrow(
      expect.objectContaining({ code: 'upload_finished', status: 409 }),
    );
  });
});

describe('a delete retried under its Idempotency-Key after the api died past its commit', () => {
  it('finds its own tombstone and answers it; no second tombstone', async () => {
    const s = setup();
    const bytes = randomBytes(500);
    await claim(s, 'del/a.png', bytes);
    await ingest(s, bytes);
    const id = deleteRequestId('key-1', 'del/a.png');
    s.dieAfterNextCommit();
    await expect(deleteFile(s.deps, 'del/a.png', 1, id)).rejects.toThrow('the invocation died');
    expect(await s.ledger.getHead('del/a.png')).toMatchObject({ version: 2, deleted: true });

    // With ifVersion (the head has moved past it, to our own tombstone) and without.
    expect(await deleteFile(s.deps, 'del/a.png', 1, id)).toMatchObject({ version: 2, deleted: true });
    expect(await deleteFile(s.deps, 'del/a.png', undefined, id)).toMatchObject({ version: 2, deleted: true });
    expect(await s.ledger.listVersions('del/a.png', { limit: 10 })).toHaveLength(2);
    // Another request (another key) deleting the deleted file is still told there is none.
    await expect(
      deleteFile(s.deps, 'del/a.png', undefined, deleteRequestId('key-2', 'del/a.png')),
    ).rejects.toBeInstanceOf(NotFoundError);
    await expect(deleteFile(s.deps, 'del/a.png', undefined)).rejects.toBeInstanceOf(NotFoundError);
  });

  // Found by the full chaos run: the delete committed v2 and died, an upload committed v3, and the
  // retry that took the key over saw a head not its own and deleted again (v4), wiping v3.
  it('finds its own tombstone under versions committed after it; the later upload stays the head', async () => {
    const s = setup();
    const one = randomBytes(500);
    await claim(s, 'del/b.png', one);
    await ingest(s, one);
    const id = deleteRequestId('key-1', 'del/b.png');
    s.dieAfterNextCommit();
    await expect(deleteFile(s.deps, 'del/b.png', undefined, id)).rejects.toThrow('the invocation died');
    const two = randomBytes(600);
    await claim(s, 'del/b.png', two);
    await ingest(s, two);
    expect(await s.ledger.getHead('del/b.png')).toMatchObject({ version: 3, deleted: false });

    expect(await deleteFile(s.deps, 'del/b.png', undefined, id)).toMatchObject({ version: 2, deleted: true });
    expect(await s.ledger.getHead('del/b.png')).toMatchObject({ version: 3, deleted: false });
    expect(await s.ledger.listVersions('del/b.png', { limit: 10 })).toHaveLength(3);
  });

  it('the request id depends on the key and the path only', () => {
    expect(deleteRequestId('k', 'a')).toBe(deleteRequestId('k', 'a'));
    expect(deleteRequestId('k', 'a')).not.toBe(deleteRequestId('k', 'b'));
    expect(deleteRequestId('k', 'a')).not.toBe(deleteRequestId('j', 'a'));
    expect(deleteRequestId('k', 'a')).toMatch(/^delete-[0-9a-f]{32}$/);
  });
});

describe('a restore retried under its Idempotency-Key after the api died past its commit', () => {
  /** v1 and v2 of a path; a restore of v1 under `key` committed v3, then its invocation died. */
  async function restoredThenDied(path: string, key: string, ifVersion: number | undefined) {
    const s = setup();
    const one = randomBytes(700);
    const two = randomBytes(800);
    await claim(s, path, one);
    await ingest(s, one);
    await claim(s, path, two);
    await ingest(s, two);
    const id = restoreRequestId(key, path, 1);
    s.dieAfterNextCommit();
    await expect(restoreVersion(s.deps, path, 1, ifVersion, id)).rejects.toThrow('the invocation died');
    expect(await s.ledger.getHead(path)).toMatchObject({ version: 3, sha256: sha256Hex(one) });
    return { s, id };
  }

  it('with ifVersion: finds its own version and answers it, not 409; no second restore', async () => {
    const { s, id } = await restoredThenDied('res/if.png', 'key-1', 2);
    expect(await restoreVersion(s.deps, 'res/if.png', 1, 2, id)).toMatchObject({ version: 3, uploadId: id });
    expect(await s.ledger.listVersions('res/if.png', { limit: 10 })).toHaveLength(3);
    // Another request (another key) restoring at the head it saw then is still a conflict.
    await expect(
      restoreVersion(s.deps, 'res/if.png', 1, 2, restoreRequestId('key-2', 'res/if.png', 1)),
    ).rejects.toBeInstanceOf(VersionConflictError);
  });

  it('without ifVersion: finds its own version and answers it; no duplicate restore', async () => {
    const { s, id } = await restoredThenDied('res/plain.png', 'key-1', undefined);
    expect(await restoreVersion(s.deps, 'res/plain.png', 1, undefined, id)).toMatchObject({
      version: 3,
      uploadId: id,
    });
    expect(await s.ledger.listVersions('res/plain.png', { limit: 10 })).toHaveLength(3);
    // Another request (another key, or none) restoring the same version commits a new one.
    expect(await restoreVersion(s.deps, 'res/plain.png', 1, undefined)).toMatchObject({ version: 4 });
    expect(
      await restoreVersion(
        s.deps,
        'res/plain.png',
        1,
        undefined,
        restoreRequestId('key-2', 'res/plain.png', 1),
      ),
    ).toMatchObject({ version: 5 });
  });

  it('finds its own version under versions committed after it; no second restore over them', async () => {
    const { s, id } = await restoredThenDied('res/later.png', 'key-1', undefined);
    const three = randomBytes(900);
    await claim(s, 'res/later.png', three);
    await ingest(s, three);
    expect(await restoreVersion(s.deps, 'res/later.png', 1, undefined, id)).toMatchObject({
      version: 3,
      uploadId: id,
    });
    expect(await s.ledger.getHead('res/later.png')).toMatchObject({ version: 4, sha256: sha256Hex(three) });
    expect(await s.ledger.listVersions('res/later.png', { limit: 10 })).toHaveLength(4);
  });

  it('the request id depends on the key, the path and the version restored', () => {
    expect(restoreRequestId('k', 'a', 1)).toBe(restoreRequestId('k', 'a', 1));
    expect(restoreRequestId('k', 'a', 1)).not.toBe(restoreRequestId('k', 'b', 1));
    expect(restoreRequestId('k', 'a', 1)).not.toBe(restoreRequestId('j', 'a', 1));
    expect(restoreRequestId('k', 'a', 1)).not.toBe(restoreRequestId('k', 'a', 2));
    expect(restoreRequestId('k', 'a', 1)).toMatch(/^restore-[0-9a-f]{32}$/);
    expect(restoreRequestId('k', 'a', 1).slice(-32)).not.toBe(deleteRequestId('k', 'a').slice(-32));
  });
});
