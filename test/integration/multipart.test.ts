/** Multipart uploads against the S3 emulator: plan, presigned parts, resume, complete, verify, abort. */
import { ListPartsCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MiB } from '../../contracts/multipart.ts';
import { completeRecordedUpload } from '../../functions/core/completion.js';
import { ingestBlob } from '../../functions/core/ingest.js';
import {
  abortUpload,
  completeUpload,
  createUpload,
  describeUpload,
  presignPart,
  recordPart,
} from '../../functions/core/uploads.js';
import { makeWorld, randomBytes, sha256Hex, type World } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
let world: World;
beforeAll(async () => {
  emulators = await startEmulators();
  world = await makeWorld(emulators);
});
afterAll(async () => {
  await emulators?.stop();
});

async function sendPart(uploadId: string, bytes: Buffer, partNumber: number, partSize: number, lie = false) {
  const slice = bytes.subarray((partNumber - 1) * partSize, partNumber * partSize);
  // A liar signs the part checksum of the bytes it sends (S3 refuses any other with
  // BadDigest), so only the whole-object check at ingest can catch it.
  const body = lie ? Buffer.from(slice.map((b) => b ^ 0xff)) : slice;
  const signed = await presignPart(world.deps, uploadId, {
    partNumber,
    size: slice.length,
    sha256: sha256Hex(body),
  });
  const { 'content-length': _l, ...headers } = signed.headers;
  const put = await fetch(signed.url, { method: 'PUT', headers, body: new Uint8Array(body) });
  expect(put.status).toBe(200);
  await recordPart(world.deps, uploadId, {
    partNumber,
    size: slice.length,
    sha256: sha256Hex(body),
    etag: put.headers.get('etag') as string,
  });
}

/** A multipart upload of `size` random bytes to `path`, claimed, with `parts` sent and recorded. */
async function claimWithParts(path: string, size: number, parts: readonly number[]) {
  const bytes = randomBytes(size);
  const request = { path, size, sha256: sha256Hex(bytes), contentType: 'application/octet-stream' };
  const claimed = await createUpload(world.deps, request);
  if (claimed.status !== 'pending' || !('multipart' in claimed)) throw new Error('expected a multipart plan');
  for (const n of parts) await sendPart(claimed.uploadId, bytes, n, claimed.multipart.partSize);
  return { claimed, request };
}

describe('multipart uploads', () => {
  it('a resume reads only the pending uploads claimed on the same terms, however many others claim the hash', async () => {
    // Claims are free to make: 40 of this hash at other paths must not cost a read each.
    const bytes = randomBytes(17 * MiB);
    const sha256 = sha256Hex(bytes);
    for (let i = 0; i < 40; i++) {
      await createUpload(world.deps, {
        path: `junk/${i}.bin`,
        size: 10 + i,
        sha256,
        contentType: 'application/octet-stream',
      });
    }
    const request = {
      path: 'big/popular.bin',
      size: bytes.length,
      sha256,
      contentType: 'application/octet-stream',
    };
    const first = await createUpload(world.deps, request);
    let uploadReads = 0;
    const ledger = new Proxy(world.deps.ledger, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (name === 'getUpload') uploadReads++;
          return value.apply(target, args);
        };
      },
    });
    const again = await createUpload({ ...world.deps, ledger }, request);
    expect(again).toMatchObject({ uploadId: first.uploadId, resumed: true });
    expect(uploadReads).toBe(1);
    await abortUpload(world.deps, first.uploadId);
  });

  it('a claim that differs in its condition (ifVersion, newVersion) or content type starts an upload of its own instead of resuming', async () => {
    // Resuming another claim's upload would commit under that claim's terms: its ifVersion (a lost
    // update) and its content type.
    const bytes = randomBytes(17 * MiB);
    const base = { path: 'big/terms.bin', size: bytes.length, sha256: sha256Hex(bytes) };
    const first = await createUpload(world.deps, { ...base, contentType: 'application/octet-stream' });
    const otherType = await createUpload(world.deps, { ...base, contentType: 'image/png' });
    expect(otherType).not.toMatchObject({ resumed: true });
    expect(otherType.uploadId).not.toBe(first.uploadId);
    const conditional = await createUpload(world.deps, {
      ...base,
      contentType: 'application/octet-stream',
      ifVersion: 0,
    });
    expect(conditional).not.toMatchObject({ resumed: true });
    expect(conditional.uploadId).not.toBe(first.uploadId);
    // A new version of equal content asked for must not ride on a claim that did not ask (it would
    // end at the equal head, no version committed), nor the other way round.
    const fresh = await createUpload(world.deps, {
      ...base,
      contentType: 'application/octet-stream',
      newVersion: true,
    });
    expect(fresh).not.toMatchObject({ resumed: true });
    expect(fresh.uploadId).not.toBe(first.uploadId);
    const freshAgain = await createUpload(world.deps, {
      ...base,
      contentType: 'application/octet-stream',
      newVersion: true,
    });
    expect(freshAgain).toMatchObject({ uploadId: fresh.uploadId, resumed: true });
    // The same terms again resume, with the challenge already given out: a new one would refuse the
    // first client's proof, computed for the old one.
    const same = await createUpload(world.deps, { ...base, contentType: 'image/png' });
    expect(same).toMatchObject({ uploadId: otherType.uploadId, resumed: true });
    expect(same.status === 'pending' && same.challenge).toEqual(
      otherType.status === 'pending' && otherType.challenge,
    );
    for (const u of [first, otherType, conditional, fresh]) await abortUpload(world.deps, u.uploadId);
  });

  it('uploads in parts, resumes with only the missing parts, completes, and commits after whole-object verification', async () => {
    const bytes = randomBytes(17 * MiB + 3);
    const request = {
      path: 'big/video.mp4',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
    };
    const first = await createUpload(world.deps, request);
    if (first.status !== 'pending' || !('multipart' in first)) throw new Error('expected a multipart plan');
    expect(first.multipart).toEqual({ partSize: 8 * MiB, partCount: 3, uploadedParts: [] });
    await sendPart(first.uploadId, bytes, 2, first.multipart.partSize);

    // Another browser, or the same after a reload: the same upload continues.
    const again = await createUpload(world.deps, request);
    if (!('multipart' in again)) throw new Error('expected a multipart plan');
    expect(again).toMatchObject({ uploadId: first.uploadId, resumed: true });
    expect(again.multipart.uploadedParts.map((p) => [p.partNumber, p.size])).toEqual([[2, 8 * MiB]]);

    await expect(completeUpload(world.deps, first.uploadId)).rejects.toMatchObject({
      status: 400,
      field: 'parts',
      message: expect.stringContaining('1, 3'),
    });
    for (const n of [1, 3]) await sendPart(first.uploadId, bytes, n, first.multipart.partSize);
    expect(await completeUpload(world.deps, first.uploadId)).toEqual({
      status: 'verifying',
      uploadId: first.uploadId,
    });

    const outcome = await ingestBlob(world.deps, {
      key: `blobs/${request.sha256}`,
      size: bytes.length,
      etag: undefined,
      versionId: undefined,
    });
    expect(outcome).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: first.uploadId, version: 1 }],
    });
    expect(await describeUpload(world.deps, first.uploadId)).toMatchObject({
      status: 'committed',
      version: 1,
      multipart: { partCount: 3 },
    });
  });

  it('an abort that races the background completion ends the upload as aborted, never as expired, and nothing commits', async () => {
    const { claimed } = await claimWithParts('big/raced.bin', 16 * MiB + 7, [1, 2]);
    // The completion runs right after storage dropped the parts (the client cancels as it completes).
    const racing = Object.create(world.deps.blobs) as typeof world.deps.blobs;
    racing.abortMultipart = async (sha256, multipartId) => {
      await world.deps.blobs.abortMultipart(sha256, multipartId);
      await completeRecordedUpload(world.deps, claimed.uploadId);
    };
    const aborted = await abortUpload({ ...world.deps, blobs: racing }, claimed.uploadId);
    expect(aborted).toMatchObject({ status: 'rejected', reason: 'aborted' });
    expect(await describeUpload(world.deps, claimed.uploadId)).toMatchObject({
      status: 'rejected',
      reason: 'aborted',
    });
    expect(await world.ledger.getHead('big/raced.bin')).toBeUndefined();
  });

  it('an abort cut off after its ledger write is finished by the retry: the parts are dropped at storage and the pointer removed', async () => {
    const { claimed, request } = await claimWithParts('big/cut-off.bin', 16 * MiB + 9, [1]);
    // The first DELETE's function wrote the ledger and then died.
    await world.ledger.finishUpload(
      claimed.uploadId,
      { status: 'rejected', reason: 'aborted' },
      new Date().toISOString(),
    );
    const retried = await abortUpload(world.deps, claimed.uploadId);
    expect(retried).toMatchObject({ status: 'rejected', reason: 'aborted' });
    const upload = await world.ledger.getUpload(claimed.uploadId);
    await expect(
      emulators.s3.send(
        new ListPartsCommand({
          Bucket: world.originBucket,
          Key: `blobs/${request.sha256}`,
          UploadId: upload?.multipart?.multipartId,
        }),
      ),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    const { pending } = await world.ledger.getBlobAndPending(request.sha256);
    expect(pending.map((p) => p.uploadId)).not.toContain(claimed.uploadId);
    // Again: nothing left to do, and no failure counted.
    await abortUpload(world.deps, claimed.uploadId);
  });

  it('a lying part is caught at ingest: nothing is committed and the upload says why', async () => {
    const bytes = randomBytes(16 * MiB + 10);
    const request = {
      path: 'big/forged.bin',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
    };
    const created = await createUpload(world.deps, request);
    if (!('multipart' in created)) throw new Error('expected a multipart plan');
    await sendPart(created.uploadId, bytes, 1, created.multipart.partSize);
    await sendPart(created.uploadId, bytes, 2, created.multipart.partSize);
    await sendPart(created.uploadId, bytes, 3, created.multipart.partSize, true);
    await completeUpload(world.deps, created.uploadId);
    const outcome = await ingestBlob(world.deps, {
      key: `blobs/${request.sha256}`,
      size: bytes.length,
      etag: undefined,
      versionId: undefined,
    });
    expect(outcome.kind).toBe('rejected');
    expect(await describeUpload(world.deps, created.uploadId)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/sha256 mismatch/),
    });
    expect(await world.ledger.getHead('big/forged.bin')).toBeUndefined();
  });

  it('abort ends the upload and its S3 multipart upload; a part of the wrong size is refused', async () => {
    const bytes = randomBytes(20 * MiB);
    const request = {
      path: 'big/abandoned.bin',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
    };
    const created = await createUpload(world.deps, request);
    if (!('multipart' in created)) throw new Error('expected a multipart plan');
    await expect(
      presignPart(world.deps, created.uploadId, { partNumber: 1, size: 5, sha256: sha256Hex('x') }),
    ).rejects.toMatchObject({ field: 'size' });
    await expect(
      presignPart(world.deps, created.uploadId, { partNumber: 4, size: 5, sha256: sha256Hex('x') }),
    ).rejects.toMatchObject({ field: 'partNumber' });
    const aborted = await abortUpload(world.deps, created.uploadId);
    expect(aborted).toMatchObject({ status: 'rejected', reason: 'aborted' });
    await expect(completeUpload(world.deps, created.uploadId)).rejects.toMatchObject({ status: 409 });
    expect(await world.ledger.listPendingUploads(request.sha256)).toEqual([]);
  });
});
