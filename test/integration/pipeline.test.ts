import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPartSender } from '../../cli/multipart.js';
import { createPutFile } from '../../cli/put-file.js';
import { systemClock, uploadFile } from '../../cli/upload.js';
import type { Sandbox } from '../../local/sandbox.js';
import { MirrorApi } from '../../web/client/api.js';
import { localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor as until } from '../support/wait.js';

let stack: TestStack;
let sandbox: Sandbox;
let s3: S3Client;
let s3For: TestStack['s3For'];
const sha = sha256Hex;
const enc = encodeURIComponent;

beforeAll(async () => {
  stack = await startTestStack('pipeline');
  ({ sandbox, s3, s3For } = stack);
});
afterAll(() => stack?.stop());

async function replicaObject(bucket: string, key: string) {
  try {
    const out = await s3For(bucket).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return {
      bytes: Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      ),
      metadata: out.Metadata ?? {},
      contentType: out.ContentType,
    };
  } catch {
    return undefined;
  }
}

const s3Targets = () =>
  Object.entries(sandbox.endpoints.targets).filter(([, t]) => t.kind === 's3') as [
    string,
    { bucket: string },
  ][];

async function upload(path: string, bytes: Buffer, contentType = 'image/png') {
  const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, contentType);
  if (created.status === 201) expect(putStatus).toBe(200);
  return created;
}

const api = (method: string, path: string, body?: unknown) =>
  localApi(sandbox.endpoints).call(method, path, body);

describe('pipeline through the local stack', () => {
  it('an upload reaches both replica buckets under its path with identical bytes and metadata', async () => {
    const bytes = Buffer.from(`a photo ${Date.now()}`.repeat(5000));
    const path = 'media/2026/Été photo+1 & 2.png';
    const started = Date.now();
    const created = await upload(path, bytes);
    expect(created.status).toBe(201);
    const committed = await until('commit', async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed' ? u.body : undefined;
    });
    expect(committed.version).toBe(1);
    expect(s3Targets()).toHaveLength(2);
    for (const [, target] of s3Targets()) {
      const object = await until(`replica ${target.bucket}`, () => replicaObject(target.bucket, path));
      expect(object.bytes.equals(bytes)).toBe(true);
      expect(object.metadata).toMatchObject({ 'mirror-sha256': sha(bytes), 'mirror-version': '1' });
      expect(object.contentType).toBe('image/png');
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(`upload → visible in every replica: ${seconds.toFixed(2)} s`);
    // The goal is 5 s; measured 2.7-4.7 s with cold functions on a quiet machine, 8.9-14 s while the
    // whole suite and other work shared its 2 cores. Speed goals belong to the bench: this bound
    // only catches a stall (a retry cycle or a lost message would take far longer), and the figure
    // is printed.
    expect(seconds).toBeLessThan(20);

    const file = await until('target states', async () => {
      const f = await api('GET', `/v1/files/${enc(path)}`);
      return f.body.targets.filter((t: { status: string }) => t.status !== 'pending').length === 2
        ? f.body
        : undefined;
    });
    expect(file.head).toMatchObject({
      version: 1,
      sha256: sha(bytes),
      size: bytes.length,
      contentType: 'image/png',
      deleted: false,
    });
    const redirect = await api('GET', `/v1/files/${enc(path)}/content?target=${s3Targets()[0]?.[0]}`);
    expect(redirect.status).toBe(302);
    const viaRedirect = await fetch(redirect.headers.get('location') as string);
    expect(Buffer.from(await viaRedirect.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('a second upload of the same bytes to another path commits without a PUT', async () => {
    const bytes = Buffer.from(`shared bytes ${Date.now()}`);
    await upload('dedup/one.png', bytes);
    await until('first commit', async () =>
      (await api('GET', `/v1/files/${enc('dedup/one.png')}`)).status === 200 ? true : undefined,
    );
    const claimed = await api('POST', '/v1/uploads', {
      path: 'dedup/two.png',
      size: bytes.length,
      sha256: sha(bytes),
      contentType: 'image/png',
    });
    expect(claimed.status).toBe(201);
    // The proof of possession: SHA-256 over the nonce, then the challenged ranges (docs/api.md).
    const { nonce, ranges } = claimed.body.challenge as {
      nonce: string;
      ranges: { offset: number; length: number }[];
    };
    const digest = createHash('sha256').update(Buffer.from(nonce, 'base64'));
    for (const r of ranges) digest.update(bytes.subarray(r.offset, r.offset + r.length));
    const second = await api('POST', `/v1/uploads/${claimed.body.uploadId}/proof`, {
      digest: digest.digest('hex'),
    });
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({
      status: 'committed',
      path: 'dedup/two.png',
      version: 1,
      deduplicated: true,
    });
    for (const [, target] of s3Targets()) {
      const object = await until('dedup replica', () => replicaObject(target.bucket, 'dedup/two.png'));
      expect(object.bytes.equals(bytes)).toBe(true);
    }
  });

  it('two clients uploading the same bytes to one path at once: one version, both uploads committed at it', async () => {
    const bytes = Buffer.from(`twin bytes ${Date.now()}`.repeat(100));
    const path = 'twins/same.png';
    // Both claims come before either commit (each is answered pending), then both PUTs land.
    const claim = () =>
      api('POST', '/v1/uploads', { path, size: bytes.length, sha256: sha(bytes), contentType: 'image/png' });
    const [a, b] = [await claim(), await claim()];
    expect([a.status, b.status]).toEqual([201, 201]);
    const puts = [a, b].map(({ body }) =>
      fetch(body.upload.url, { method: 'PUT', headers: body.upload.headers, body: new Uint8Array(bytes) }),
    );
    expect((await Promise.all(puts)).map((r) => r.status)).toEqual([200, 200]);
    const ids = [a.body.uploadId, b.body.uploadId] as string[];
    const ended = await until('both uploads ended', async () => {
      const answers = await Promise.all(ids.map((id) => api('GET', `/v1/uploads/${id}`)));
      return answers.every((r) => r.body.status !== 'pending') ? answers.map((r) => r.body) : undefined;
    });
    expect(ended.map((u) => [u.status, u.version])).toEqual([
      ['committed', 1],
      ['committed', 1],
    ]);
    const versions = await api('GET', `/v1/files/${enc(path)}/versions`);
    expect(versions.body.versions.map((v: { version: number }) => v.version)).toEqual([1]);
  });

  it('bytes that do not match the declared SHA-256 are rejected and never reach a target', async () => {
    const declared = Buffer.from(`the truth ${Date.now()}`);
    const created = await api('POST', '/v1/uploads', {
      path: 'lies/x.png',
      size: declared.length,
      sha256: sha(declared),
      contentType: 'image/png',
    });
    const { url, headers } = created.body.upload;
    const { 'content-length': _l, ...rest } = headers as Record<string, string>;
    const forged = Buffer.from(declared.toString().toUpperCase());
    // The presigned PUT signs the SHA-256: storage refuses other bytes (BadDigest), as S3 does.
    const refused = await fetch(url, { method: 'PUT', headers: rest, body: new Uint8Array(forged) });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('<Code>BadDigest</Code>');
    // A writer with bucket access puts the lie anyway: the ingest must catch it.
    await s3.send(
      new PutObjectCommand({
        Bucket: sandbox.endpoints.originBucket,
        Key: `blobs/${sha(declared)}`,
        Body: forged,
      }),
    );
    const rejected = await until('rejection', async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'rejected' ? u.body : undefined;
    });
    expect(rejected.reason).toMatch(/sha256 mismatch/);
    expect((await api('GET', `/v1/files/${enc('lies/x.png')}`)).status).toBe(404);
    await expect(
      s3.send(
        new HeadObjectCommand({ Bucket: sandbox.endpoints.originBucket, Key: `blobs/${sha(declared)}` }),
      ),
    ).rejects.toThrow();
    for (const [, target] of s3Targets())
      expect(await replicaObject(target.bucket, 'lies/x.png')).toBeUndefined();
  });

  it('a delete removes the path at every target and is a version of its own', async () => {
    const bytes = Buffer.from(`to be deleted ${Date.now()}`);
    await upload('gone/soon.png', bytes);
    for (const [, target] of s3Targets())
      await until('replica before delete', () => replicaObject(target.bucket, 'gone/soon.png'));
    const deleted = await api('DELETE', `/v1/files/${enc('gone/soon.png')}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ version: 2, deleted: true });
    for (const [, target] of s3Targets()) {
      await until('removal', async () =>
        (await replicaObject(target.bucket, 'gone/soon.png')) ? undefined : true,
      );
    }
    const versions = await api('GET', `/v1/files/${enc('gone/soon.png')}/versions`);
    expect(
      versions.body.versions.map((v: { version: number; deleted: boolean }) => [v.version, v.deleted]),
    ).toEqual([
      [2, true],
      [1, false],
    ]);
    const changes = await api('GET', '/v1/changes?limit=1000');
    expect(
      changes.body.changes
        .filter((c: { path: string }) => c.path === 'gone/soon.png')
        .map((c: { version: number }) => c.version),
    ).toEqual([1, 2]);
  });

  it('two CLI uploads of one large file to one path at once: the one whose parts find the upload completed by the other reports the commit, not storage 404', async () => {
    const bytes = Buffer.alloc(20 * 1024 * 1024 + 321);
    for (let i = 0; i < bytes.length; i += 4096) bytes.writeInt32BE(i ^ 0x2f6a1c3d, i);
    const file = join(stack.dir, 'joined.bin');
    await writeFile(file, bytes);
    const path = 'cli/joined.bin';
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const cliUpload = (fetchParts?: typeof fetch) =>
      uploadFile(
        {
          client,
          putFile: createPutFile(),
          sendParts: createPartSender(client, fetchParts),
          clock: systemClock,
          progress: { phase: () => undefined, bytes: () => undefined, stop: () => undefined } as never,
        },
        { file, path, contentType: 'application/octet-stream' },
      );
    // The second run (`sync` of the same folder elsewhere, say) joins the first's upload and sends
    // all of it while the first is about to send its first part: that part finds the upload done.
    let other: ReturnType<typeof cliUpload> | undefined;
    const slowFirst: typeof fetch = async (input, init) => {
      other ??= cliUpload();
      await other;
      return fetch(input, init);
    };
    const first = await cliUpload(slowFirst);
    const second = await other;
    expect(second).toMatchObject({ status: 'committed', version: 1, sha256: sha(bytes) });
    expect(first).toMatchObject({
      status: 'committed',
      version: 1,
      sha256: sha(bytes),
      uploadId: second?.uploadId,
    });
    const versions = await api('GET', `/v1/files/${enc(path)}/versions`);
    expect(versions.body.versions.map((v: { version: number }) => v.version)).toEqual([1]);

    // Aborted by another client instead: the upload's own outcome (exit 1, 'rejected: aborted').
    await writeFile(file, bytes.subarray(7));
    const abortFirst: typeof fetch = async (input, init) => {
      const joinedClaim = await api('POST', '/v1/uploads', {
        path,
        size: bytes.length - 7,
        sha256: sha(bytes.subarray(7)),
        contentType: 'application/octet-stream',
      });
      await api('DELETE', `/v1/uploads/${joinedClaim.body.uploadId}`);
      return fetch(input, init);
    };
    await expect(cliUpload(abortFirst)).rejects.toMatchObject({
      name: 'UploadRejectedError',
      reason: 'aborted',
      exitCode: 1,
    });
  });

  it('the CLI uploads a file above the multipart threshold in parts, and it reaches every replica', async () => {
    const bytes = Buffer.alloc(20 * 1024 * 1024 + 123);
    for (let i = 0; i < bytes.length; i += 4096) bytes.writeInt32BE(i ^ 0x1e3779b9, i);
    const file = join(stack.dir, 'big.bin');
    await writeFile(file, bytes);
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const result = await uploadFile(
      {
        client,
        putFile: createPutFile(),
        sendParts: createPartSender(client),
        clock: systemClock,
        progress: { phase: () => undefined, bytes: () => undefined, stop: () => undefined } as never,
      },
      { file, path: 'cli/big.bin', contentType: 'application/octet-stream' },
    );
    expect(result).toMatchObject({ status: 'committed', version: 1, deduplicated: false });
    for (const [, target] of s3Targets()) {
      const object = await until(
        'multipart replica',
        () => replicaObject(target.bucket, 'cli/big.bin'),
        30_000,
      );
      expect(object.bytes.equals(bytes)).toBe(true);
    }
  });
});
