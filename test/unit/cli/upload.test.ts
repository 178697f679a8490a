import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadRejectedError, UploadTimeoutError } from '../../../cli/errors.ts';
import type { Phase, ProgressSink } from '../../../cli/progress.ts';
import type { PutFileRequest } from '../../../cli/put-file.ts';
import { type Clock, type UploadDeps, uploadFile } from '../../../cli/upload.ts';
import {
  type CreateUploadResponse,
  createUploadResponseSchema,
  type Upload,
  type UploadDeduplicated,
  type UploadRequest,
  uploadDeduplicatedSchema,
  uploadSchema,
} from '../../../contracts/api.ts';
import { ApiError, transientError } from '../../../web/client/errors.ts';

let dir: string;
let file: string;
let data: Buffer;
let sha256: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-upload-'));
  data = randomBytes(300_000);
  sha256 = createHash('sha256').update(data).digest('hex');
  file = join(dir, 'cat.JPG');
  await writeFile(file, data);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Virtual time: sleep advances the clock at once. */
function fakeClock(): Clock & { sleeps: number[] } {
  let t = 1_000;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: async (ms) => {
      sleeps.push(ms);
      t += ms;
    },
  };
}

/**
 * A scripted API client. Every answer it gives is parsed with the API's contract first, so a
 * script the real API could not answer fails the test.
 */
function fakeClient(create: CreateUploadResponse | Error, polls: (Upload | Error)[] = []) {
  const calls = {
    create: [] as (UploadRequest & { idempotencyKey?: string | undefined })[],
    get: [] as string[],
  };
  let i = 0;
  return {
    calls,
    async createUpload(req: UploadRequest, options: { idempotencyKey?: string | undefined } = {}) {
      calls.create.push({ ...req, idempotencyKey: options.idempotencyKey });
      if (create instanceof Error) throw create;
      return createUploadResponseSchema.parse(create);
    },
    async getUpload(id: string) {
      calls.get.push(id);
      const next = polls[Math.min(i++, polls.length - 1)];
      if (next === undefined) throw new Error('no poll answer scripted');
      if (next instanceof Error) throw next;
      return uploadSchema.parse(next);
    },
  };
}

const proven = (answer: UploadDeduplicated) => uploadDeduplicatedSchema.parse(answer);
const apiError = (status: number, code: string, message: string, field?: string) =>
  new ApiError(message, code, status, field);

function recordingProgress(): ProgressSink & { phases: Phase[]; stopped: number } {
  const sink = {
    phases: [] as Phase[],
    stopped: 0,
    phase(p: Phase) {
      sink.phases.push(p);
    },
    bytes() {},
    stop() {
      sink.stopped++;
    },
  };
  return sink;
}

function fakePut() {
  const puts: PutFileRequest[] = [];
  return {
    puts,
    async put(req: PutFileRequest) {
      puts.push(req);
      req.onBytes?.(req.size);
    },
  };
}

const record = (over: Partial<Upload>): Upload => ({
  uploadId: 'u-1',
  status: 'pending',
  path: 'images/cat.jpg',
  sha256,
  size: 300_000,
  contentType: 'image/jpeg',
  createdAt: '2025-01-01T00:00:00Z',
  updatedAt: '2025-01-01T00:00:00Z',
  ...over,
});

const challenge = {
  nonce: Buffer.alloc(32).toString('base64'),
  ranges: [{ offset: 0, length: 10 }],
  expiresAt: '2025-01-01T00:15:00Z',
};

const pending = {
  status: 'pending' as const,
  uploadId: 'u-1',
  path: 'images/cat.jpg',
  upload: {
    method: 'PUT' as const,
    url: 'https://origin.s3.amazonaws.com/blobs/abc?X-Amz-Signature=s',
    headers: {
      'content-type': 'image/jpeg',
      'x-amz-checksum-sha256': `${'A'.repeat(43)}=`,
      'x-amz-sdk-checksum-algorithm': 'SHA256',
    },
    automaticHeaders: { 'content-length': '300000', host: 'origin.s3.amazonaws.com' },
    expiresAt: '2025-01-01T00:15:00Z',
  },
  challenge,
};

/** The path already holds these bytes: committed at once. */
const unchanged = (version: number, path = 'images/cat.jpg') => ({
  status: 'committed' as const,
  uploadId: 'u-0',
  path,
  version,
  unchanged: true as const,
});

function deps(client: ReturnType<typeof fakeClient>, put = fakePut(), clock = fakeClock()) {
  const progress = recordingProgress();
  const d: UploadDeps = { client, putFile: put.put, clock, progress };
  return { d, put, clock, progress };
}

describe('uploadFile', () => {
  it('declares size, lower-case SHA-256 and the guessed content type, once, with an Idempotency-Key', async () => {
    const client = fakeClient(unchanged(7));
    await uploadFile(deps(client).d, { file, path: 'images/cat.jpg', ifVersion: 6 });
    expect(client.calls.create).toEqual([
      {
        path: 'images/cat.jpg',
        size: data.length,
        sha256,
        contentType: 'image/jpeg',
        ifVersion: 6,
        idempotencyKey: expect.stringMatching(/^[0-9a-f-]{36}$/),
      },
    ]);
  });

  it("a path the claim would refuse fails with the claim's error before the file is read: no hash, no claim", async () => {
    const client = fakeClient(unchanged(7));
    const { d, progress } = deps(client);
    const hashed: string[] = [];
    const refusal = apiError(
      400,
      'invalid_path',
      'path must be at most 1009 bytes in UTF-8 (target "eu")',
      'path',
    );
    const asked: string[] = [];
    const error = await uploadFile(
      {
        ...d,
        hashFile: async (f) => {
          hashed.push(f);
          throw new Error('the file must not be read');
        },
        checkPath: async (path) => {
          asked.push(path);
          throw refusal;
        },
        pathCheckFromBytes: 0,
      },
      { file, path: 'images/cat.jpg' },
    ).catch((e: unknown) => e);
    expect(error).toBe(refusal);
    expect(asked).toEqual(['images/cat.jpg']);
    expect(hashed).toEqual([]);
    expect(progress.phases).toEqual([]);
    expect(client.calls.create).toEqual([]);
  });

  it('a path the check lets through is hashed and claimed as before, asked once', async () => {
    const client = fakeClient(unchanged(7));
    const asked: string[] = [];
    const { d } = deps(client);
    await uploadFile(
      { ...d, checkPath: async (path) => void asked.push(path), pathCheckFromBytes: 0 },
      { file, path: 'images/cat.jpg' },
    );
    expect(asked).toEqual(['images/cat.jpg']);
    expect(client.calls.create).toHaveLength(1);
  });

  it('a refusal of the claim is not retried', async () => {
    const refused = fakeClient(apiError(409, 'version_conflict', 'no'));
    await expect(uploadFile(deps(refused).d, { file, path: 'a.jpg' })).rejects.toBeInstanceOf(ApiError);
    expect(refused.calls.create).toHaveLength(1);
  });

  it('the path holds the content already: sends no PUT and does not poll', async () => {
    const client = fakeClient(unchanged(7));
    const { d, put, progress } = deps(client);
    const result = await uploadFile(d, { file, path: 'images/cat.jpg', contentType: 'image/x-custom' });
    expect(put.puts).toEqual([]);
    expect(client.calls.get).toEqual([]);
    expect(client.calls.create[0]?.contentType).toBe('image/x-custom');
    expect(result).toMatchObject({
      path: 'images/cat.jpg',
      version: 7,
      uploadId: 'u-0',
      deduplicated: true,
      status: 'committed',
      sha256,
      size: data.length,
    });
    expect(progress.phases).toEqual(['hashing', 'done']);
  });

  it("answers the claim's challenge from the file: a right proof commits, with no PUT and no poll", async () => {
    const nonce = Buffer.alloc(32, 7).toString('base64');
    const ranges = [
      { offset: 1000, length: 5 },
      { offset: 0, length: 3 },
    ];
    const client = {
      ...fakeClient({ ...pending, challenge: { nonce, ranges, expiresAt: '2025-01-01T00:15:00Z' } }),
      proofs: [] as { id: string; digest: string }[],
      async proveUpload(id: string, digest: string) {
        this.proofs.push({ id, digest });
        return proven({
          status: 'committed',
          uploadId: id,
          path: 'images/cat.jpg',
          version: 4,
          deduplicated: true,
        });
      },
    };
    const { d, put, progress } = deps(client);
    const result = await uploadFile(d, { file, path: 'images/cat.jpg' });
    const expected = createHash('sha256')
      .update(Buffer.alloc(32, 7))
      .update(data.subarray(1000, 1005))
      .update(data.subarray(0, 3))
      .digest('hex');
    expect(client.proofs).toEqual([{ id: 'u-1', digest: expected }]);
    expect(put.puts).toEqual([]);
    expect(client.calls.get).toEqual([]);
    expect(result).toMatchObject({ status: 'committed', version: 4, deduplicated: true });
    expect(progress.phases).toEqual(['hashing', 'done']);
  });

  it('proofs in flight at once share no signal', async () => {
    // `sync` proves 16 files at a time; one shared signal would hold a listener per request in
    // flight (web/client/request-signal.ts), and Node warns past 10 on one signal.
    const challenge = {
      nonce: Buffer.alloc(32, 7).toString('base64'),
      ranges: [],
      expiresAt: '2025-01-01T00:15:00Z',
    };
    const signals: (AbortSignal | undefined)[] = [];
    let release = () => {};
    const allInFlight = new Promise<void>((resolve) => {
      release = resolve;
    });
    const client = {
      ...fakeClient({ ...pending, challenge }),
      async proveUpload(id: string, _digest: string, options: { signal?: AbortSignal | undefined } = {}) {
        signals.push(options.signal);
        if (signals.length === 16) release();
        await allInFlight;
        return proven({
          status: 'committed',
          uploadId: id,
          path: 'images/cat.jpg',
          version: 1,
          deduplicated: true,
        });
      },
    };
    const { d } = deps(client);
    await Promise.all(Array.from({ length: 16 }, () => uploadFile(d, { file, path: 'images/cat.jpg' })));
    expect(signals).toHaveLength(16);
    const shared = signals.filter((s) => s !== undefined && signals.indexOf(s) !== signals.lastIndexOf(s));
    expect(shared).toEqual([]);
  });

  it('a refused proof (proof_not_accepted): the bytes are PUT as before', async () => {
    const client = {
      ...fakeClient(pending, [record({ status: 'committed', version: 1 })]),
      async proveUpload(): Promise<never> {
        throw apiError(422, 'proof_not_accepted', 'upload the bytes', 'digest');
      },
    };
    const { d, put } = deps(client);
    const result = await uploadFile(d, { file, path: 'images/cat.jpg' });
    expect(put.puts).toHaveLength(1);
    expect(result).toMatchObject({ status: 'committed', version: 1, deduplicated: false });
  });

  it('pending: PUTs with exactly the returned headers, then polls until committed', async () => {
    const client = fakeClient(pending, [
      record({ status: 'pending' }),
      record({ status: 'pending' }),
      record({ status: 'committed', version: 3 }),
    ]);
    const { d, put, clock, progress } = deps(client);
    const result = await uploadFile(d, { file, path: 'images/cat.jpg' });

    expect(put.puts).toHaveLength(1);
    const sent = put.puts[0];
    expect(sent?.url).toBe(pending.upload.url);
    expect(sent?.headers).toEqual(pending.upload.headers);
    expect(sent?.file).toBe(file);
    expect(sent?.size).toBe(data.length);

    expect(client.calls.get).toEqual(['u-1', 'u-1', 'u-1']);
    expect(clock.sleeps).toEqual([250, 250]);
    expect(result).toMatchObject({ version: 3, status: 'committed', deduplicated: false, uploadId: 'u-1' });
    expect(result.seconds).toBe(0.5);
    expect(progress.phases).toEqual(['hashing', 'uploading', 'verifying', 'done']);
  });

  it('--no-wait: returns after the PUT without polling', async () => {
    const client = fakeClient(pending);
    const { d, put } = deps(client);
    const result = await uploadFile(d, { file, path: 'images/cat.jpg', wait: false });
    expect(put.puts).toHaveLength(1);
    expect(client.calls.get).toEqual([]);
    expect(result).toMatchObject({ status: 'pending', version: null, deduplicated: false });
  });

  it('rejected: throws with the reason', async () => {
    const client = fakeClient(pending, [
      record({ status: 'pending' }),
      record({ status: 'rejected', reason: 'sha256 mismatch: stored bytes hash to 9f2c…' }),
    ]);
    const err = await uploadFile(deps(client).d, { file, path: 'images/cat.jpg' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadRejectedError);
    expect((err as UploadRejectedError).reason).toBe('sha256 mismatch: stored bytes hash to 9f2c…');
    expect((err as Error).message).toBe(
      'upload u-1 of images/cat.jpg was rejected: sha256 mismatch: stored bytes hash to 9f2c…',
    );
    expect((err as UploadRejectedError).exitCode).toBe(1);
  });

  it('rejected for a version conflict (an --if-version that lost its race at the commit): exit 4, as a refused claim (probe V3)', async () => {
    const client = fakeClient(pending, [
      record({
        status: 'rejected',
        reason: 'version_conflict: "images/cat.jpg" is at version 2, the request expected 1',
      }),
    ]);
    const err = await uploadFile(deps(client).d, { file, path: 'images/cat.jpg', ifVersion: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UploadRejectedError);
    expect((err as UploadRejectedError).exitCode).toBe(4);
  });

  it('timeout: a clear error once --timeout has passed while still pending', async () => {
    const client = fakeClient(pending, [record({ status: 'pending' })]);
    const { d, clock } = deps(client);
    const err = await uploadFile(d, { file, path: 'images/cat.jpg', timeoutSeconds: 2 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UploadTimeoutError);
    expect((err as Error).message).toBe(
      'upload u-1 of images/cat.jpg not committed after 2 s (still pending); ' +
        'check later with: media-mirror status images/cat.jpg',
    );
    expect(clock.sleeps.reduce((a, b) => a + b, 0)).toBe(2000);
    expect(client.calls.get.length).toBe(9); // at 0, 250, …, 2000 ms
  });

  it('retries transient poll failures, but not client errors', async () => {
    const flaky = fakeClient(pending, [
      transientError('cannot reach the API', 0),
      transientError('GET /v1/uploads/{id} answered 503: try later', 503),
      record({ status: 'committed', version: 1 }),
    ]);
    expect((await uploadFile(deps(flaky).d, { file, path: 'images/cat.jpg' })).version).toBe(1);

    const forbidden = fakeClient(pending, [apiError(403, 'forbidden', 'no')]);
    await expect(uploadFile(deps(forbidden).d, { file, path: 'images/cat.jpg' })).rejects.toMatchObject({
      status: 403,
      code: 'forbidden',
    });
    expect(forbidden.calls.get).toHaveLength(1);
  });

  it('passes API errors from create through, without a PUT', async () => {
    const client = fakeClient(apiError(409, 'version_conflict', 'head is 4, not 3', 'ifVersion'));
    const { d, put } = deps(client);
    const err = await uploadFile(d, { file, path: 'images/cat.jpg', ifVersion: 3 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 409, code: 'version_conflict', field: 'ifVersion' });
    expect(put.puts).toEqual([]);
  });

  it('a failing PUT stops the flow before polling', async () => {
    const client = fakeClient(pending, [record({ status: 'committed', version: 1 })]);
    const failingPut = {
      puts: [] as PutFileRequest[],
      put: async () => {
        throw new Error('upload PUT failed: 403 SignatureDoesNotMatch');
      },
    };
    await expect(uploadFile(deps(client, failingPut).d, { file, path: 'images/cat.jpg' })).rejects.toThrow(
      /403 SignatureDoesNotMatch/,
    );
    expect(client.calls.get).toEqual([]);
  });
});
