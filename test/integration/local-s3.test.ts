/**
 * The local S3 emulator (local/s3/) through its public interface: the AWS SDK v3, raw
 * HTTP (fetch, sockets) and rclone. It must refuse what S3 refuses and keep versions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeS3Client } from '../../functions/adapters/s3.js';
import { LOCAL_CREDENTIALS, type S3Emulator, type S3ObjectCreated, startS3 } from '../../local/emulators.ts';

const region = 'us-east-1';
let dir: string;
let s3: S3Emulator;
let client: S3Client;
/** The SDK's defaults: checksums WHEN_SUPPORTED, so streams go aws-chunked with a CRC32 trailer. */
let defaultClient: S3Client;
const events: S3ObjectCreated[] = [];

const sha256b64 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64');
const md5hex = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const text = async (out: { Body?: unknown }) =>
  (out.Body as { transformToString(): Promise<string> }).transformToString();

async function start(): Promise<void> {
  s3 = await startS3({ dir: join(dir, 's3'), port: 0, idleTimeoutMs: 500 });
  s3.onObjectCreated((e) => events.push(e));
  const credentials = { ...LOCAL_CREDENTIALS };
  client = makeS3Client({ region, forcePathStyle: true, endpoint: s3.endpoint, credentials });
  defaultClient = new S3Client({ region, forcePathStyle: true, endpoint: s3.endpoint, credentials });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'local-s3-'));
  await start();
  await client.send(new CreateBucketCommand({ Bucket: 'plain' }));
  await client.send(new CreateBucketCommand({ Bucket: 'versioned' }));
  await client.send(
    new PutBucketVersioningCommand({ Bucket: 'versioned', VersioningConfiguration: { Status: 'Enabled' } }),
  );
});
afterAll(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function errorOf(p: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof S3ServiceException) return { name: err.name, status: err.$metadata.httpStatusCode };
    throw err;
  }
  throw new Error('expected the request to fail');
}

/** S3's XML error code of a raw response. */
async function codeOf(res: Response): Promise<string | undefined> {
  return /<Code>([^<]+)<\/Code>/.exec(await res.text())?.[1];
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return false;
    throw err;
  }
}

describe('objects', () => {
  it('PUT, GET, HEAD and ranged GET return the bytes, ETag, type and metadata stored', async () => {
    const body = Buffer.from('hello, local S3');
    const put = await client.send(
      new PutObjectCommand({
        Bucket: 'plain',
        Key: 'dir/hello.txt',
        Body: body,
        ContentType: 'text/plain',
        Metadata: { owner: 'me' },
        ChecksumSHA256: sha256b64(body),
      }),
    );
    expect(put.ETag).toBe(`"${md5hex(body)}"`);
    expect(put.VersionId).toBeUndefined();
    const got = await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt' }));
    expect(await text(got)).toBe('hello, local S3');
    expect(got.ContentType).toBe('text/plain');
    expect(got.Metadata).toEqual({ owner: 'me' });
    const head = await client.send(
      new HeadObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt', ChecksumMode: 'ENABLED' }),
    );
    expect(head.ContentLength).toBe(body.length);
    expect(head.ChecksumSHA256).toBe(sha256b64(body));
    expect(head.ChecksumType).toBe('FULL_OBJECT');
    const range = await client.send(
      new GetObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt', Range: 'bytes=7-11' }),
    );
    expect(range.ContentRange).toBe(`bytes 7-11/${body.length}`);
    expect(await text(range)).toBe('local');
    expect(
      await errorOf(
        client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt', IfNoneMatch: put.ETag })),
      ),
    ).toMatchObject({ status: 304 });
    expect(
      await errorOf(
        client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt', IfMatch: '"x"' })),
      ),
    ).toMatchObject({ name: 'PreconditionFailed', status: 412 });
  });

  it('takes aws-chunked streaming uploads as the SDK sends them (unsigned payload with a CRC32 trailer)', async () => {
    const body = randomBytes(300_000);
    const { Readable } = await import('node:stream');
    await defaultClient.send(
      new PutObjectCommand({
        Bucket: 'plain',
        Key: 'chunked.bin',
        Body: Readable.from([body.subarray(0, 100_000), body.subarray(100_000)]),
        ContentLength: body.length,
      }),
    );
    const got = await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'chunked.bin' }));
    const bytes = Buffer.from(
      await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    expect(bytes.equals(body)).toBe(true);
    expect(got.ETag).toBe(`"${md5hex(body)}"`);
  });

  it('takes keys literally: a/../b is its own key and b stays absent', async () => {
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'a/../b', Body: 'dots' }));
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: '../../../escape', Body: 'x' }));
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'blobs/../blobs/x', Body: 'y' }));
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'a/../b' })))).toBe(
      'dots',
    );
    expect(await exists('plain', 'b')).toBe(false);
    expect(await exists('plain', 'blobs/x')).toBe(false);
    expect(await exists('plain', 'blobs/../blobs/x')).toBe(true);
    // Raw: the path is sent as is (fetch would resolve the dots itself).
    const raw = await rawRequest(`GET /plain/a/../b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(raw).toMatch(/^HTTP\/1.1 403/);
    // Every file the emulator wrote is inside its folder, and no name derives from a key.
    const files = await listFiles(dir);
    expect(files.every((f) => !relative(join(dir, 's3'), f).startsWith('..'))).toBe(true);
    expect(files.some((f) => f.includes('escape') || f.includes('hello'))).toBe(false);
  });
});

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

/** Sends raw bytes on a socket and returns what came back before the server closed or `ms` passed. */
function rawRequest(data: string | Buffer, ms = 2_000): Promise<string> {
  const url = new URL(s3.endpoint);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(url.port), url.hostname, () => socket.write(data));
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', done);
    socket.on('error', done);
  });
}

describe('versioning', () => {
  it('keeps every version: GET by versionId, DELETE of one version, delete markers', async () => {
    const key = 'blobs/abc';
    events.length = 0;
    const v1 = await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: key, Body: 'first' }));
    const v2 = await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: key, Body: 'second!' }));
    expect(v1.VersionId).toMatch(/^[\w-]{20,}$/);
    expect(v2.VersionId).not.toBe(v1.VersionId);
    expect(events.map((e) => [e.eventName, e.versionId, e.size, e.eTag])).toEqual([
      ['ObjectCreated:Put', v1.VersionId, 5, md5hex(Buffer.from('first'))],
      ['ObjectCreated:Put', v2.VersionId, 7, md5hex(Buffer.from('second!'))],
    ]);
    const first = await client.send(
      new GetObjectCommand({ Bucket: 'versioned', Key: key, VersionId: v1.VersionId }),
    );
    expect(await text(first)).toBe('first');
    expect(first.VersionId).toBe(v1.VersionId);
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'versioned', Key: key })))).toBe(
      'second!',
    );

    // Deleting version 2 by id brings version 1 back as current.
    await client.send(new DeleteObjectCommand({ Bucket: 'versioned', Key: key, VersionId: v2.VersionId }));
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'versioned', Key: key })))).toBe(
      'first',
    );
    expect(
      await errorOf(
        client.send(new GetObjectCommand({ Bucket: 'versioned', Key: key, VersionId: v2.VersionId })),
      ),
    ).toMatchObject({ name: 'NoSuchVersion', status: 404 });

    // Without a version id: a delete marker; the old version is still there by id.
    const marker = await client.send(new DeleteObjectCommand({ Bucket: 'versioned', Key: key }));
    expect(marker.DeleteMarker).toBe(true);
    expect(await errorOf(client.send(new GetObjectCommand({ Bucket: 'versioned', Key: key })))).toMatchObject(
      {
        name: 'NoSuchKey',
      },
    );
    expect(
      await text(
        await client.send(new GetObjectCommand({ Bucket: 'versioned', Key: key, VersionId: v1.VersionId })),
      ),
    ).toBe('first');
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: 'versioned', Prefix: key }));
    expect(versions.Versions?.map((v) => v.VersionId)).toEqual([v1.VersionId]);
    expect(versions.DeleteMarkers?.map((m) => [m.VersionId, m.IsLatest])).toEqual([[marker.VersionId, true]]);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'versioned', Prefix: key }));
    expect(listed.KeyCount).toBe(0);
  });

  it('copies a given version, and reports the copy with its own version id, size and ETag', async () => {
    const a = await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'src', Body: 'old bytes' }));
    await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'src', Body: 'new' }));
    events.length = 0;
    const copy = await client.send(
      new CopyObjectCommand({
        Bucket: 'plain',
        Key: 'copied',
        CopySource: `versioned/src?versionId=${a.VersionId}`,
        ChecksumAlgorithm: 'SHA256',
      }),
    );
    expect(copy.CopySourceVersionId).toBe(a.VersionId);
    expect(copy.CopyObjectResult?.ChecksumSHA256).toBe(sha256b64(Buffer.from('old bytes')));
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'copied' })))).toBe(
      'old bytes',
    );
    expect(events).toMatchObject([
      { eventName: 'ObjectCreated:Copy', bucket: 'plain', key: 'copied', size: 9, versionId: undefined },
    ]);
    expect(
      await errorOf(
        client.send(
          new CopyObjectCommand({
            Bucket: 'plain',
            Key: 'copied2',
            CopySource: 'versioned/src',
            CopySourceIfMatch: '"nope"',
          }),
        ),
      ),
    ).toMatchObject({ name: 'PreconditionFailed', status: 412 });
  });
});
