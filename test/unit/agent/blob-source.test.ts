/**
 * The agent downloads the blob version the ingest verified (the ledger's `B#<sha256>` record
 * names it), never whatever was written at the key later. The GetObject request is captured
 * before it leaves the client.
 */
import { Readable } from 'node:stream';
import { type GetObjectCommandInput, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3BlobSource } from '../../../agent/aws.ts';
import type { Blob } from '../../../contracts/model.ts';

const SHA = 'cd'.repeat(32);

function capturingS3(): { s3: S3Client; inputs: GetObjectCommandInput[] } {
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const inputs: GetObjectCommandInput[] = [];
  s3.middlewareStack.add(
    () => async (args) => {
      inputs.push(args.input as GetObjectCommandInput);
      return {
        output: { $metadata: {}, Body: Readable.from([Buffer.from('bytes')]), ContentLength: 5 },
        response: {},
      } as never;
    },
    { step: 'initialize', name: 'capture' },
  );
  return { s3, inputs };
}

const record = (versionId: string | undefined): Blob => ({
  sha256: SHA,
  size: 5,
  verifiedAt: new Date().toISOString(),
  etag: undefined,
  versionId,
});

describe('S3BlobSource', () => {
  it('GETs the verified object version the ledger records', async () => {
    const { s3, inputs } = capturingS3();
    const asked: string[] = [];
    const source = new S3BlobSource(s3, 'origin', {
      getBlob: async (sha256) => {
        asked.push(sha256);
        return record('v-verified');
      },
    });
    const blob = await source.open(SHA, new AbortController().signal);
    blob.close();
    expect(asked).toEqual([SHA]);
    expect(inputs).toEqual([{ Bucket: 'origin', Key: `blobs/${SHA}`, VersionId: 'v-verified' }]);
  });

  it('without a recorded version (unversioned origin, or no record) GETs the key as before', async () => {
    for (const found of [record(undefined), undefined]) {
      const { s3, inputs } = capturingS3();
      const source = new S3BlobSource(s3, 'origin', { getBlob: async () => found });
      (await source.open(SHA, new AbortController().signal)).close();
      expect(inputs).toEqual([{ Bucket: 'origin', Key: `blobs/${SHA}`, VersionId: undefined }]);
    }
  });
});
