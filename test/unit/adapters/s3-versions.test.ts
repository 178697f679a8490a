/**
 * The S3 adapters pin reads and copies to an object version when given one: the presigned
 * GET carries `versionId`, and replica copies (single and multipart) read
 * `CopySource=<origin>/blobs/<sha256>?versionId=<id>`. Requests are captured before they
 * leave the client, so what is asserted is exactly what S3 would receive.
 */
import type {
  CompleteMultipartUploadCommandInput,
  CopyObjectCommandInput,
  S3Client,
  UploadPartCopyCommandInput,
} from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { ReplicationMessage } from '../../../contracts/replication-message.ts';
import { copySource, makeS3Client, S3BlobStore, S3ReplicaStore } from '../../../functions/adapters/s3.js';

const SHA = 'ab'.repeat(32);

function capturingClient(): { s3: S3Client; sent: { command: string; input: object }[] } {
  const s3 = makeS3Client({
    region: 'us-east-1',
    forcePathStyle: true,
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const sent: { command: string; input: object }[] = [];
  s3.middlewareStack.add(
    (_next, context) => async (args) => {
      const command = String(context.commandName);
      sent.push({ command, input: args.input as object });
      const output: Record<string, unknown> =
        {
          CopyObjectCommand: { CopyObjectResult: { ETag: '"copied"' } },
          CreateMultipartUploadCommand: { UploadId: 'mp-1' },
          UploadPartCopyCommand: { CopyPartResult: { ETag: '"part"' } },
          CompleteMultipartUploadCommand: { ETag: '"done-2"' },
        }[command] ?? {};
      return { output: { $metadata: {}, ...(output as object) }, response: {} } as never;
    },
    { step: 'initialize', name: 'capture' },
  );
  return { s3, sent };
}

const message = (size: number): ReplicationMessage & { sha256: string } => ({
  targetId: 'alpha',
  path: 'photos/a.jpg',
  version: 3,
  sha256: SHA,
  size,
  contentType: 'image/jpeg',
  deleted: false,
  committedAt: new Date().toISOString(),
});

describe('copySource', () => {
  it('names the version when given one, URL-encoded; the plain key otherwise', () => {
    expect(copySource('origin', `blobs/${SHA}`)).toBe(`origin/blobs/${SHA}`);
    expect(copySource('origin', `blobs/${SHA}`, 'a+b/c=')).toBe(`origin/blobs/${SHA}?versionId=a%2Bb%2Fc%3D`);
  });
});

describe('S3ReplicaStore.copyFromOrigin', () => {
  it('a single CopyObject reads the verified source version', async () => {
    const { s3, sent } = capturingClient();
    const replica = new S3ReplicaStore(s3, 'replica', '', { bucket: 'origin' });
    const out = await replica.copyFromOrigin({ ...message(1024), sourceVersionId: 'v-verified' });
    expect(out.etag).toBe('"copied"');
    expect(sent.map((s) => s.command)).toEqual(['CopyObjectCommand']);
    const input = sent[0]?.input as CopyObjectCommandInput;
    expect(input.CopySource).toBe(`origin/blobs/${SHA}?versionId=v-verified`);
    expect(input.Key).toBe('photos/a.jpg');
  });

  it('every UploadPartCopy of a multipart copy reads the verified source version', async () => {
    const { s3, sent } = capturingClient();
    const replica = new S3ReplicaStore(
      s3,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: 10, partBytes: 8 },
    );
    await replica.copyFromOrigin({ ...message(20), sourceVersionId: 'v-verified' });
    const parts = sent
      .filter((s) => s.command === 'UploadPartCopyCommand')
      .map((s) => s.input as UploadPartCopyCommandInput);
    expect(parts.map((p) => [p.CopySource, p.CopySourceRange])).toEqual([
      [`origin/blobs/${SHA}?versionId=v-verified`, 'bytes=0-7'],
      [`origin/blobs/${SHA}?versionId=v-verified`, 'bytes=8-15'],
      [`origin/blobs/${SHA}?versionId=v-verified`, 'bytes=16-19'],
    ]);
    const complete = sent.find((s) => s.command === 'CompleteMultipartUploadCommand')
      ?.input as CompleteMultipartUploadCommandInput;
    expect(complete.MultipartUpload?.Parts).toHaveLength(3);
  });

  it('without a source version (unversioned origin) copies the key as before', async () => {
    const { s3, sent } = capturingClient();
    const replica = new S3ReplicaStore(s3, 'replica', 'media/', { bucket: 'origin' });
    await replica.copyFromOrigin(message(1024));
    expect(sent.map((x) => (x.input as CopyObjectCommandInput).CopySource)).toEqual([`origin/blobs/${SHA}`]);
  });
});

describe('S3BlobStore.presignGet', () => {
  it('signs the version id into the URL when given one', async () => {
    const s3 = makeS3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const store = new S3BlobStore(s3, 'origin');
    const pinned = new URL(
      await store.presignGet(SHA, 60, { versionId: 'v-verified', contentType: 'image/png' }),
    );
    expect(pinned.pathname).toBe(`/origin/blobs/${SHA}`);
    expect(pinned.searchParams.get('versionId')).toBe('v-verified');
    // The file's own type, signed in: the shared bytes keep the type of their first upload.
    expect(pinned.searchParams.get('response-content-type')).toBe('image/png');
    expect(pinned.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    const plain = new URL(await store.presignGet(SHA, 60, { contentType: 'text/plain' }));
    expect(plain.searchParams.has('versionId')).toBe(false);
  });
});
