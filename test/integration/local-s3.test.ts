/**
 * The local S3 emulator (local/s3/) through its public interface: the AWS SDK v3, raw
 * HTTP (fetch, sockets) and rclone. It must refuse what S3 refuses and keep versions.
 */

import { execFile } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  PutBucketCorsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeS3Client } from '../../functions/adapters/s3.js';
import { LOCAL_CREDENTIALS, type S3Emulator, type S3ObjectCreated, startS3 } from '../../local/emulators.ts';
import { createPlainAndVersionedBuckets, signS3Headers } from '../support/local-s3.ts';

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
  await createPlainAndVersionedBuckets(client);
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

  it('DeleteObjects removes named versions and puts delete markers on the rest', async () => {
    const a = await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'multi/a', Body: 'a' }));
    await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'multi/b', Body: 'b' }));
    const out = await client.send(
      new DeleteObjectsCommand({
        Bucket: 'versioned',
        Delete: { Objects: [{ Key: 'multi/a', VersionId: a.VersionId }, { Key: 'multi/b' }] },
      }),
    );
    expect(out.Deleted?.map((d) => [d.Key, d.DeleteMarker ?? false])).toEqual([
      ['multi/a', false],
      ['multi/b', true],
    ]);
    const versions = await client.send(
      new ListObjectVersionsCommand({ Bucket: 'versioned', Prefix: 'multi/' }),
    );
    expect(versions.Versions?.map((v) => v.Key)).toEqual(['multi/b']);
    expect(versions.DeleteMarkers?.map((m) => m.Key)).toEqual(['multi/b']);
  });

  it('a DeleteObjects body that is not UTF-8 is MalformedXML, whatever its Content-MD5; nothing is deleted', async () => {
    await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'multi/kept', Body: 'k' }));
    // Latin-1 bytes (0xE9) where UTF-8 is required: taken as text they become U+FFFD.
    const body = Buffer.concat([
      Buffer.from('<Delete><Object><Key>multi/kept'),
      Buffer.from([0xe9]),
      Buffer.from('</Key></Object></Delete>'),
    ]);
    const md5 = createHash('md5').update(body).digest('base64');
    const res = await signedFetch('POST', '/versioned?delete', body, { 'content-md5': md5 });
    expect([res.status, await codeOf(res)]).toEqual([400, 'MalformedXML']);
    expect(await exists('versioned', 'multi/kept')).toBe(true);
  });

  it('a PUT whose client stops sending before its Content-Length is 400 IncompleteBody; nothing stored', async () => {
    const headers = await signHeaders('PUT', '/plain/half', {
      'content-length': '100',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    });
    const head = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    const url = new URL(s3.endpoint);
    const answer = await new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      const socket = connect(Number(url.port), url.hostname, () => {
        // Ten of the hundred bytes, then the client's half of the connection closes.
        socket.end(`PUT /plain/half HTTP/1.1\r\n${head}\r\n${'x'.repeat(10)}`);
      });
      const timer = setTimeout(() => socket.destroy(), 3_000);
      socket.on('data', (c) => chunks.push(c));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('latin1'));
      });
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toContain('<Code>IncompleteBody</Code>');
    expect(await exists('plain', 'half')).toBe(false);
  });

  it('an unsatisfiable range is 416 InvalidRange naming the range asked for', async () => {
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'ranged', Body: 'twelve bytes' }));
    const res = await signedFetch('GET', '/plain/ranged', '', { range: 'bytes=100-200' });
    expect(res.status).toBe(416);
    const xml = await res.text();
    expect(xml).toContain('<RangeRequested>bytes=100-200</RangeRequested>');
    expect(xml).toContain('<ActualObjectSize>12</ActualObjectSize>');
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

/** The API's own presigned PUT: content-type, content-length and x-amz-checksum-sha256 signed. */
async function presignBlobPut(
  key: string,
  body: Buffer,
  options: { expiresIn?: number; signingDate?: Date } = {},
) {
  const checksum = sha256b64(body);
  const url = await getSignedUrl(
    client,
    new PutObjectCommand({
      Bucket: 'versioned',
      Key: key,
      ContentLength: body.length,
      ContentType: 'application/octet-stream',
      ChecksumSHA256: checksum,
    }),
    {
      expiresIn: options.expiresIn ?? 60,
      ...(options.signingDate ? { signingDate: options.signingDate } : {}),
      signableHeaders: new Set(['content-type', 'content-length', 'x-amz-checksum-sha256']),
      unhoistableHeaders: new Set(['content-type', 'x-amz-checksum-sha256']),
    },
  );
  return { url, headers: { 'content-type': 'application/octet-stream', 'x-amz-checksum-sha256': checksum } };
}

describe('strict like S3', () => {
  it('presigned PUT with a signed SHA-256: right bytes 200; wrong bytes 400 BadDigest and nothing stored', async () => {
    const body = randomBytes(4096);
    const signed = await presignBlobPut('blobs/presigned', body);
    const wrong = Buffer.from(body);
    wrong[100] = (wrong[100] ?? 0) ^ 1;
    const bad = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: wrong });
    expect(bad.status).toBe(400);
    expect(await codeOf(bad)).toBe('BadDigest');
    expect(await exists('versioned', 'blobs/presigned')).toBe(false);
    const good = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body });
    expect(good.status).toBe(200);
    expect(good.headers.get('x-amz-version-id')).toBeTruthy();
    const head = await client.send(
      new HeadObjectCommand({ Bucket: 'versioned', Key: 'blobs/presigned', ChecksumMode: 'ENABLED' }),
    );
    expect(head.ChecksumSHA256).toBe(sha256b64(body));
    expect(head.VersionId).toBe(good.headers.get('x-amz-version-id'));
  });

  it('a length other than the signed one, a tampered signature, an expired URL and no signature get 403', async () => {
    const body = randomBytes(1000);
    const signed = await presignBlobPut('blobs/strict', body);
    const longer = await fetch(signed.url, {
      method: 'PUT',
      headers: signed.headers,
      body: Buffer.concat([body, body]),
    });
    expect([longer.status, await codeOf(longer)]).toEqual([403, 'SignatureDoesNotMatch']);
    const shorter = await fetch(signed.url, {
      method: 'PUT',
      headers: signed.headers,
      body: body.subarray(1),
    });
    expect([shorter.status, await codeOf(shorter)]).toEqual([403, 'SignatureDoesNotMatch']);
    const tampered = signed.url.replace(
      /X-Amz-Signature=([0-9a-f])/,
      (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`,
    );
    const forged = await fetch(tampered, { method: 'PUT', headers: signed.headers, body });
    expect([forged.status, await codeOf(forged)]).toEqual([403, 'SignatureDoesNotMatch']);
    const old = await presignBlobPut('blobs/strict', body, {
      expiresIn: 60,
      signingDate: new Date(Date.now() - 120_000),
    });
    const expired = await fetch(old.url, { method: 'PUT', headers: old.headers, body });
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/<Code>AccessDenied<\/Code><Message>Request has expired<\/Message>/);
    const anonymous = await fetch(`${s3.endpoint}/versioned/blobs/strict`, { method: 'PUT', body });
    expect([anonymous.status, await codeOf(anonymous)]).toEqual([403, 'AccessDenied']);
    const anonymousGet = await fetch(`${s3.endpoint}/plain/dir/hello.txt`);
    expect([anonymousGet.status, await codeOf(anonymousGet)]).toEqual([403, 'AccessDenied']);
    const form = new FormData();
    form.set('key', 'blobs/form');
    form.set('file', new Blob([body]));
    const post = await fetch(`${s3.endpoint}/versioned`, { method: 'POST', body: form });
    expect([post.status, await codeOf(post)]).toEqual([501, 'NotImplemented']);
    expect(await exists('versioned', 'blobs/strict')).toBe(false);
    expect(await exists('versioned', 'blobs/form')).toBe(false);
  });

  it('a presigned PUT with an x-amz-* header it did not sign gets 403 AccessDenied, as S3 answers, and stores nothing', async () => {
    // The holder of a URL must not add metadata, an ACL or tags its signer never allowed.
    const body = randomBytes(512);
    const signed = await presignBlobPut('blobs/unsigned-extra', body);
    const extras: Record<string, string>[] = [
      { 'x-amz-meta-evil': '1' },
      { 'x-amz-acl': 'public-read' },
      { 'x-amz-tagging': 'a=b' },
    ];
    for (const extra of extras) {
      const put = await fetch(signed.url, { method: 'PUT', headers: { ...signed.headers, ...extra }, body });
      expect(put.status, JSON.stringify(extra)).toBe(403);
      const text = await put.text();
      expect(text).toMatch(
        /<Code>AccessDenied<\/Code><Message>There were headers present in the request which were not signed<\/Message>/,
      );
      expect(text).toContain(`<HeadersNotSigned>${Object.keys(extra)[0]}</HeadersNotSigned>`);
    }
    expect(await exists('versioned', 'blobs/unsigned-extra')).toBe(false);
    // S3 takes an unsigned x-amz-content-sha256 (the payload hash is not a header a signer binds).
    const ok = await fetch(signed.url, {
      method: 'PUT',
      headers: { ...signed.headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
      body,
    });
    expect(ok.status).toBe(200);
  });

  it('a signed header sent twice (Content-Type, a checksum) gets 403 SignatureDoesNotMatch and stores nothing', async () => {
    // SigV4 signs a header repeated as all its values, comma-joined (AWS's canonical headers): a URL
    // signed for one Content-Type does not match a request carrying two, on AWS. Node's parser keeps
    // only the first Content-Type or Content-Length, so the emulator used to check and store that one.
    const body = randomBytes(256);
    const signed = await presignBlobPut('blobs/twice', body);
    const url = new URL(signed.url);
    const put = (extra: string) =>
      rawRequest(
        Buffer.concat([
          Buffer.from(
            `PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n` +
              `Content-Type: application/octet-stream\r\n` +
              `X-Amz-Checksum-Sha256: ${signed.headers['x-amz-checksum-sha256']}\r\n` +
              `Content-Length: ${body.length}\r\n${extra}\r\n`,
          ),
          body,
        ]),
      );
    for (const extra of [
      'Content-Type: text/html\r\n',
      'Content-Type: application/octet-stream\r\n',
      `X-Amz-Checksum-Sha256: ${signed.headers['x-amz-checksum-sha256']}\r\n`,
    ]) {
      const answer = await put(extra);
      expect(answer.split('\r\n')[0], extra).toBe('HTTP/1.1 403 Forbidden');
      expect(answer, extra).toContain('<Code>SignatureDoesNotMatch</Code>');
    }
    // A second Content-Length Node's HTTP parser refuses itself, before any S3 code: 400.
    expect((await put(`Content-Length: ${body.length}\r\n`)).split('\r\n')[0]).toBe(
      'HTTP/1.1 400 Bad Request',
    );
    expect(await exists('versioned', 'blobs/twice')).toBe(false);
    // Each header once: stored.
    expect((await put('')).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  });

  it('a signed header named like an Object.prototype member (constructor, toString) signs as its own value', async () => {
    // S3 takes any header in SignedHeaders; the emulator's map of what was sent must hold only what was sent.
    for (const name of ['constructor', 'tostring']) {
      const body = `signed ${name}`;
      const res = await signedFetch('PUT', `/plain/prototype/${name}.txt`, body, { [name]: 'x' });
      expect(res.status, name).toBe(200);
    }
    expect(await exists('plain', 'prototype/constructor.txt')).toBe(true);
  });

  it('a header-signed request with an x-amz-* header it did not sign gets 403 AccessDenied too, and changes nothing', async () => {
    // S3 asks the same of the Authorization header as of a presigned URL: every x-amz-* header sent
    // is signed. A component adding one after signing (a middleware, a proxy) fails on AWS, so here too.
    const body = 'header-signed';
    const signedWith = async (extra: Record<string, string>) => {
      const hashed = { 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') };
      const { host: _host, ...sent } = await signHeaders('PUT', '/plain/unsigned/extra.txt', hashed);
      return fetch(`${s3.endpoint}/plain/unsigned/extra.txt`, {
        method: 'PUT',
        headers: { ...sent, ...extra },
        body,
      });
    };
    const extras: Record<string, string>[] = [
      { 'x-amz-meta-evil': '1' },
      { 'x-amz-tagging': 'a=b' },
      { 'x-amz-acl': 'public-read' },
    ];
    for (const extra of extras) {
      const res = await signedWith(extra);
      expect(res.status, JSON.stringify(extra)).toBe(403);
      expect(await res.text()).toContain(`<HeadersNotSigned>${Object.keys(extra)[0]}</HeadersNotSigned>`);
    }
    expect(await exists('plain', 'unsigned/extra.txt')).toBe(false);
    expect((await signedWith({})).status).toBe(200);
  });

  it('a presigned URL with a signed query parameter given again (another value first) gets 403 SignatureDoesNotMatch', async () => {
    // S3 signs every value of a repeated parameter (SigV4: sorted by name, then value). The emulator
    // reads the first value; had the signature kept only the last one, whoever held a content URL could
    // put another disposition, type or version in front of the signed ones and be served that.
    const body = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
    const first = await client.send(
      new PutObjectCommand({ Bucket: 'versioned', Key: 'dup/x.svg', Body: body }),
    );
    await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'dup/x.svg', Body: 'later' }));
    const url = await getSignedUrl(
      client,
      new GetObjectCommand({
        Bucket: 'versioned',
        Key: 'dup/x.svg',
        VersionId: first.VersionId,
        ResponseContentDisposition: 'attachment',
        ResponseContentType: 'image/svg+xml',
      }),
      { expiresIn: 60 },
    );
    const ok = await fetch(url);
    expect([ok.status, ok.headers.get('content-disposition'), await ok.text()]).toEqual([
      200,
      'attachment',
      body.toString(),
    ]);
    for (const prepended of [
      'response-content-disposition=inline&response-content-type=text%2Fhtml',
      'versionId=null',
      'x-id=PutObject',
    ]) {
      const res = await fetch(url.replace('?', `?${prepended}&`));
      expect([res.status, await codeOf(res)], prepended).toEqual([403, 'SignatureDoesNotMatch']);
    }
  });

  it('a bucket lives in one region: a request signed for another gets 400 naming the right one, and changes nothing', async () => {
    // S3 answers a credential scope for another region than the bucket's with 400 (header:
    // AuthorizationHeaderMalformed; presigned URL: AuthorizationQueryParametersError) naming the
    // region expected. An emulator that took any region would hide a client signing a replica
    // bucket's requests for the home region, which fails on AWS only.
    const credentials = { ...LOCAL_CREDENTIALS };
    const euClient = makeS3Client({
      region: 'eu-west-1',
      forcePathStyle: true,
      endpoint: s3.endpoint,
      credentials,
    });
    await euClient.send(
      new CreateBucketCommand({
        Bucket: 'regional',
        CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' },
      }),
    );
    await euClient.send(new PutObjectCommand({ Bucket: 'regional', Key: 'kept', Body: 'eu bytes' }));
    expect(await text(await euClient.send(new GetObjectCommand({ Bucket: 'regional', Key: 'kept' })))).toBe(
      'eu bytes',
    );
    expect((await euClient.send(new HeadBucketCommand({ Bucket: 'regional' }))).BucketRegion).toBe(
      'eu-west-1',
    );
    expect(
      (await euClient.send(new GetBucketLocationCommand({ Bucket: 'regional' }))).LocationConstraint,
    ).toBe('eu-west-1');
    // A copy is signed for the destination bucket's region, whatever the source's.
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'to-copy', Body: 'from us-east-1' }));
    await euClient.send(
      new CopyObjectCommand({ Bucket: 'regional', Key: 'copied', CopySource: 'plain/to-copy' }),
    );
    expect(await text(await euClient.send(new GetObjectCommand({ Bucket: 'regional', Key: 'copied' })))).toBe(
      'from us-east-1',
    );

    const wrong = await errorOf(
      client.send(new PutObjectCommand({ Bucket: 'regional', Key: 'kept', Body: 'x' })),
    );
    expect(wrong).toEqual({ name: 'AuthorizationHeaderMalformed', status: 400 });
    expect(await errorOf(client.send(new GetObjectCommand({ Bucket: 'regional', Key: 'kept' })))).toEqual({
      name: 'AuthorizationHeaderMalformed',
      status: 400,
    });
    const presigned = await getSignedUrl(client, new GetObjectCommand({ Bucket: 'regional', Key: 'kept' }), {
      expiresIn: 60,
    });
    const res = await fetch(presigned);
    const body = await res.text();
    expect([
      res.status,
      /<Code>([^<]+)<\/Code>/.exec(body)?.[1],
      /<Region>([^<]+)<\/Region>/.exec(body)?.[1],
    ]).toEqual([400, 'AuthorizationQueryParametersError', 'eu-west-1']);
    expect(body).not.toContain('eu bytes');
    // The other way round: the home region's bucket refuses a request signed for eu-west-1.
    expect(await errorOf(euClient.send(new GetObjectCommand({ Bucket: 'plain', Key: 'to-copy' })))).toEqual({
      name: 'AuthorizationHeaderMalformed',
      status: 400,
    });
    expect(await text(await euClient.send(new GetObjectCommand({ Bucket: 'regional', Key: 'kept' })))).toBe(
      'eu bytes',
    );
  });

  it('checks a checksum hoisted into the query, and Content-MD5', async () => {
    const body = Buffer.from('query checksum');
    const url = await getSignedUrl(
      client,
      new PutObjectCommand({ Bucket: 'plain', Key: 'hoisted', ChecksumSHA256: sha256b64(body) }),
      { expiresIn: 60 },
    );
    expect(url).toMatch(/x-amz-checksum-sha256=/);
    const bad = await fetch(url, { method: 'PUT', body: 'other bytes!!!' });
    expect([bad.status, await codeOf(bad)]).toEqual([400, 'BadDigest']);
    expect((await fetch(url, { method: 'PUT', body })).status).toBe(200);
    // A client left at WHEN_SUPPORTED presigns the CRC32 of an empty body: every real upload is refused.
    const crcUrl = await getSignedUrl(defaultClient, new PutObjectCommand({ Bucket: 'plain', Key: 'crc' }), {
      expiresIn: 60,
    });
    expect(crcUrl).toMatch(/x-amz-checksum-crc32=AAAAAA%3D%3D/);
    const crc = await fetch(crcUrl, { method: 'PUT', body });
    expect([crc.status, await codeOf(crc)]).toEqual([400, 'BadDigest']);
    const md5 = await errorOf(
      client.send(
        new PutObjectCommand({
          Bucket: 'plain',
          Key: 'md5',
          Body: body,
          ContentMD5: createHash('md5').update('not the body').digest('base64'),
        }),
      ),
    );
    expect(md5).toMatchObject({ name: 'BadDigest', status: 400 });
    expect(await exists('plain', 'md5')).toBe(false);
  });

  it('refuses an aws-chunked body shorter or longer than x-amz-decoded-content-length', async () => {
    for (const declared of [5, 20]) {
      const body = '10\r\n0123456789abcdef\r\n0\r\n\r\n';
      const res = await signedFetch('PUT', '/plain/chunky', body, {
        'content-encoding': 'aws-chunked',
        'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
        'x-amz-decoded-content-length': String(declared),
      });
      expect([res.status, await codeOf(res)]).toEqual([400, 'IncompleteBody']);
    }
    expect(await exists('plain', 'chunky')).toBe(false);
  });

  it('takes a signed streaming body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) and refuses a wrong chunk signature', async () => {
    const data = randomBytes(70_000);
    const chunks = [data.subarray(0, 65_536), data.subarray(65_536), Buffer.alloc(0)];
    const frame = (c: Buffer) =>
      `${c.length.toString(16)};chunk-signature=${'0'.repeat(64)}\r\n`.length + c.length + 2;
    const encodedLength = chunks.reduce((sum, c) => sum + frame(c), 0);
    const send = async (key: string, tamper: boolean) => {
      const headers = await signHeaders('PUT', `/plain/${key}`, {
        'content-encoding': 'aws-chunked',
        'content-length': String(encodedLength),
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'x-amz-decoded-content-length': String(data.length),
      });
      const datetime = headers['x-amz-date'] as string;
      const auth = headers.authorization as string;
      const scope = /Credential=[^/]+\/([^,]+)/.exec(auth)?.[1] as string;
      let previous = /Signature=([0-9a-f]{64})/.exec(auth)?.[1] as string;
      // The signing key, derived as SigV4 defines it (an oracle independent of the emulator).
      const [day, scopeRegion] = scope.split('/') as [string, string];
      const hmac = (key: Buffer | string, value: string) => createHmac('sha256', key).update(value).digest();
      const signingKey = hmac(
        hmac(hmac(hmac(`AWS4${LOCAL_CREDENTIALS.secretAccessKey}`, day), scopeRegion), 's3'),
        'aws4_request',
      );
      const emptyHash = createHash('sha256').digest('hex');
      const parts: Buffer[] = [];
      for (const [i, c] of chunks.entries()) {
        const toSign = [
          'AWS4-HMAC-SHA256-PAYLOAD',
          datetime,
          scope,
          previous,
          emptyHash,
          createHash('sha256').update(c).digest('hex'),
        ].join('\n');
        let signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
        if (tamper && i === 1) signature = signature.replace(/^./, (x) => (x === 'a' ? 'b' : 'a'));
        previous = signature;
        parts.push(
          Buffer.from(`${c.length.toString(16)};chunk-signature=${signature}\r\n`),
          c,
          Buffer.from('\r\n'),
        );
      }
      const { host: _h, ...sent } = headers;
      return fetch(`${s3.endpoint}/plain/${key}`, {
        method: 'PUT',
        headers: sent,
        body: new Uint8Array(Buffer.concat(parts)),
      });
    };
    const ok = await send('signed-chunks', false);
    expect(ok.status).toBe(200);
    const got = await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'signed-chunks' }));
    expect(
      Buffer.from(
        await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      ).equals(data),
    ).toBe(true);
    const bad = await send('signed-chunks-bad', true);
    expect([bad.status, await codeOf(bad)]).toEqual([403, 'SignatureDoesNotMatch']);
    expect(await exists('plain', 'signed-chunks-bad')).toBe(false);
  });

  it('refuses a Host other than its loopback names, even correctly signed: a DNS-rebinding page gets nothing', async () => {
    const { port } = new URL(s3.endpoint);
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'rebind/kept', Body: 'bytes kept' }));
    /** A request signed for `host`, sent with exactly that Host header (fetch would not). */
    const send = async (method: string, path: string, host: string, body = '') => {
      const headers = await signHeaders(method, path, {
        host,
        'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'),
        ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
      });
      return new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: Number(port), method, path, headers, setHost: false },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              text += chunk;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.once('error', reject);
        req.end(body);
      });
    };
    const foreign = `rebind.attacker.example:${port}`;
    for (const [method, path, body] of [
      ['GET', '/', ''],
      ['GET', '/plain/rebind/kept', ''],
      ['PUT', '/plain/rebind/kept', 'replaced by a web page'],
      ['DELETE', '/plain/rebind/kept', ''],
      ['PUT', '/plain/rebind/new', 'planted'],
    ] as const) {
      const answer = await send(method, path, foreign, body);
      expect([answer.status, /<Code>([^<]+)<\/Code>/.exec(answer.body)?.[1]], `${method} ${path}`).toEqual([
        403,
        'AccessDenied',
      ]);
      expect(answer.body).not.toContain('bytes kept');
    }
    const kept = await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'rebind/kept' }));
    expect(await text(kept)).toBe('bytes kept');
    expect(await exists('plain', 'rebind/new')).toBe(false);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      expect((await send('GET', '/plain/rebind/kept', host)).status, host).toBe(200);
    }
  });

  it('answers CORS preflights and requests only for origins and methods the bucket allows', async () => {
    await client.send(
      new PutBucketCorsCommand({
        Bucket: 'plain',
        CORSConfiguration: {
          CORSRules: [
            {
              AllowedOrigins: ['http://allowed.test'],
              AllowedMethods: ['PUT', 'GET'],
              AllowedHeaders: ['*'],
              ExposeHeaders: ['ETag'],
            },
          ],
        },
      }),
    );
    const preflight = (origin: string, method = 'PUT') =>
      fetch(`${s3.endpoint}/plain/x`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': method,
          'access-control-request-headers': 'content-type',
        },
      });
    const ok = await preflight('http://allowed.test');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://allowed.test');
    expect(ok.headers.get('access-control-allow-headers')).toBe('content-type');
    const evil = await preflight('http://evil.test');
    expect([evil.status, await codeOf(evil)]).toEqual([403, 'AccessForbidden']);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    expect((await preflight('http://allowed.test', 'DELETE')).status).toBe(403);
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: 'plain', Key: 'dir/hello.txt' }), {
      expiresIn: 60,
    });
    const fromAllowed = await fetch(url, { headers: { origin: 'http://allowed.test' } });
    expect(fromAllowed.headers.get('access-control-allow-origin')).toBe('http://allowed.test');
    expect(fromAllowed.headers.get('access-control-expose-headers')).toBe('ETag');
    const fromEvil = await fetch(url, { headers: { origin: 'http://evil.test' } });
    expect(fromEvil.headers.get('access-control-allow-origin')).toBeNull();
  });
});

async function signHeaders(method: string, path: string, headers: Record<string, string>) {
  return signS3Headers(s3.endpoint, { method, path, headers, region });
}

/** A request signed like the SDK signs one (header form), for bodies the SDK would never send. */
async function signedFetch(
  method: string,
  pathAndQuery: string,
  body: string | Buffer,
  headers: Record<string, string>,
) {
  const [path = '', search] = pathAndQuery.split('?');
  const query = Object.fromEntries(new URLSearchParams(search ?? ''));
  // The signed payload hash of the body actually sent, unless the caller signs another form.
  const hashed = { 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'), ...headers };
  const { host: _host, ...sent } = await signS3Headers(s3.endpoint, {
    method,
    path,
    headers: hashed,
    query,
    region,
  });
  const payload = method === 'GET' || method === 'HEAD' ? {} : { body: new Uint8Array(Buffer.from(body)) };
  return fetch(`${s3.endpoint}${pathAndQuery}`, { method, headers: sent, ...payload });
}

describe('multipart and listings', () => {
  it('completes a multipart upload (composite SHA-256, ETag -N), refusing a wrong ETag and a wrong order', async () => {
    const part1 = randomBytes(5 * 1024 * 1024);
    const part2 = randomBytes(1234);
    const key = 'big/file.bin';
    const { UploadId } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: 'versioned', Key: key, ChecksumAlgorithm: 'SHA256' }),
    );
    const up = (n: number, body: Buffer) =>
      client.send(
        new UploadPartCommand({
          Bucket: 'versioned',
          Key: key,
          UploadId,
          PartNumber: n,
          Body: body,
          ChecksumSHA256: sha256b64(body),
        }),
      );
    const bad = await errorOf(
      client.send(
        new UploadPartCommand({
          Bucket: 'versioned',
          Key: key,
          UploadId,
          PartNumber: 1,
          Body: part1,
          ChecksumSHA256: sha256b64(part2),
        }),
      ),
    );
    expect(bad).toMatchObject({ name: 'BadDigest', status: 400 });
    const p1 = await up(1, part1);
    const p2 = await up(2, part2);
    const parts = [
      { PartNumber: 1, ETag: p1.ETag, ChecksumSHA256: p1.ChecksumSHA256 },
      { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: p2.ChecksumSHA256 },
    ];
    const complete = (list: typeof parts) =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'versioned',
          Key: key,
          UploadId,
          MultipartUpload: { Parts: list },
        }),
      );
    expect(
      await errorOf(
        complete([
          parts[0] as (typeof parts)[0],
          { ...(parts[1] as (typeof parts)[0]), ETag: `"${'0'.repeat(32)}"` },
        ]),
      ),
    ).toMatchObject({
      name: 'InvalidPart',
      status: 400,
    });
    expect(await errorOf(complete([...parts].reverse()))).toMatchObject({
      name: 'InvalidPartOrder',
      status: 400,
    });
    events.length = 0;
    const done = await complete(parts);
    const md5s = Buffer.concat([p1, p2].map((p) => Buffer.from((p.ETag ?? '').replace(/"/g, ''), 'hex')));
    expect(done.ETag).toBe(`"${createHash('md5').update(md5s).digest('hex')}-2"`);
    expect(done.VersionId).toBeTruthy();
    expect(events).toMatchObject([
      {
        eventName: 'ObjectCreated:CompleteMultipartUpload',
        key,
        size: part1.length + part2.length,
        versionId: done.VersionId,
      },
    ]);
    const head = await client.send(
      new HeadObjectCommand({ Bucket: 'versioned', Key: key, ChecksumMode: 'ENABLED' }),
    );
    expect(head.ContentLength).toBe(part1.length + part2.length);
    expect(head.ChecksumSHA256).toMatch(/-2$/);
    expect(head.ChecksumType).toBe('COMPOSITE');
    const tail = await client.send(
      new GetObjectCommand({
        Bucket: 'versioned',
        Key: key,
        Range: `bytes=${part1.length - 2}-${part1.length + 1}`,
      }),
    );
    const got = Buffer.from(
      await (tail.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    expect(got.equals(Buffer.concat([part1.subarray(-2), part2.subarray(0, 2)]))).toBe(true);
    // Copies of parts by range (replicate's path above 5 GiB).
    const copy = await client.send(
      new CreateMultipartUploadCommand({ Bucket: 'plain', Key: 'copy-by-parts' }),
    );
    const c1 = await client.send(
      new UploadPartCopyCommand({
        Bucket: 'plain',
        Key: 'copy-by-parts',
        UploadId: copy.UploadId,
        PartNumber: 1,
        CopySource: `versioned/${key}`,
        CopySourceRange: `bytes=0-${part1.length - 1}`,
      }),
    );
    const c2 = await client.send(
      new UploadPartCopyCommand({
        Bucket: 'plain',
        Key: 'copy-by-parts',
        UploadId: copy.UploadId,
        PartNumber: 2,
        CopySource: `versioned/${key}?versionId=${done.VersionId}`,
        CopySourceRange: `bytes=${part1.length}-${part1.length + part2.length - 1}`,
      }),
    );
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'plain',
        Key: 'copy-by-parts',
        UploadId: copy.UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: c1.CopyPartResult?.ETag },
            { PartNumber: 2, ETag: c2.CopyPartResult?.ETag },
          ],
        },
      }),
    );
    expect((await client.send(new HeadObjectCommand({ Bucket: 'plain', Key: 'copy-by-parts' }))).ETag).toBe(
      done.ETag,
    );
  });

  it('lists with a delimiter at the root: CommonPrefixes, max-keys and continuation tokens', async () => {
    await client.send(new CreateBucketCommand({ Bucket: 'listing' }));
    for (const key of ['a/1', 'a/2', 'b/x/1', 'c', 'd/1']) {
      await client.send(new PutObjectCommand({ Bucket: 'listing', Key: key, Body: key }));
    }
    const all = await client.send(new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/' }));
    expect(all.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['a/', 'b/', 'd/']);
    expect(all.Contents?.map((c) => c.Key)).toEqual(['c']);
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/', MaxKeys: 1, ContinuationToken: token }),
      );
      seen.push(
        ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? ''),
        ...(page.Contents ?? []).map((c) => c.Key ?? ''),
      );
      token = page.NextContinuationToken;
    } while (token);
    expect(seen).toEqual(['a/', 'b/', 'c', 'd/']);
    const nested = await client.send(
      new ListObjectsV2Command({ Bucket: 'listing', Prefix: 'b/', Delimiter: '/' }),
    );
    expect(nested.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['b/x/']);
    const after = await client.send(new ListObjectsV2Command({ Bucket: 'listing', StartAfter: 'b/x/1' }));
    expect(after.Contents?.map((c) => c.Key)).toEqual(['c', 'd/1']);
  });
});

/**
 * Walks a listing page by page, as a client's paginator does, stopping after 50 requests so
 * that a marker which never advances fails the test instead of hanging it.
 */
async function pages<T>(first: () => Promise<T>, next: (page: T) => Promise<T> | undefined): Promise<T[]> {
  const all = [await first()];
  for (let i = 0; i < 50; i++) {
    const more = next(all.at(-1) as T);
    if (more === undefined) return all;
    all.push(await more);
  }
  throw new Error('the listing did not end after 50 pages');
}

/**
 * A paged listing must cut the full listing into consecutive slices: each page holds the next
 * entries (a page's elements come back grouped by kind, so its order is compared as a set),
 * every page but the last holds exactly `max`, and nothing repeats or goes missing.
 */
function expectSlices(pageEntries: string[][], expected: string[], max: number): void {
  let at = 0;
  for (const [i, entries] of pageEntries.entries()) {
    const slice = expected.slice(at, at + max);
    if (i < pageEntries.length - 1) expect(entries.length, `page ${i + 1}`).toBe(max);
    expect([...entries].sort(), `page ${i + 1}`).toEqual(slice.slice(0, entries.length).sort());
    at += entries.length;
  }
  expect(pageEntries.flat().sort()).toEqual([...expected].sort());
  expect(at).toBe(expected.length);
}

describe('paging (clients page with the Next* markers: a marker that does not advance loops rclone for ever)', () => {
  it('ListMultipartUploads pages by key, then by initiation within a key, with key-marker and upload-id-marker', async () => {
    const Bucket = 'upload-paging';
    await client.send(new CreateBucketCommand({ Bucket }));
    const created: { key: string; id: string }[] = [];
    for (const key of ['top', 'dir/b', 'dir/a', 'top', 'dir/a']) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: key }));
      created.push({ key, id: UploadId ?? '' });
    }
    // Sorted by key, then by initiation: the uploads of one key in the order they were created.
    const order = ['dir/a', 'dir/b', 'top'].flatMap((k) => created.filter((u) => u.key === k));
    const token = (u: { Key?: string; UploadId?: string }) => `${u.Key} ${u.UploadId}`;
    const expected = order.map((u) => token({ Key: u.key, UploadId: u.id }));
    const list = (input: Partial<ConstructorParameters<typeof ListMultipartUploadsCommand>[0]>) =>
      client.send(new ListMultipartUploadsCommand({ Bucket, ...input }));

    const whole = await list({});
    expect(whole.IsTruncated).toBe(false);
    expect((whole.Uploads ?? []).map(token)).toEqual(expected);

    const paged = await pages(
      () => list({ MaxUploads: 2 }),
      (p) =>
        p.IsTruncated
          ? list({ MaxUploads: 2, KeyMarker: p.NextKeyMarker, UploadIdMarker: p.NextUploadIdMarker })
          : undefined,
    );
    expect(paged.map((p) => (p.Uploads ?? []).map(token))).toEqual([
      expected.slice(0, 2),
      expected.slice(2, 4),
      expected.slice(4),
    ]);
    // Page 2 ends between the two uploads of `top`: the id marker resumes inside the key.
    expect(paged[1]).toMatchObject({
      IsTruncated: true,
      KeyMarker: 'dir/a',
      UploadIdMarker: order[1]?.id,
      NextKeyMarker: 'top',
      NextUploadIdMarker: order[3]?.id,
      MaxUploads: 2,
    });

    // key-marker alone: the keys after it; with upload-id-marker: that key's later uploads first.
    expect(((await list({ KeyMarker: 'dir/a' })).Uploads ?? []).map(token)).toEqual(expected.slice(2));
    expect(
      ((await list({ KeyMarker: 'dir/a', UploadIdMarker: order[0]?.id })).Uploads ?? []).map(token),
    ).toEqual(expected.slice(1));
    // An upload-id-marker without a key-marker is ignored, as S3 ignores it.
    expect(((await list({ UploadIdMarker: order[0]?.id })).Uploads ?? []).map(token)).toEqual(expected);

    // A prefix lists only its keys; a key-marker past every key lists nothing.
    expect(((await list({ Prefix: 'dir/' })).Uploads ?? []).map(token)).toEqual(expected.slice(0, 3));
    const past = await list({ KeyMarker: 'zzz' });
    expect([past.IsTruncated, past.Uploads ?? []]).toEqual([false, []]);

    for (const u of created) {
      await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.key, UploadId: u.id }));
    }
  });

  it('ListMultipartUploads with a delimiter rolls keys up into CommonPrefixes, each counting once toward max-uploads', async () => {
    const Bucket = 'upload-prefixes';
    await client.send(new CreateBucketCommand({ Bucket }));
    const created: { key: string; id: string }[] = [];
    for (const key of ['dir/a', 'dir/b', 'top', 'dir/a', 'top', 'x/y/z', 'sp ace/é']) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: key }));
      created.push({ key, id: UploadId ?? '' });
    }
    const tops = created.filter((u) => u.key === 'top').map((u) => `top ${u.id}`);
    // Keys sort by their bytes: 'd' < 's' < 't' < 'x'.
    const expected = ['P dir/', 'P sp ace/', ...tops, 'P x/'];
    const entries = (p: ListMultipartUploadsCommandOutput) => [
      ...(p.CommonPrefixes ?? []).map((c) => `P ${c.Prefix}`),
      ...(p.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`),
    ];
    const list = (input: Partial<ConstructorParameters<typeof ListMultipartUploadsCommand>[0]>) =>
      client.send(new ListMultipartUploadsCommand({ Bucket, Delimiter: '/', ...input }));

    const whole = await list({});
    expect(whole).toMatchObject({ Delimiter: '/', Prefix: '', IsTruncated: false });
    expect(entries(whole).sort()).toEqual([...expected].sort());

    for (const max of [1, 2, 3]) {
      const paged = await pages(
        () => list({ MaxUploads: max }),
        (p) =>
          p.IsTruncated
            ? list({ MaxUploads: max, KeyMarker: p.NextKeyMarker, UploadIdMarker: p.NextUploadIdMarker })
            : undefined,
      );
      expectSlices(paged.map(entries), expected, max);
    }
    // A page that ends on a common prefix names it as the next key marker, with no upload id.
    const first = await list({ MaxUploads: 1 });
    expect(first).toMatchObject({
      IsTruncated: true,
      NextKeyMarker: 'dir/',
      CommonPrefixes: [{ Prefix: 'dir/' }],
    });
    expect(first.NextUploadIdMarker ?? '').toBe('');

    // Under a prefix, the delimiter applies to the rest of the key.
    const nested = await list({ Prefix: 'x/' });
    expect(nested.CommonPrefixes?.map((c) => c.Prefix)).toEqual(['x/y/']);
    expect(nested.Uploads).toBeUndefined();
    const encoded = await list({ Prefix: 'sp ace/', EncodingType: 'url' });
    expect(encoded).toMatchObject({ EncodingType: 'url', Prefix: 'sp%20ace/', Delimiter: '/' });
    expect(encoded.Uploads?.map((u) => u.Key)).toEqual(['sp%20ace/%C3%A9']);

    for (const u of created) {
      await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.key, UploadId: u.id }));
    }
  });

  it('ListObjectVersions with a delimiter pages through prefixes and versions, each once and in order', async () => {
    const Bucket = 'versions-paging';
    await client.send(new CreateBucketCommand({ Bucket }));
    await client.send(
      new PutBucketVersioningCommand({ Bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    const versions = new Map<string, string[]>();
    for (const key of ['a/1', 'a/2', 'b/1', 'c', 'd/x/1', 'e', 'c', 'e', 'a/1', 'f/1']) {
      const { VersionId } = await client.send(new PutObjectCommand({ Bucket, Key: key, Body: key }));
      versions.set(key, [VersionId ?? '', ...(versions.get(key) ?? [])]);
    }
    const marker = await client.send(new DeleteObjectCommand({ Bucket, Key: 'c' }));
    versions.set('c', [marker.VersionId ?? '', ...(versions.get('c') ?? [])]);
    const v = (key: string) => (versions.get(key) ?? []).map((id) => `${key} ${id}`);
    // Keys by bytes, prefixes in their place, each key's versions newest first (the delete marker of c first).
    const expected = ['P a/', 'P b/', ...v('c'), 'P d/', ...v('e'), 'P f/'];
    const entries = (p: ListObjectVersionsCommandOutput) => [
      ...(p.CommonPrefixes ?? []).map((c) => `P ${c.Prefix}`),
      ...[...(p.Versions ?? []), ...(p.DeleteMarkers ?? [])].map((x) => `${x.Key} ${x.VersionId}`),
    ];
    const list = (input: Partial<ConstructorParameters<typeof ListObjectVersionsCommand>[0]>) =>
      client.send(new ListObjectVersionsCommand({ Bucket, Delimiter: '/', ...input }));

    expect(entries(await list({})).sort()).toEqual([...expected].sort());
    for (const max of [1, 2, 3]) {
      const paged = await pages(
        () => list({ MaxKeys: max }),
        (p) =>
          p.IsTruncated
            ? list({ MaxKeys: max, KeyMarker: p.NextKeyMarker, VersionIdMarker: p.NextVersionIdMarker })
            : undefined,
      );
      expectSlices(paged.map(entries), expected, max);
    }
    // S3 names the page's last entry: here the common prefix b/, with no version id.
    const first = await list({ MaxKeys: 2 });
    expect(first).toMatchObject({ IsTruncated: true, NextKeyMarker: 'b/', KeyMarker: '' });
    expect(first.NextVersionIdMarker ?? '').toBe('');
    // A page that ends on a version names it (key and version id), and the next resumes after it.
    const third = await list({ MaxKeys: 3, KeyMarker: 'b/' });
    expect(third).toMatchObject({
      IsTruncated: true,
      NextKeyMarker: 'c',
      NextVersionIdMarker: versions.get('c')?.[2],
    });
  });

  it('ListObjects V1 and V2 with a delimiter page through prefixes and keys, each once and in order', async () => {
    const Bucket = 'versions-paging'; // the previous test's keys: c is deleted, so it is not listed
    const expected = ['P a/', 'P b/', 'P d/', 'e', 'P f/'];
    const entries = (p: { CommonPrefixes?: { Prefix?: string }[]; Contents?: { Key?: string }[] }) => [
      ...(p.CommonPrefixes ?? []).map((c) => `P ${c.Prefix}`),
      ...(p.Contents ?? []).map((c) => c.Key ?? ''),
    ];
    for (const max of [1, 2, 3]) {
      const v1 = await pages(
        () => client.send(new ListObjectsCommand({ Bucket, Delimiter: '/', MaxKeys: max })),
        (p) =>
          p.IsTruncated
            ? client.send(
                new ListObjectsCommand({ Bucket, Delimiter: '/', MaxKeys: max, Marker: p.NextMarker }),
              )
            : undefined,
      );
      expectSlices(v1.map(entries), expected, max);
      const v2 = await pages(
        () => client.send(new ListObjectsV2Command({ Bucket, Delimiter: '/', MaxKeys: max })),
        (p) =>
          p.IsTruncated
            ? client.send(
                new ListObjectsV2Command({
                  Bucket,
                  Delimiter: '/',
                  MaxKeys: max,
                  ContinuationToken: p.NextContinuationToken,
                }),
              )
            : undefined,
      );
      expectSlices(v2.map(entries), expected, max);
    }
  });
});

describe('robustness', () => {
  it('state survives a stop and a start on the same folder', async () => {
    const v1 = await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'persist', Body: 'one' }));
    await client.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'persist', Body: 'two' }));
    await s3.stop();
    client.destroy();
    defaultClient.destroy();
    await start();
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'versioned', Key: 'persist' })))).toBe(
      'two',
    );
    expect(
      await text(
        await client.send(
          new GetObjectCommand({ Bucket: 'versioned', Key: 'persist', VersionId: v1.VersionId }),
        ),
      ),
    ).toBe('one');
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'a/../b' })))).toBe(
      'dots',
    );
  });

  it('a start on a port in use fails and leaves nothing open (its call observer closed)', async () => {
    const openPorts = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const before = openPorts();
    await expect(
      startS3({ dir: join(dir, 's3-taken'), port: s3.port, observeChannel: 'local-s3-test-calls' }),
    ).rejects.toThrow(/in use/);
    await new Promise((r) => setImmediate(r));
    expect(openPorts()).toBe(before);
  });

  it('~200 malformed requests each get an error, and the next upload still works', async () => {
    const host = new URL(s3.endpoint).host;
    const garbage: (() => Promise<string>)[] = [
      // Truncated multipart form POST (what once ended s3rver's process).
      () =>
        rawRequest(
          `POST /plain HTTP/1.1\r\nHost: ${host}\r\nContent-Type: multipart/form-data; boundary=xx\r\nContent-Length: 500\r\n\r\n--xx\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n--x`,
          300,
        ),
      // Invalid XML completing an upload that does not exist; unsigned.
      () =>
        rawRequest(
          `POST /plain/k?uploadId=zz HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<a><b></a`,
        ),
      // A header section larger than the server takes.
      () => rawRequest(`GET /plain/k HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
      // A body that stops halfway and never ends.
      () =>
        rawRequest(
          `PUT /plain/slow HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(10)}`,
          1_500,
        ),
      // Not HTTP at all.
      () => rawRequest(randomBytes(300)),
      // Bad percent-encoding, an unknown method, an unknown subresource.
      () => rawRequest(`GET /plain/%zz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
      () => rawRequest(`BREW /plain/k HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
      () => rawRequest(`GET /plain?policy HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    ];
    const slowHeaders = await signHeaders('PUT', '/plain/slow', {
      'content-length': '1000',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    });
    const slowHead = Object.entries(slowHeaders)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    // A signed body that stops halfway: answered RequestTimeout once the connection idles.
    garbage.push(() => rawRequest(`PUT /plain/slow HTTP/1.1\r\n${slowHead}\r\n${'x'.repeat(10)}`, 1_500));
    const answers: string[] = [];
    for (let i = 0; i < 198; i += garbage.length) {
      answers.push(...(await Promise.all(garbage.map((g) => g()))));
    }
    const statuses = answers.map((a) => /^HTTP\/1\.1 (\d{3})/.exec(a)?.[1] ?? 'closed');
    const counts = statuses.reduce<Record<string, number>>((acc, s) => {
      acc[s] = (acc[s] ?? 0) + 1;
      return acc;
    }, {});
    console.log(`fuzz: ${answers.length} requests, answers ${JSON.stringify(counts)}`);
    expect(answers.length).toBe(198);
    expect(statuses.filter((x) => x === '400').length).toBeGreaterThan(0);
    expect(answers.filter((a) => a.includes('<Code>RequestTimeout</Code>')).length).toBe(22);
    expect(statuses.every((s) => /^[45]\d\d$/.test(s) || s === 'closed')).toBe(true);
    expect(
      answers
        .filter((a) => a.startsWith('HTTP/1.1 4') || a.startsWith('HTTP/1.1 5'))
        .every((a) => a.includes('<Error><Code>')),
    ).toBe(true);
    expect(statuses.filter((s) => s === '500')).toEqual([]);
    await client.send(new PutObjectCommand({ Bucket: 'plain', Key: 'after-fuzz', Body: 'still here' }));
    expect(await text(await client.send(new GetObjectCommand({ Bucket: 'plain', Key: 'after-fuzz' })))).toBe(
      'still here',
    );
    expect(await exists('plain', 'slow')).toBe(false);
  });
});

describe('rclone (a real S3 client; .ci/run installs it)', () => {
  /** rclone against the emulator; a listing that never ends is killed after `timeout` ms. */
  const rclone = (...args: string[]) => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      RCLONE_CONFIG_LOC_TYPE: 's3',
      RCLONE_CONFIG_LOC_PROVIDER: 'Other',
      RCLONE_CONFIG_LOC_ENDPOINT: s3.endpoint,
      RCLONE_CONFIG_LOC_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      RCLONE_CONFIG_LOC_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      RCLONE_CONFIG_LOC_FORCE_PATH_STYLE: 'true',
      RCLONE_CONFIG: join(dir, 'rclone.conf'),
    };
    // rclone 1.60 refuses to start while AWS_CA_BUNDLE is set.
    delete env.AWS_CA_BUNDLE;
    return promisify(execFile)('rclone', args, { env, timeout: 30_000 });
  };

  it('pages versions with a delimiter and open multipart uploads, 2 entries a request, to the end', async () => {
    const Bucket = 'rclone-paging';
    await client.send(new CreateBucketCommand({ Bucket }));
    await client.send(
      new PutBucketVersioningCommand({ Bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    for (const key of ['a/1', 'b/1', 'c/1', 'd', 'e/1', 'f', 'd']) {
      await client.send(new PutObjectCommand({ Bucket, Key: key, Body: key }));
    }
    // rclone lists with a delimiter when not recursive; versions get a -v<date> suffix.
    const lsf = await rclone('lsf', '--s3-versions', '--s3-list-chunk', '2', `loc:${Bucket}`);
    const names = lsf.stdout.trim().split('\n');
    expect(names.filter((n) => n.endsWith('/'))).toEqual(['a/', 'b/', 'c/', 'e/']);
    expect(names.filter((n) => /^d(-v.*)?$/.test(n))).toHaveLength(2);
    expect(names.filter((n) => n === 'f')).toHaveLength(1);
    expect(names).toHaveLength(7);

    const ids: string[] = [];
    for (const key of ['u/1', 'u/2', 'u/2', 'v', 'v']) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: key }));
      ids.push(UploadId ?? '');
    }
    // What `rclone cleanup` walks before aborting old uploads.
    const listed = await rclone('backend', 'list-multipart-uploads', '--s3-list-chunk', '2', `loc:${Bucket}`);
    const uploads = (JSON.parse(listed.stdout) as Record<string, { UploadId: string }[]>)[Bucket] ?? [];
    expect(uploads.map((u) => u.UploadId).sort()).toEqual([...ids].sort());
  }, 120_000);

  it('creates a bucket, copies a folder up and back, lists it and checks it', async () => {
    const src = join(dir, 'rclone-src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'a.txt'), 'aaa');
    await writeFile(join(src, 'sp ace+%.txt'), 'x');
    await writeFile(join(src, 'sub', 'b.bin'), randomBytes(300_000));
    await rclone('mkdir', 'loc:rclone-bucket');
    await rclone('copy', src, 'loc:rclone-bucket/dest');
    expect((await rclone('lsf', 'loc:rclone-bucket')).stdout.trim().split('\n')).toEqual(['dest/']);
    expect(
      (await rclone('lsf', '-R', '--files-only', 'loc:rclone-bucket')).stdout.trim().split('\n').sort(),
    ).toEqual(['dest/a.txt', 'dest/sp ace+%.txt', 'dest/sub/b.bin']);
    await rclone('check', src, 'loc:rclone-bucket/dest');
    await rclone('copy', 'loc:rclone-bucket/dest', join(dir, 'rclone-back'));
    expect(
      (await readFile(join(dir, 'rclone-back', 'sub', 'b.bin'))).equals(
        await readFile(join(src, 'sub', 'b.bin')),
      ),
    ).toBe(true);
    await rclone('delete', 'loc:rclone-bucket/dest/a.txt');
    expect(await exists('rclone-bucket', 'dest/a.txt')).toBe(false);
    expect(await exists('rclone-bucket', 'dest/sub/b.bin')).toBe(true);
    // Multipart: Go's XML writes the ETags' quotes as &#34; in CompleteMultipartUpload.
    const big = join(src, "it's big.bin");
    await writeFile(big, randomBytes(12 * 1024 * 1024));
    await rclone(
      'copyto',
      big,
      "loc:rclone-bucket/multi/it's big.bin",
      '--s3-upload-cutoff',
      '5M',
      '--s3-chunk-size',
      '5M',
    );
    await rclone('check', src, 'loc:rclone-bucket/multi', '--include', "it's big.bin");
    await rclone('copyto', "loc:rclone-bucket/multi/it's big.bin", join(dir, 'rclone-back', 'big.bin'));
    expect((await readFile(join(dir, 'rclone-back', 'big.bin'))).equals(await readFile(big))).toBe(true);
  }, 120_000);
});
