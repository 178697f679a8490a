/**
 * The folder/file rule's counts (docs/design-notes.md, "The folder/file rule") across changes of
 * the topology: a file is counted out of exactly the folders it was counted into, whatever the pull
 * targets are when it goes, so no count is left that refuses a folder for ever, and none goes below
 * what lives under it. Review 7, F1 to F3: each test failed while the delete decided from the
 * targets of the moment.
 */
import { describe, expect, it } from 'vitest';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { deleteFile } from '../../../functions/core/uploads.js';
import { randomBytes } from '../../support/domain.js';
import { claimPendingUpload, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';
import { indexBehind } from '../../support/index-behind.ts';

const s3 = { id: 'alpha', kind: 's3' as const };
const pull = (pathPrefix?: string) => ({
  id: 'dc1',
  kind: 'pull' as const,
  ...(pathPrefix === undefined ? {} : { pathPrefix }),
});

type Core = ReturnType<typeof inMemoryCore>;

/** Uploads fresh bytes at `path` through the ingest with `deps`: the upload's outcome. */
async function put(s: Core, deps: Core['deps'], path: string) {
  const bytes = randomBytes(100);
  const upload = await claimPendingUpload(s.ledger, path, bytes);
  await ingestBlob(deps, storeBlob(s.blobs, bytes));
  return s.ledger.getUpload(upload.uploadId);
}

/** The core with its live-files index a moment behind (as on AWS): only the commit's rows can refuse. */
const behind = (s: Core): Core['deps'] => ({ ...s.deps, ledger: indexBehind(s.ledger) });

describe('folder rule counts when the pull targets change', () => {
  it('a file deleted while no pull target takes it is still counted out: its folder can be a file again', async () => {
    const s = inMemoryCore({ targets: [s3, pull()] });
    expect(await put(s, s.deps, 'x/y/f.txt')).toMatchObject({ status: 'committed' });
    await deleteFile({ ...s.deps, targets: [s3] }, 'x/y/f.txt', undefined);
    expect(await put(s, s.deps, 'x/y')).toMatchObject({ status: 'committed' });
  });

  it('a pull target narrowed between a file appearing and going: every folder it was counted into is freed', async () => {
    const s = inMemoryCore({ targets: [s3, pull()] });
    expect(await put(s, s.deps, 'p/q/r.txt')).toMatchObject({ status: 'committed' });
    await deleteFile({ ...s.deps, targets: [s3, pull('p/q/')] }, 'p/q/r.txt', undefined);
    expect(await put(s, { ...s.deps, targets: [s3, pull('p/')] }, 'p/q')).toMatchObject({
      status: 'committed',
    });
  });

  it('a file never counted (committed while no pull target took it) takes nothing off when it goes: the count still refuses the folder', async () => {
    const s = inMemoryCore({ targets: [s3, pull()] });
    const before = { ...s.deps, targets: [s3] };
    await put(s, before, 'L/old1');
    await put(s, before, 'L/old2');
    await deleteFile(s.deps, 'L/old1', undefined);
    expect(await put(s, s.deps, 'L/new')).toMatchObject({ status: 'committed' });
    const folderAsFile = await put(s, behind(s), 'L');
    expect(folderAsFile).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/^path_conflict: path is a folder of other files/),
    });
    expect(await s.ledger.getHead('L')).toBeUndefined();
  });

  it('the counts follow deletes, restores over a tombstone and new versions: the folder is free exactly when nothing lives under it', async () => {
    const s = inMemoryCore({ targets: [s3, pull()] });
    await put(s, s.deps, 'm/a.txt');
    await put(s, s.deps, 'm/a.txt'); // a new version: no second count
    await deleteFile(s.deps, 'm/a.txt', undefined);
    await put(s, s.deps, 'm/a.txt'); // content after a tombstone: counted again
    expect(await put(s, behind(s), 'm')).toMatchObject({ status: 'rejected' });
    await deleteFile(s.deps, 'm/a.txt', undefined);
    expect(await put(s, behind(s), 'm')).toMatchObject({ status: 'committed' });
  });
});
