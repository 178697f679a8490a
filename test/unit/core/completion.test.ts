/**
 * Completing multipart uploads in the background (functions/core/completion.ts) and the API's
 * complete (functions/core/uploads.ts) on InMemoryLedger and a fake multipart store: idempotent
 * on every path (a retried complete, a redelivered message, S3 done already). No network.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { type CompletionDeps, completeRecordedUpload } from '../../../functions/core/completion.js';
import type { StoredPart } from '../../../functions/core/ports.js';
import { completeUpload, type UploadDeps } from '../../../functions/core/uploads.js';
import { RecordingMetrics } from '../../support/domain.js';

const MiB = 1024 * 1024;

/** S3's multipart side: completes once, then knows the upload no more (NoSuchUpload). */
class FakeMultipart {
  readonly completed: { multipartId: string; parts: readonly StoredPart[] }[] = [];
  readonly aborted: string[] = [];
  refuse: string | undefined;
  object: { uploadId: string } | undefined;
  #open = new Set<string>();

  open(multipartId: string) {
    this.#open.add(multipartId);
  }

  async completeMultipart(_sha: string, multipartId: string, parts: readonly StoredPart[]) {
    if (!this.#open.has(multipartId)) throw Object.assign(new Error('gone'), { name: 'NoSuchUpload' });
    if (this.refuse) throw Object.assign(new Error('refused'), { name: this.refuse });
    this.#open.delete(multipartId);
    this.completed.push({ multipartId, parts });
  }

  async abortMultipart(_sha: string, multipartId: string) {
    this.aborted.push(multipartId);
    this.#open.delete(multipartId);
  }

  async stat() {
    return this.object === undefined
      ? undefined
      : { size: 1, etag: undefined, versionId: undefined, sha256: undefined, uploadId: this.object.uploadId };
  }
}

async function setup() {
  const ledger = new InMemoryLedger();
  const blobs = new FakeMultipart();
  const sent: string[] = [];
  const metrics = new RecordingMetrics();
  const now = new Date();
  const upload: Upload = {
    uploadId: randomUUID(),
    path: 'big/video.mp4',
    sha256: 'a'.repeat(64),
    size: 17 * MiB,
    contentType: 'video/mp4',
    status: 'pending',
    multipart: { multipartId: 'mp-1', partSize: 8 * MiB, partCount: 3 },
    expiresAt: new Date(now.getTime() + 3600_000).toISOString(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
  await ledger.putUpload(upload);
  await ledger.addPendingUpload(upload.sha256, upload.uploadId);
  blobs.open('mp-1');
  const sizes = [8 * MiB, 8 * MiB, MiB];
  for (const [i, size] of sizes.entries()) {
    await ledger.recordPart(upload.uploadId, {
      partNumber: i + 1,
      size,
      sha256: 'b'.repeat(64),
      etag: `e${i}`,
    });
  }
  const clock = { now: () => new Date() };
  const deps = { ledger, blobs, clock, metrics } as unknown as CompletionDeps;
  const api = {
    ledger,
    blobs,
    clock,
    metrics,
    completionQueue: { requestCompletion: async (id: string) => void sent.push(id) },
  } as unknown as UploadDeps;
  return { ledger, blobs, deps, api, sent, upload };
}

describe('multipart completion in the background', () => {
  it('the API checks the parts, queues the completion and answers verifying, again on a retry', async () => {
    const s = await setup();
    const answer = { status: 'verifying', uploadId: s.upload.uploadId };
    expect(await completeUpload(s.api, s.upload.uploadId)).toEqual(answer);
    expect(await completeUpload(s.api, s.upload.uploadId)).toEqual(answer);
    expect(s.sent).toEqual([s.upload.uploadId, s.upload.uploadId]);
    // Nothing ran at storage within the request.
    expect(s.blobs.completed).toEqual([]);
  });

  it('the API records when completion was asked for, before queueing it; a retry moves the mark', async () => {
    const s = await setup();
    let now = new Date('2026-11-30T03:00:00.000Z');
    const api = { ...s.api, clock: { now: () => now } } as UploadDeps;
    await completeUpload(api, s.upload.uploadId);
    expect((await s.ledger.getUpload(s.upload.uploadId))?.completionRequestedAt).toBe(now.toISOString());
    now = new Date('2026-11-30T03:05:00.000Z');
    // The queue is down: the request fails, and the mark lets the pending sweep send the completion later.
    const down = {
      ...api,
      completionQueue: {
        requestCompletion: async () => {
          throw new Error('queue unavailable');
        },
      },
    } as UploadDeps;
    await expect(completeUpload(down, s.upload.uploadId)).rejects.toThrow('queue unavailable');
    expect((await s.ledger.getUpload(s.upload.uploadId))?.completionRequestedAt).toBe(now.toISOString());
  });

  it('a part missing is still refused in the request, and nothing is queued', async () => {
    const s = await setup();
    await s.ledger.recordPart(s.upload.uploadId, {
      partNumber: 3,
      size: 5,
      sha256: 'b'.repeat(64),
      etag: 'x',
    });
    await expect(completeUpload(s.api, s.upload.uploadId)).rejects.toMatchObject({
      status: 400,
      code: 'parts_missing',
      field: 'parts',
    });
    expect(s.sent).toEqual([]);
  });

  it('completes at storage with the parts in order and quoted ETags; a redelivered message converges', async () => {
    const s = await setup();
    expect(await completeRecordedUpload(s.deps, s.upload.uploadId)).toEqual({ kind: 'completed' });
    expect(s.blobs.completed).toHaveLength(1);
    expect(s.blobs.completed[0]?.parts.map((p) => [p.partNumber, p.etag])).toEqual([
      [1, '"e0"'],
      [2, '"e1"'],
      [3, '"e2"'],
    ]);
    // S3 stored the object for this upload; the same message again (or a second complete's):
    s.blobs.object = { uploadId: s.upload.uploadId };
    expect(await completeRecordedUpload(s.deps, s.upload.uploadId)).toEqual({
      kind: 'already',
      status: 'stored',
    });
    expect((await s.ledger.getUpload(s.upload.uploadId))?.status).toBe('pending');
    expect(s.blobs.completed).toHaveLength(1);
  });

  it('a message for an upload the ingest committed meanwhile does nothing; a retried complete answers the upload', async () => {
    const s = await setup();
    await s.ledger.finishUpload(
      s.upload.uploadId,
      { status: 'committed', version: 4 },
      new Date().toISOString(),
    );
    expect(await completeRecordedUpload(s.deps, s.upload.uploadId)).toEqual({
      kind: 'already',
      status: 'committed',
    });
    expect(s.blobs.completed).toEqual([]);
    expect(await completeUpload(s.api, s.upload.uploadId)).toMatchObject({
      uploadId: s.upload.uploadId,
      status: 'committed',
      version: 4,
    });
    expect(s.sent).toEqual([]);
  });

  it('parts storage refuses reject the upload with the reason, and abort its multipart upload', async () => {
    const s = await setup();
    s.blobs.refuse = 'InvalidPart';
    const outcome = await completeRecordedUpload(s.deps, s.upload.uploadId);
    expect(outcome).toMatchObject({ kind: 'rejected', reason: expect.stringMatching(/^invalid_parts: /) });
    expect(s.blobs.aborted).toEqual(['mp-1']);
    const after = await s.ledger.getUpload(s.upload.uploadId);
    expect(after).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/^invalid_parts/) });
    expect(await s.ledger.listPendingUploads(s.upload.sha256)).toEqual([]);
  });

  it('parts storage no longer holds, with no object of this upload: rejected as expired', async () => {
    const s = await setup();
    await s.blobs.abortMultipart('', 'mp-1');
    s.blobs.object = { uploadId: 'another-upload' };
    expect(await completeRecordedUpload(s.deps, s.upload.uploadId)).toMatchObject({
      kind: 'rejected',
      reason: expect.stringMatching(/^upload_expired: /),
    });
  });
});
