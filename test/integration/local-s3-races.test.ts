/**
 * The local S3 (local/s3/) under requests that overlap or lie, through its public interface: raw
 * signed HTTP and the AWS SDK v3. Found by the real-client probe (probe s3clients, K1, K3-K6, K8):
 * what S3 does, the emulator must do too, or the local stack loses or damages files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeS3Client } from '../../functions/adapters/s3.js';
import { LOCAL_CREDENTIALS, type S3Emulator, startS3 } from '../../local/emulators.ts';
import { createPlainAndVersionedBuckets, signS3Headers } from '../support/local-s3.ts';

const region = 'us-east-1';
const MiB = 1024 * 1024;
let dir: string;
let s3: S3Emulator;
let client: S3Client;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'local-s3-races-'));
  s3 = await startS3({ dir: join(dir, 's3'), port: 0, idleTimeoutMs: 2_000 });
  client = makeS3Client({
    region,
    forcePathStyle: true,
    endpoint: s3.endpoint,
    credentials: { ...LOCAL_CREDENTIALS },
  });
  await createPlainAndVersionedBuckets(client);
});
afterAll(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

const sha256hex = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

async function statusOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
    throw err;
  }
}

interface HeldRequest {
  /** Sends the body and ends the request: its status and body. */
  send(): Promise<{ status: number; body: string }>;
}

/**
 * A signed request whose headers go now and whose body goes when asked: a slow client, or one on a
 * loaded machine, whose request is in the server's hands while other requests run.
 */
async function holdBody(
  method: string,
  path: string,
  query: Record<string, string>,
  body: string,
  signedBody = body,
): Promise<HeldRequest> {
  const url = new URL(s3.endpoint);
  const headers = await signS3Headers(s3.endpoint, {
    method,
    path,
    query,
    region,
    headers: {
      'content-type': 'application/xml',
      'content-length': String(Buffer.byteLength(body)),
      'x-amz-content-sha256': sha256hex(signedBody),
    },
  });
  const search = new URLSearchParams(query).toString();
  const req = request({
    host: url.hostname,
    port: url.port,
    method,
    path: `${path}${search ? `?${search}` : ''}`,
    headers,
  });
  const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  // The server has the headers (and has started the operation) before anything else runs.
  await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    send: () => {
      req.end(body);
      return answered;
    },
  };
}

/** A multipart upload of `parts` parts of 5 MiB (the last one `lastBytes`), every part sent. */
async function uploadedParts(bucket: string, key: string, parts: number, lastBytes = 5 * MiB) {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const uploadId = UploadId as string;
  const bodies: Buffer[] = [];
  const etags: string[] = [];
  for (let n = 1; n <= parts; n++) {
    const body = randomBytes(n === parts ? lastBytes : 5 * MiB);
    bodies.push(body);
    const out = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: body }),
    );
    etags.push(out.ETag as string);
  }
  const xml = `<CompleteMultipartUpload>${etags
    .map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`)
    .join('')}</CompleteMultipartUpload>`;
  return { uploadId, bytes: Buffer.concat(bodies), xml };
}

async function bytesOf(bucket: string, key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(
    await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

describe('a multipart upload completed while it is aborted or completed again (K1)', () => {
  it('an abort during the Complete: the Complete is 404 NoSuchUpload and no object names deleted parts', async () => {
    const key = 'k1/aborted.bin';
    const { uploadId, xml } = await uploadedParts('plain', key, 1, 1000);
    const complete = await holdBody('POST', `/plain/${key}`, { uploadId }, xml);
    await client.send(new AbortMultipartUploadCommand({ Bucket: 'plain', Key: key, UploadId: uploadId }));
    const answer = await complete.send();
    expect(answer.status).toBe(404);
    expect(answer.body).toContain('<Code>NoSuchUpload</Code>');
    expect(await statusOf(client.send(new HeadObjectCommand({ Bucket: 'plain', Key: key })))).toBe(404);
  });

  for (const bucket of ['plain', 'versioned']) {
    it(`two Completes at once (${bucket}): one object, one version, its bytes whole`, async () => {
      const key = `k1/twice-${bucket}.bin`;
      const { uploadId, bytes, xml } = await uploadedParts(bucket, key, 2, 1000);
      const first = await holdBody('POST', `/${bucket}/${key}`, { uploadId }, xml);
      const second = await holdBody('POST', `/${bucket}/${key}`, { uploadId }, xml);
      const answers = await Promise.all([first.send(), second.send()]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 404]);
      expect((await bytesOf(bucket, key)).equals(bytes)).toBe(true);
      const versions = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
      expect(versions.Versions ?? []).toHaveLength(1);
    });
  }
});

describe('request bodies are what was signed (K4)', () => {
  it('a PutBucketVersioning whose body is not the signed one is 400 XAmzContentSHA256Mismatch and changes nothing', async () => {
    await client.send(new CreateBucketCommand({ Bucket: 'k4-versioning' }));
    const doc = (status: string) =>
      `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>${status}</Status></VersioningConfiguration>`;
    const put = await holdBody('PUT', '/k4-versioning', { versioning: '' }, doc('Enabled'), doc('Suspended'));
    const answer = await put.send();
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('<Code>XAmzContentSHA256Mismatch</Code>');
    const state = await client.send(new GetBucketVersioningCommand({ Bucket: 'k4-versioning' }));
    expect(state.Status).toBeUndefined();
  });

  it('a DeleteObjects whose body names another key than the signed one deletes nothing', async () => {
    for (const key of ['k4/harmless', 'k4/precious']) {
      await client.send(new PutObjectCommand({ Bucket: 'plain', Key: key, Body: key }));
    }
    const doc = (key: string) => `<Delete><Object><Key>${key}</Key></Object></Delete>`;
    const body = doc('k4/precious');
    const md5 = createHash('md5').update(body).digest('base64');
    const url = new URL(s3.endpoint);
    const headers = await signS3Headers(s3.endpoint, {
      method: 'POST',
      path: '/plain',
      query: { delete: '' },
      region,
      headers: {
        'content-md5': md5,
        'content-type': 'application/xml',
        'x-amz-content-sha256': sha256hex(doc('k4/harmless')),
      },
    });
    const { host: _host, ...sent } = headers;
    const res = await fetch(`${url.origin}/plain?delete=`, { method: 'POST', headers: sent, body });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('XAmzContentSHA256Mismatch');
    expect(await statusOf(client.send(new HeadObjectCommand({ Bucket: 'plain', Key: 'k4/precious' })))).toBe(
      200,
    );
  });
});

describe('keys are taken literally in XML bodies too (K3)', () => {
  it('DeleteObjects of "keep " deletes "keep ", not "keep"; a key ending in a newline likewise', async () => {
    for (const key of ['k3/keep', 'k3/keep ', ' k3/lead', 'k3/line\n']) {
      await client.send(new PutObjectCommand({ Bucket: 'plain', Key: key, Body: JSON.stringify(key) }));
    }
    const out = await client.send(
      new DeleteObjectsCommand({
        Bucket: 'plain',
        Delete: { Objects: [{ Key: 'k3/keep ' }, { Key: ' k3/lead' }, { Key: 'k3/line\n' }] },
      }),
    );
    expect((out.Deleted ?? []).map((d) => d.Key).sort()).toEqual([' k3/lead', 'k3/keep ', 'k3/line\n']);
    expect(await statusOf(client.send(new HeadObjectCommand({ Bucket: 'plain', Key: 'k3/keep' })))).toBe(200);
    for (const key of ['k3/keep ', ' k3/lead', 'k3/line\n']) {
      expect(await statusOf(client.send(new HeadObjectCommand({ Bucket: 'plain', Key: key }))), key).toBe(
        404,
      );
    }
  });
});

describe('a download in flight keeps the version it started on (K5)', () => {
  it('a multipart object overwritten while it is read is read whole, and its files go once the read ends', async () => {
    const key = 'k5/big.bin';
    const { uploadId, bytes, xml } = await uploadedParts('plain', key, 6);
    const done = await holdBody('POST', `/plain/${key}`, { uploadId }, xml);
    expect((await done.send()).status).toBe(200);
    const blobs = async () => (await readdir(join(dir, 's3', 'blobs'))).length;
    const before = await blobs();

    const url = new URL(s3.endpoint);
    const headers = await signS3Headers(s3.endpoint, {
      method: 'GET',
      path: `/plain/${key}`,
      region,
      headers: { 'x-amz-content-sha256': sha256hex('') },
    });
    const read = new Promise<Buffer>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, path: `/plain/${key}`, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.once('data', (first: Buffer) => {
          chunks.push(first);
          // A slow reader: the overwrite lands while most of the object is still to be read.
          res.pause();
          client.send(new PutObjectCommand({ Bucket: 'plain', Key: key, Body: 'small' })).then(() => {
            res.on('data', (c: Buffer) => chunks.push(c));
            res.resume();
          }, reject);
        });
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const got = await read;
    expect(got.length).toBe(bytes.length);
    expect(got.equals(bytes)).toBe(true);
    expect((await bytesOf('plain', key)).toString()).toBe('small');
    // The six part files went once the read let go of them; the small object has one.
    await expect.poll(blobs, { timeout: 5_000 }).toBe(before - 6 + 1);
  });
});

describe('conditional writes are atomic (K6)', () => {
  it('of six create-only PUTs (If-None-Match: *) of a new key at once, exactly one succeeds, ten times', async () => {
    for (let round = 0; round < 10; round++) {
      const key = `k6/lock-${round}`;
      const statuses = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          statusOf(
            client.send(
              new PutObjectCommand({ Bucket: 'plain', Key: key, Body: `writer ${i}`, IfNoneMatch: '*' }),
            ),
          ),
        ),
      );
      expect(
        statuses.filter((s) => s === 200),
        `round ${round}: ${statuses.join(',')}`,
      ).toHaveLength(1);
      expect(statuses.filter((s) => s !== 200).every((s) => s === 412 || s === 409)).toBe(true);
    }
  });
});

describe('signature version 2 (K8)', () => {
  it("a SigV2 presigned URL (AWS CLI v1's default) is refused naming the signing method to use", async () => {
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'k8/file', Body: 'x' }));
    const query = new URLSearchParams({
      AWSAccessKeyId: LOCAL_CREDENTIALS.accessKeyId,
      Expires: String(Math.floor(Date.now() / 1000) + 600),
      Signature: 'c2lnbmF0dXJl',
    });
    const res = await fetch(`${s3.endpoint}/plain/k8/file?${query}`);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await res.text()).toMatch(/AWS4-HMAC-SHA256/);
  });
});
