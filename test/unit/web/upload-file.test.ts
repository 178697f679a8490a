/**
 * `uploadFile` against an in-memory API and store (a fake `fetch`): deduplication,
 * single PUT, parallel parts, resume, retries with backoff, abort, verification.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { hashRange } from '../../../web/client/hashing.ts';
import type { UploadProgress } from '../../../web/client/plan.ts';
import { sendableHeaders, UploadError, uploadFile } from '../../../web/client/upload-file.ts';
import {
  blobOf,
  bytesOf,
  contractViolations,
  etagOf,
  FakeMirror,
  MiB,
  sha256Of,
  uploadOptions,
} from './fake-api.ts';

const API = 'https://api.test';
const options = uploadOptions;

/** Progress events, and a check that each phase's bytes never go backwards. */
function recorder() {
  const events: UploadProgress[] = [];
  return {
    events,
    onProgress: (p: UploadProgress) => events.push(p),
    phases: () => events.map((e) => e.phase).filter((p, i, all) => p !== all[i - 1]),
    monotonic: () =>
      events.every((e, i) => {
        const prev = events[i - 1];
        return !prev || prev.phase !== e.phase || prev.bytesDone <= e.bytesDone;
      }),
  };
}

// Every answer the fake gave matched the API's contract (a drifted fake fails here).
afterEach(() => {
  expect(contractViolations.splice(0)).toEqual([]);
});

describe('hashRange', () => {
  it('hashes whole blobs and ranges like node:crypto: streamed (any chunk size) or in one WebCrypto call', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 600_000 }),
        fc.integer({ min: 0, max: 600_000 }),
        fc.integer({ min: 0, max: 600_000 }),
        fc.integer({ min: 1, max: 200_000 }),
        fc.constantFrom(0, 100_000, undefined),
        async (size, a, b, chunk, nativeMaxBytes) => {
          const bytes = bytesOf(size, size + 1);
          const start = Math.min(a, b, size);
          const end = Math.min(Math.max(a, b), size);
          const expected = createHash('sha256').update(bytes.subarray(start, end)).digest('hex');
          const seen: number[] = [];
          const job = { blob: new Blob([bytes]), start, end, chunkBytes: chunk, nativeMaxBytes };
          const got = await hashRange(job, (n) => seen.push(n));
          expect(got).toBe(expected);
          if (end > start) expect(seen.at(-1)).toBe(end - start);
          expect(seen.every((n, i) => i === 0 || n >= (seen[i - 1] ?? 0))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('streams a range larger than the WebCrypto limit with hash-wasm', async () => {
    const bytes = bytesOf(5 * MiB + 3, 9);
    const seen: number[] = [];
    const got = await hashRange(
      { blob: new Blob([bytes]), start: 1, end: bytes.length, nativeMaxBytes: MiB },
      (n) => seen.push(n),
    );
    expect(got).toBe(sha256Of(bytes.subarray(1)));
    expect(seen.length).toBeGreaterThan(1);
  });

  it('a file shorter than expected (changed since it was picked) is an error', async () => {
    const blob = new Blob([bytesOf(1000)]);
    await expect(hashRange({ blob, start: 0, end: 2000, nativeMaxBytes: 0 })).rejects.toThrow(
      /the file changed/,
    );
    await expect(hashRange({ blob, start: 0, end: 2000 })).rejects.toThrow(/the file changed/);
  });
});

describe('uploadFile', () => {
  it('sends no bytes for known content: deduplicated', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(1000);
    await uploadFile(blobOf(bytes), options(mirror));
    const before = mirror.storageRequests().length;
    const rec = recorder();
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, { path: 'other/copy.bin', onProgress: rec.onProgress }),
    );
    expect(result).toMatchObject({
      status: 'committed',
      deduplicated: true,
      version: 1,
      bytesSent: 0,
      partsSent: 0,
    });
    expect(mirror.storageRequests().length).toBe(before);
    expect(rec.phases()).toEqual(['hashing', 'deduplicated']);
    // The claim, then the proof: the digest over the nonce and the challenged bytes.
    const calls = mirror.requests.slice(-2);
    expect(calls.map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      'POST /v1/uploads',
      `POST /v1/uploads/${result.uploadId}/proof`,
    ]);
    expect(calls[1]?.body).toEqual({ digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('known content above the multipart threshold: deduplicated, no part presigned or sent', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(11 * MiB + 1, 4);
    await uploadFile(blobOf(bytes), options(mirror));
    const before = mirror.requests.length;
    const result = await uploadFile(blobOf(bytes), options(mirror, { path: 'other/big.bin' }));
    expect(result).toMatchObject({ status: 'committed', deduplicated: true, bytesSent: 0, partsSent: 0 });
    expect(mirror.requests.slice(before).map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      'POST /v1/uploads',
      `POST /v1/uploads/${result.uploadId}/proof`,
    ]);
  });

  it('content the mirror does not hold: the proof is refused and the bytes go as before', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(2000, 5);
    const rec = recorder();
    const result = await uploadFile(blobOf(bytes), options(mirror, { onProgress: rec.onProgress }));
    expect(result).toMatchObject({ status: 'committed', deduplicated: false, bytesSent: bytes.length });
    expect(mirror.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`).slice(0, 3)).toEqual([
      'POST /v1/uploads',
      `POST /v1/uploads/${result.uploadId}/proof`,
      `PUT /blobs/${sha256Of(bytes)}`,
    ]);
    expect(rec.phases()).toEqual(['hashing', 'uploading', 'verifying', 'committed']);
  });

  it('proof: false sends the bytes without answering the challenge', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(1000, 6);
    await uploadFile(blobOf(bytes), options(mirror));
    const before = mirror.requests.length;
    const result = await uploadFile(blobOf(bytes), options(mirror, { path: 'again.bin', proof: false }));
    expect(result).toMatchObject({ status: 'committed', deduplicated: false, bytesSent: bytes.length });
    expect(mirror.requests.slice(before).some((r) => r.url.endsWith('/proof'))).toBe(false);
  });

  it('a small file: one PUT with exactly the headers the API says to send, then committed', async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(3 * MiB + 5);
    const rec = recorder();
    const result = await uploadFile(
      blobOf(bytes, 'image/png'),
      options(mirror, { onProgress: rec.onProgress }),
    );
    expect(result).toMatchObject({
      status: 'committed',
      version: 1,
      deduplicated: false,
      bytesSent: bytes.length,
    });
    expect(result.sha256).toBe(sha256Of(bytes));
    const claim = mirror.apiRequests('POST', '/v1/uploads')[0];
    expect(claim?.url).toBe(`${API}/v1/uploads`);
    expect(claim?.headers.authorization).toBe('Bearer secret');
    expect(claim?.body).toEqual({
      path: 'media/file.bin',
      size: bytes.length,
      sha256: sha256Of(bytes),
      contentType: 'image/png',
    });
    const puts = mirror.storageRequests();
    expect(puts).toHaveLength(1);
    expect(puts[0]?.headers).toEqual({
      'content-type': 'image/png',
      'x-amz-checksum-sha256': Buffer.from(sha256Of(bytes), 'hex').toString('base64'),
    });
    expect(rec.phases()).toEqual(['hashing', 'uploading', 'verifying', 'committed']);
    expect(rec.monotonic()).toBe(true);
    const last = rec.events.at(-1);
    expect(last).toMatchObject({ bytesDone: bytes.length, bytesTotal: bytes.length });
  });

  it("a single PUT whose URL expired meanwhile (a long offline spell): the claim's replay under the same key signs it again, and the PUT goes to the new URL (probe webui)", async () => {
    const mirror = new FakeMirror();
    const bytes = bytesOf(200_000, 9);
    const expired = '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>';
    mirror.interceptors.push((r) => {
      // Storage refuses the URL the claim gave once it has expired.
      if (r.method === 'PUT' && r.url.startsWith('https://s3.test') && !r.url.includes('renewed=1')) {
        return new Response(expired, { status: 403 });
      }
      // The API's replay while the upload is pending: the first answer, its URL signed again
      // (core/uploads.ts, refreshReplayedClaim).
      const first = mirror.claimAnswers.get(r.headers['idempotency-key'] ?? '');
      if (r.method === 'POST' && new URL(r.url).pathname === '/v1/uploads' && first !== undefined) {
        const body = JSON.parse(first.body) as { upload: { url: string } };
        body.upload.url = `${body.upload.url}&renewed=1`;
        return new Response(JSON.stringify(body), {
          status: first.status,
          headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
        });
      }
      return undefined;
    });
    // No retries at all: the renewal is no retry of a failure.
    const result = await uploadFile(blobOf(bytes), options(mirror, { retries: 0 }));
    expect(result).toMatchObject({ status: 'committed', version: 1, bytesSent: bytes.length });
    const claims = mirror
      .apiRequests('POST', '/v1/uploads')
      .filter((r) => new URL(r.url).pathname === '/v1/uploads');
    // Before: one claim, and the upload failed with "storage answered 403 AccessDenied: Request has expired".
    expect(claims).toHaveLength(2);
    expect(new Set(claims.map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(mirror.storageRequests().map((r) => r.url.includes('renewed=1'))).toEqual([false, true]);
    expect(mirror.uploads.size).toBe(1);
  });

  it('a single PUT refused again with its new URL fails with what storage said, the URL renewed once', async () => {
    const mirror = new FakeMirror();
    const denied = '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>';
    mirror.interceptors.push((r) =>
      r.method === 'PUT' && r.url.startsWith('https://s3.test')
        ? new Response(denied, { status: 403 })
        : undefined,
    );
    await expect(
      uploadFile(blobOf(bytesOf(1_000, 3)), options(mirror, { retries: 2 })),
    ).rejects.toMatchObject({
      code: 'storage_rejected',
      status: 403,
      message: 'uploading the file: storage answered 403 AccessDenied: Access Denied',
    });
    expect(mirror.storageRequests()).toHaveLength(2);
  });

  it('uses the declared content type over the file type, and octet-stream when neither is known', async () => {
    const mirror = new FakeMirror();
    await uploadFile(blobOf(bytesOf(10, 1), ''), options(mirror));
    await uploadFile(blobOf(bytesOf(10, 2), 'image/png'), options(mirror, { contentType: 'image/webp' }));
    expect(
      mirror
        .apiRequests('POST', '/v1/uploads')
        .filter((r) => new URL(r.url).pathname === '/v1/uploads')
        .map((r) => (r.body as { contentType: string }).contentType),
    ).toEqual(['application/octet-stream', 'image/webp']);
  });

  it('an empty file is a single PUT of zero bytes', async () => {
    const mirror = new FakeMirror();
    const result = await uploadFile(blobOf(new Uint8Array()), options(mirror));
    expect(result).toMatchObject({ status: 'committed', size: 0 });
    expect(result.sha256).toBe(sha256Of(new Uint8Array()));
  });

  it('above the threshold: parts in parallel (bounded), each with its own SHA-256, then complete', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB, verifyingPolls: 2 });
    const bytes = bytesOf(22 * MiB + 3);
    let inFlight = 0;
    let most = 0;
    mirror.interceptors.push(async (r) => {
      if (r.method !== 'PUT') return undefined;
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((res) => setTimeout(res, 5));
      inFlight--;
      return undefined;
    });
    const rec = recorder();
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, { partConcurrency: 2, onProgress: rec.onProgress }),
    );
    expect(result).toMatchObject({
      status: 'committed',
      partsSent: 5,
      partsSkipped: 0,
      resumed: false,
      bytesSent: bytes.length,
    });
    expect(most).toBe(2);
    // Presigned in batches (4 parts first: twice the parts in flight), recorded in one call.
    const presigns = mirror.apiRequests('POST').filter((r) => r.url.endsWith('/parts'));
    expect(presigns.map((r) => (r.body as { parts: unknown[] }).parts.length)).toEqual([4, 1]);
    expect(mirror.apiRequests('PUT').filter((r) => r.url.endsWith('/parts'))).toHaveLength(1);
    expect(
      presigns
        .flatMap((r) => (r.body as { parts: { partNumber: number }[] }).parts)
        .sort((a, b) => a.partNumber - b.partNumber),
    ).toEqual(
      [1, 2, 3, 4, 5].map((n) => {
        const part = bytes.subarray((n - 1) * 5 * MiB, Math.min(bytes.length, n * 5 * MiB));
        return { partNumber: n, size: part.length, sha256: sha256Of(part) };
      }),
    );
    for (const put of mirror.storageRequests()) {
      expect(Object.keys(put.headers)).toEqual(['x-amz-checksum-sha256']);
    }
    expect(mirror.apiRequests('POST').filter((r) => r.url.endsWith('/complete'))).toHaveLength(1);
    expect(rec.phases()).toEqual(['hashing', 'uploading', 'verifying', 'committed']);
    expect(rec.monotonic()).toBe(true);
  });

  it('exactly one part when the file is one byte above the threshold and the part size is larger', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 8 * MiB });
    const result = await uploadFile(blobOf(bytesOf(5 * MiB + 1)), options(mirror));
    expect(result).toMatchObject({ status: 'committed', partsSent: 1 });
  });

  it('resumes: sends only the parts the store lacks, and re-sends a stored part of the wrong size', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(21 * MiB);
    const part = (n: number) => bytes.slice((n - 1) * 5 * MiB, Math.min(bytes.length, n * 5 * MiB));
    const seeded = mirror.seedMultipart({
      path: 'media/file.bin',
      bytes,
      parts: { 1: part(1), 2: part(2).subarray(0, 1000), 4: part(4) },
    });
    const rec = recorder();
    const result = await uploadFile(blobOf(bytes), options(mirror, { onProgress: rec.onProgress }));
    expect(result).toMatchObject({
      status: 'committed',
      uploadId: seeded,
      resumed: true,
      partsSkipped: 2,
      partsSent: 3,
      bytesSent: 11 * MiB,
    });
    const sent = mirror.storageRequests().map((r) => Number(new URL(r.url).searchParams.get('partNumber')));
    expect(sent.sort()).toEqual([2, 3, 5]);
    // Progress starts at what was already stored.
    const firstUploading = rec.events.find((e) => e.phase === 'uploading');
    expect(firstUploading?.bytesDone).toBe(10 * MiB);
  });

  it('retries a part after 5xx and network errors, with backoff, then succeeds', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(12 * MiB);
    const times: number[] = [];
    mirror.interceptors.push((r, n) => {
      if (r.method !== 'PUT' || !r.url.includes('partNumber=2')) return undefined;
      times.push(performance.now());
      if (n === 1) return new Response('<Error><Code>SlowDown</Code></Error>', { status: 503 });
      if (n === 2) throw new TypeError('Failed to fetch');
      return undefined;
    });
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, { backoff: { baseMs: 40, maxMs: 1000, random: () => 0 } }),
    );
    expect(result).toMatchObject({ status: 'committed', partsSent: 3 });
    expect(times).toHaveLength(3);
    // Backoff with random() = 0 waits half the ceiling: 20 ms, then 40 ms.
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(18);
    expect((times[2] ?? 0) - (times[1] ?? 0)).toBeGreaterThanOrEqual(38);
  });

  it('retries API calls on 503 and honours the retry budget', async () => {
    const mirror = new FakeMirror();
    mirror.interceptors.push((r) =>
      r.method === 'POST' ? new Response('{"message":"Service Unavailable"}', { status: 503 }) : undefined,
    );
    const error = await uploadFile(blobOf(bytesOf(10)), options(mirror, { retries: 2 })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UploadError);
    expect((error as UploadError).status).toBe(503);
    expect((error as UploadError).message).toMatch(/gave up after 3 attempts/);
    expect(mirror.apiRequests('POST')).toHaveLength(3);
  });

  it('gives up on a part after the retries; the upload is left for a resume (no DELETE)', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    mirror.interceptors.push((r) =>
      r.method === 'PUT' && r.url.includes('partNumber=1') ? new Response('', { status: 500 }) : undefined,
    );
    const error = await uploadFile(blobOf(bytesOf(11 * MiB)), options(mirror, { retries: 3 })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UploadError);
    expect((error as Error).message).toMatch(/part 1: storage answered 500/);
    expect(mirror.storageRequests().filter((r) => r.url.includes('partNumber=1'))).toHaveLength(4);
    expect(mirror.apiRequests('DELETE')).toHaveLength(0);
  });

  it('does not retry refusals: the API error code and field reach the caller', async () => {
    const mirror = new FakeMirror();
    const error = await uploadFile(
      blobOf(bytesOf(10)),
      options(mirror, { contentType: 'application/x-forbidden' }),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'ApiError',
      code: 'unsupported_content_type',
      status: 415,
      field: 'contentType',
    });
    expect(mirror.apiRequests('POST')).toHaveLength(1);
  });

  it('a wrong token is a 401 UploadError, not retried', async () => {
    const mirror = new FakeMirror();
    const error = await uploadFile(blobOf(bytesOf(10)), options(mirror, { token: 'nope' })).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'unauthorized', status: 401 });
    expect(mirror.requests).toHaveLength(1);
  });

  it('abort: cancels the parts in flight and asks the API to abort the upload', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const controller = new AbortController();
    const held: AbortSignal[] = [];
    mirror.interceptors.push(async (r) => {
      if (r.method !== 'PUT') return undefined;
      const signal = r.signal;
      if (!signal) throw new Error('a PUT without a signal');
      held.push(signal);
      if (held.length === 3) controller.abort();
      // Hang until aborted, as a slow network would.
      await new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      );
      return undefined;
    });
    const error = await uploadFile(
      blobOf(bytesOf(16 * MiB)),
      options(mirror, { partConcurrency: 3, signal: controller.signal }),
    ).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(held).toHaveLength(3);
    expect(held.every((s) => s.aborted)).toBe(true);
    const deletes = mirror.apiRequests('DELETE');
    expect(deletes).toHaveLength(1);
    const upload = [...mirror.uploads.values()][0];
    expect(deletes[0]?.url).toBe(`${API}/v1/uploads/${upload?.uploadId}`);
    expect(upload).toMatchObject({ status: 'rejected', reason: 'aborted' });
    // Nothing more after the abort: no further part, no complete.
    expect(mirror.apiRequests('POST').filter((r) => r.url.endsWith('/complete'))).toHaveLength(0);
  });

  it("abort while the claim's answer is on its way: the claim is replayed under its key and the upload it made is aborted, not left pending (probe webui)", async () => {
    // The API made the upload, but its answer had not arrived when the user cancelled: the client
    // knew no upload id, sent no DELETE, and the upload stayed pending until it expired.
    const mirror = new FakeMirror();
    const controller = new AbortController();
    mirror.interceptors.push(async (r, n) => {
      if (r.method !== 'POST' || new URL(r.url).pathname !== '/v1/uploads' || n !== 1) return undefined;
      const made = (
        mirror as unknown as { claimOnce(key?: string, body?: unknown): Promise<Response> }
      ).claimOnce(r.headers['idempotency-key'], r.body);
      await made;
      controller.abort();
      const signal = r.signal as AbortSignal;
      return new Promise<Response>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    });
    const error = await uploadFile(
      blobOf(bytesOf(200_000, 3)),
      options(mirror, { signal: controller.signal }),
    ).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    const upload = [...mirror.uploads.values()][0];
    expect(mirror.uploads.size).toBe(1);
    expect(upload).toMatchObject({ status: 'rejected', reason: 'aborted' });
    const claims = mirror.apiRequests('POST').filter((r) => new URL(r.url).pathname === '/v1/uploads');
    expect(new Set(claims.map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(mirror.apiRequests('DELETE').map((r) => r.url)).toEqual([`${API}/v1/uploads/${upload?.uploadId}`]);
    expect(mirror.storageRequests()).toHaveLength(0);
  });

  it('abort during the retry backoff stops at once', async () => {
    const mirror = new FakeMirror();
    const controller = new AbortController();
    mirror.interceptors.push((r) => {
      if (r.method !== 'PUT') return undefined;
      setTimeout(() => controller.abort(), 5);
      return new Response('', { status: 503 });
    });
    const started = performance.now();
    const error = await uploadFile(
      blobOf(bytesOf(100)),
      options(mirror, { signal: controller.signal, backoff: { baseMs: 10_000, maxMs: 10_000 } }),
    ).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(performance.now() - started).toBeLessThan(2000);
    expect(mirror.apiRequests('DELETE')).toHaveLength(1);
  });

  it('an already aborted signal sends nothing', async () => {
    const mirror = new FakeMirror();
    const error = await uploadFile(
      blobOf(bytesOf(10)),
      options(mirror, { signal: AbortSignal.abort() }),
    ).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(mirror.requests).toHaveLength(0);
  });

  it('when complete finds parts not recorded, sends and records them again, then completes', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    let lost = false;
    mirror.interceptors.push((r) => {
      // The record of the parts is "lost": the API answers 200 but keeps nothing.
      if (r.method === 'PUT' && r.url.endsWith('/parts') && !lost) {
        lost = true;
        return new Response(JSON.stringify({ partSize: 5 * MiB, partCount: 3, uploadedParts: [] }), {
          status: 200,
        });
      }
      return undefined;
    });
    const result = await uploadFile(blobOf(bytesOf(12 * MiB)), options(mirror));
    expect(result).toMatchObject({ status: 'committed', partsSent: 6 });
    expect(mirror.apiRequests('POST').filter((r) => r.url.endsWith('/complete'))).toHaveLength(2);
    const sent = mirror.storageRequests().map((r) => new URL(r.url).searchParams.get('partNumber'));
    expect(sent.filter((n) => n === '2')).toHaveLength(2);
  });

  it('records each part with its size, SHA-256 and the ETag storage answered', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(11 * MiB);
    await uploadFile(blobOf(bytes), options(mirror));
    const records = mirror
      .apiRequests('PUT')
      .filter((r) => r.url.endsWith('/parts'))
      .flatMap((r) => (r.body as { parts: { partNumber: number }[] }).parts)
      .sort((a, b) => a.partNumber - b.partNumber);
    expect(records).toEqual(
      [1, 2, 3].map((n) => {
        const part = bytes.subarray((n - 1) * 5 * MiB, Math.min(bytes.length, n * 5 * MiB));
        return { partNumber: n, size: part.length, sha256: sha256Of(part), etag: etagOf(part) };
      }),
    );
  });

  it('when storage refuses the parts as recorded (invalid_parts), sends every part again', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    mirror.staleEtagOnce(2);
    const result = await uploadFile(blobOf(bytesOf(12 * MiB)), options(mirror));
    expect(result).toMatchObject({ status: 'committed', partsSent: 6 });
    expect(mirror.apiRequests('POST').filter((r) => r.url.endsWith('/complete'))).toHaveLength(2);
  });

  it('a part stored without a readable ETag (CORS does not expose it) fails with a clear error', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    mirror.interceptors.push((r) =>
      r.method === 'PUT' && r.url.includes('partNumber=') ? new Response(null) : undefined,
    );
    const error = await uploadFile(blobOf(bytesOf(6 * MiB)), options(mirror)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'etag_hidden' });
    expect((error as Error).message).toMatch(/ExposeHeaders: ETag/);
  });

  it('a part whose stored bytes differ from its hash: the whole-object check rejects the upload', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(12 * MiB);
    // Bytes changed on the way (this store, like s3rver, checks no part checksum).
    const original = mirror.fetch;
    const tampering: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && String(input).includes('partNumber=2') && init.body instanceof Blob) {
        const b = new Uint8Array(await init.body.arrayBuffer());
        b[100] = (b[100] ?? 0) ^ 0xff;
        return original(input, { ...init, body: new Blob([b]) });
      }
      return original(input, init);
    };
    const rec = recorder();
    const result = await uploadFile(
      blobOf(bytes),
      options(mirror, { fetch: tampering, onProgress: rec.onProgress }),
    );
    expect(result.status).toBe('rejected');
    expect(result.reason).toMatch(/sha256 mismatch/);
    expect(result.version).toBeUndefined();
    expect(rec.phases().at(-1)).toBe('rejected');
    expect(mirror.blobs.size).toBe(0);
  });

  it('waits for the verification, and gives up after verifyTimeoutMs without aborting the upload', async () => {
    const slow = new FakeMirror({ verifyingPolls: 3 });
    const rec = recorder();
    const ok = await uploadFile(blobOf(bytesOf(100)), options(slow, { onProgress: rec.onProgress }));
    expect(ok.status).toBe('committed');
    expect(slow.apiRequests('GET')).toHaveLength(4);
    expect(rec.phases()).toEqual(['hashing', 'uploading', 'verifying', 'committed']);

    const stuck = new FakeMirror({ verifyingPolls: 1_000_000 });
    const error = await uploadFile(blobOf(bytesOf(100)), options(stuck, { verifyTimeoutMs: 30 })).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'verify_timeout' });
    expect(stuck.apiRequests('DELETE')).toHaveLength(0);
  });

  it('a file that cannot be read in full (changed since it was picked) is an UploadError, and nothing is claimed', async () => {
    const mirror = new FakeMirror();
    const blob = blobOf(bytesOf(1000));
    Object.defineProperty(blob, 'size', { value: 2000 });
    const error = await uploadFile(blob, options(mirror)).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ApiError', code: 'file_unreadable' });
    expect((error as Error).message).toMatch(/cannot read the file: .*the file changed/);
    expect(mirror.requests).toHaveLength(0);
  });

  it('refuses a plan that does not fit the file, before sending anything', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    mirror.interceptors.push((r) =>
      r.method === 'POST' && r.url.endsWith('/v1/uploads')
        ? new Response(
            JSON.stringify({
              status: 'pending',
              uploadId: 'u1',
              path: 'media/file.bin',
              resumed: false,
              multipart: { partSize: 1024, partCount: 6000, uploadedParts: [] },
              challenge: {
                nonce: 'bm9uY2U=',
                ranges: [],
                expiresAt: new Date(Date.now() + 60_000).toISOString(),
              },
            }),
            { status: 201 },
          )
        : undefined,
    );
    const error = await uploadFile(blobOf(bytesOf(6 * MiB)), { ...options(mirror), proof: false }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'bad_plan' });
    expect(mirror.storageRequests()).toHaveLength(0);
  });

  it('sendableHeaders drops what the browser sets itself', () => {
    expect(
      sendableHeaders({
        'Content-Length': '5',
        host: 'x',
        'X-Amz-Checksum-Sha256': 'abc',
        'content-type': 'a/b',
      }),
    ).toEqual({ 'x-amz-checksum-sha256': 'abc', 'content-type': 'a/b' });
  });
});
