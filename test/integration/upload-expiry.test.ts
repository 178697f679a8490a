/**
 * Pending uploads expire (core/expiry.ts), driven through the domain's use cases on the real
 * ledger (dynalite) and bucket (local S3) with a clock the test moves. Storage stamps objects
 * with the real time, so "an upload from two days ago" is one created with the clock set back.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MiB } from '../../contracts/multipart.ts';
import { expirePendingUploads, RESUMABLE_FOR_MS } from '../../functions/core/expiry.js';
import { ingestBlob } from '../../functions/core/ingest.js';
import type { Clock } from '../../functions/core/ports.js';
import {
  completeUpload,
  createUpload,
  describeUpload,
  presignPart,
  type UploadDeps,
} from '../../functions/core/uploads.js';
import { makeWorld, putBlob, RecordingMetrics, sha256Hex, type World } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

const DAY = 24 * 60 * 60 * 1000;

let emulators: TestEmulators;
let world: World;
let offsetMs = 0;
const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
let deps: UploadDeps & { metrics: RecordingMetrics };

beforeAll(async () => {
  emulators = await startEmulators();
  world = await makeWorld(emulators);
  deps = { ...world.deps, clock };
});
afterAll(async () => {
  await emulators?.stop();
});

const bytesOf = (text: string) => Buffer.from(text);

async function declare(path: string, bytes: Buffer, at: number) {
  offsetMs = at;
  const created = await createUpload(deps, {
    path,
    size: bytes.length,
    sha256: sha256Hex(bytes),
    contentType: 'text/plain',
  });
  offsetMs = 0;
  if (created.status !== 'pending') throw new Error(`expected a pending upload, got ${created.status}`);
  return created.uploadId;
}

async function arrive(bytes: Buffer) {
  const sha = sha256Hex(bytes);
  const put = await putBlob(emulators, world.originBucket, sha, bytes);
  return ingestBlob(deps, { key: `blobs/${sha}`, size: bytes.length, etag: put.etag, versionId: undefined });
}

describe('pending uploads expire', () => {
  it('bytes that arrive after the upload expired are not committed: the upload is expired and the newer version stays head', async () => {
    const old = bytesOf(`abandoned ${Date.now()}`);
    const abandoned = await declare('exp/photo.txt', old, -2 * DAY);

    const newer = bytesOf(`newer ${Date.now()}`);
    const current = await declare('exp/photo.txt', newer, 0);
    expect(await arrive(newer)).toMatchObject({ committed: [{ uploadId: current, version: 1 }] });

    const outcome = await arrive(old);
    expect(outcome).toMatchObject({ kind: 'committed', committed: [], expired: [abandoned] });
    expect(await describeUpload(deps, abandoned)).toMatchObject({
      status: 'expired',
      reason: expect.stringMatching(/stored at .* outside /),
    });
    expect(await world.ledger.getHead('exp/photo.txt')).toMatchObject({
      version: 1,
      sha256: sha256Hex(newer),
    });
    expect(await world.ledger.getHead('exp/photo.txt')).toMatchObject({ version: 1 });
    expect(await world.ledger.listPendingUploads(sha256Hex(old))).toEqual([]);
  });

  it('bytes stored in time commit however late the ingest verifies them', async () => {
    const bytes = bytesOf(`in time ${Date.now()}`);
    const uploadId = await declare('exp/late-verify.txt', bytes, 0);
    const sha = sha256Hex(bytes);
    const put = await putBlob(emulators, world.originBucket, sha, bytes);
    offsetMs = 2 * DAY; // the event waited two days in a queue
    const outcome = await ingestBlob(deps, {
      key: `blobs/${sha}`,
      size: bytes.length,
      etag: put.etag,
      versionId: undefined,
    });
    offsetMs = 0;
    expect(outcome).toMatchObject({ committed: [{ uploadId, version: 1 }] });
    expect(outcome).not.toHaveProperty('expired');
  });

  it('bytes stored before the upload was claimed are not its own: once it lapses, an old event does not commit it', async () => {
    const bytes = bytesOf(`stored first ${Date.now()}`);
    const sha = sha256Hex(bytes);
    const put = await putBlob(emulators, world.originBucket, sha, bytes);
    // Claimed five minutes after the bytes were stored, and never sent again.
    const uploadId = await declare('exp/claimed-later.txt', bytes, 5 * 60_000);
    offsetMs = 2 * DAY; // the old object's event is delivered (again) two days later
    const outcome = await ingestBlob(deps, {
      key: `blobs/${sha}`,
      size: bytes.length,
      etag: put.etag,
      versionId: undefined,
    });
    offsetMs = 0;
    expect(outcome).toMatchObject({ committed: [], expired: [uploadId] });
    expect(await world.ledger.getHead('exp/claimed-later.txt')).toBeUndefined();
  });

  it('the sweep ends, from the ledger alone, an upload still pending a day past its expiry (even with a stored copy)', async () => {
    const bytes = bytesOf(`known before ${Date.now()}`);
    await putBlob(emulators, world.originBucket, sha256Hex(bytes), bytes);
    const uploadId = await declare('exp/known-before.txt', bytes, 5 * 60_000);
    const stat = vi.spyOn(deps.blobs, 'stat');
    offsetMs = 2 * DAY;
    await expirePendingUploads(deps);
    offsetMs = 0;
    expect(stat).not.toHaveBeenCalled();
    stat.mockRestore();
    expect(await world.ledger.getUpload(uploadId)).toMatchObject({
      status: 'expired',
      reason: expect.stringMatching(/still pending a day after/),
    });
  });

  it('the sweep ends a lapsed multipart upload without asking storage anything (reconcile holds no permission on the origin)', async () => {
    const request = {
      path: 'exp/abandoned-parts.bin',
      size: 17 * MiB,
      sha256: sha256Hex(`abandoned parts ${Date.now()}`),
      contentType: 'application/octet-stream',
    };
    offsetMs = -3 * DAY;
    const created = await createUpload(deps, request);
    offsetMs = 0;
    expect(created).toMatchObject({ status: 'pending', multipart: expect.any(Object) });
    // As on AWS for the reconcile role: every call on the origin is refused.
    const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied' });
    const calls = (['stat', 'abortMultipart', 'readRange', 'delete'] as const).map((method) =>
      vi.spyOn(deps.blobs, method).mockRejectedValue(denied),
    );
    try {
      await expirePendingUploads(deps);
      for (const call of calls) expect(call).not.toHaveBeenCalled();
    } finally {
      for (const call of calls) call.mockRestore();
    }
    expect(await world.ledger.getUpload(created.uploadId)).toMatchObject({
      status: 'expired',
      reason: expect.stringMatching(/still pending a day after/),
    });
    expect(await world.ledger.listPendingUploads(request.sha256)).toEqual([]);
  });

  it('GET of a pending upload past its expiry shows "expired" and removes its pending pointer', async () => {
    const bytes = bytesOf(`never sent ${Date.now()}`);
    const uploadId = await declare('exp/never.txt', bytes, -1 * DAY);
    expect(await world.ledger.listPendingUploads(sha256Hex(bytes))).toEqual([uploadId]);
    expect(await describeUpload(deps, uploadId)).toMatchObject({
      status: 'expired',
      expiresAt: expect.any(String),
    });
    expect(await world.ledger.listPendingUploads(sha256Hex(bytes))).toEqual([]);
  });

  it('a multipart upload older than the resumable window is not resumed: a new upload with a new multipart id starts, the old one is aborted', async () => {
    const size = 17 * MiB;
    const request = {
      path: 'exp/big.bin',
      size,
      sha256: sha256Hex(`big ${Date.now()}`),
      contentType: 'application/octet-stream',
    };
    offsetMs = -(RESUMABLE_FOR_MS + 60_000);
    const first = await createUpload(deps, request);
    offsetMs = -(RESUMABLE_FOR_MS - 60 * 60_000);
    const resumedInWindow = await createUpload(deps, request);
    offsetMs = 0;
    expect(resumedInWindow).toMatchObject({ uploadId: first.uploadId, resumed: true });

    const abort = vi.spyOn(deps.blobs, 'abortMultipart');
    const again = await createUpload(deps, request);
    expect(again).toMatchObject({ status: 'pending', resumed: false });
    expect(again.uploadId).not.toBe(first.uploadId);
    const [oldRecord, newRecord] = await Promise.all([
      world.ledger.getUpload(first.uploadId),
      world.ledger.getUpload(again.uploadId),
    ]);
    expect(newRecord?.multipart?.multipartId).toBeDefined();
    expect(newRecord?.multipart?.multipartId).not.toBe(oldRecord?.multipart?.multipartId);
    expect(oldRecord?.status).toBe('expired');
    expect(abort).toHaveBeenCalledWith(request.sha256, oldRecord?.multipart?.multipartId);
    abort.mockRestore();
    expect(await world.ledger.listPendingUploads(request.sha256)).toEqual([again.uploadId]);

    // The expired upload's parts and completion are refused, saying so.
    await expect(
      presignPart(deps, first.uploadId, { partNumber: 1, size: 8 * MiB, sha256: '0'.repeat(64) }),
    ).rejects.toMatchObject({ status: 409, code: 'upload_expired', field: 'uploadId' });
    await expect(completeUpload(deps, first.uploadId)).rejects.toMatchObject({ code: 'upload_expired' });
  });

  it('a part URL never outlives the multipart upload it belongs to', async () => {
    const size = 17 * MiB;
    const request = {
      path: 'exp/edge.bin',
      size,
      sha256: sha256Hex(`edge ${Date.now()}`),
      contentType: 'application/octet-stream',
    };
    offsetMs = -(RESUMABLE_FOR_MS - 120_000); // two minutes left
    const created = await createUpload(deps, request);
    offsetMs = 0;
    const part = await presignPart(deps, created.uploadId, {
      partNumber: 1,
      size: 8 * MiB,
      sha256: '0'.repeat(64),
    });
    const expiresIn = Number(new URL(part.url).searchParams.get('X-Amz-Expires'));
    expect(expiresIn).toBeGreaterThan(0);
    expect(expiresIn).toBeLessThanOrEqual(120);
  });

  it('the sweep ends uploads a day past their expiry (UploadsExpired) and leaves the others, lapsed or not', async () => {
    const sweepWorld = await makeWorld(emulators);
    const metrics = new RecordingMetrics();
    const d = { ...sweepWorld.deps, clock, metrics };
    const make = async (text: string, at: number) => {
      offsetMs = at;
      const bytes = bytesOf(`${text} ${Date.now()}`);
      const created = await createUpload(d, {
        path: `sweep/${text}.txt`,
        size: bytes.length,
        sha256: sha256Hex(bytes),
        contentType: 'text/plain',
      });
      offsetMs = 0;
      return { uploadId: created.uploadId, bytes };
    };
    // The sweep runs a day from now: one upload from two days ago (a day past its expiry), one made
    // a minute before the sweep (in its window), one made now (lapsed by then, but not by a day; its
    // bytes are stored, not yet ingested: the ingest decides).
    const lapsed = await make('lapsed', -2 * DAY);
    const fresh = await make('fresh', DAY - 60_000);
    const storedInTime = await make('stored-in-time', 0);
    await putBlob(emulators, sweepWorld.originBucket, sha256Hex(storedInTime.bytes), storedInTime.bytes);
    offsetMs = DAY;

    expect(await expirePendingUploads(d, { dryRun: true })).toMatchObject({ pending: 3, expired: 1 });
    expect((await sweepWorld.ledger.getUpload(lapsed.uploadId))?.status).toBe('pending');

    const report = await expirePendingUploads(d);
    expect(report).toEqual({ pending: 3, expired: 1, stale: 0 });
    expect(metrics.total('UploadsExpired')).toBe(1);
    expect((await sweepWorld.ledger.getUpload(lapsed.uploadId))?.status).toBe('expired');
    expect((await sweepWorld.ledger.getUpload(fresh.uploadId))?.status).toBe('pending');
    expect((await sweepWorld.ledger.getUpload(storedInTime.uploadId))?.status).toBe('pending');
    expect(await sweepWorld.ledger.listPendingUploads(sha256Hex(lapsed.bytes))).toEqual([]);

    // Run again: nothing more to do.
    expect(await expirePendingUploads(d)).toEqual({ pending: 2, expired: 0, stale: 0 });
    offsetMs = 0;
  });
});
