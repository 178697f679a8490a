/**
 * A replica copy above the single-copy limit runs its part copies side by side, a bounded number
 * at once, each from the verified source version; the first failed part aborts the upload.
 * Requests are answered by a middleware before they leave the client, so what is asserted is
 * exactly what S3 would receive.
 */
import type { CompleteMultipartUploadCommandInput, UploadPartCopyCommandInput } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3_MAX_PARTS } from '../../../contracts/multipart.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { copyRanges, makeS3Client, S3ReplicaStore } from '../../../functions/adapters/s3.js';

const SHA = 'ab'.repeat(32);
const TiB = 1024 ** 4;

const message = (size: number): ReplicationMessage & { sha256: string; sourceVersionId: string } => ({
  targetId: 'alpha',
  path: 'videos/big.mov',
  version: 2,
  sha256: SHA,
  size,
  contentType: 'video/quicktime',
  deleted: false,
  committedAt: new Date().toISOString(),
  sourceVersionId: 'v-verified',
});

/** A client whose part copies take `partMs` and fail for `failPart`; it tracks how many run at once. */
function slowPartsClient(options: { partMs: number; failPart?: number; signal?: AbortSignal }) {
  const s3 = makeS3Client({
    region: 'us-east-1',
    forcePathStyle: true,
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const seen = { sent: [] as { command: string; input: object }[], inFlight: 0, maxInFlight: 0 };
  s3.middlewareStack.add(
    (_next, context) => async (args) => {
      const command = String(context.commandName);
      seen.sent.push({ command, input: args.input as object });
      if (command === 'UploadPartCopyCommand') {
        const part = (args.input as UploadPartCopyCommandInput).PartNumber;
        seen.inFlight++;
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
        try {
          // Stands in for the SDK's HTTP handler, which drops a request when its abortSignal fires.
          await new Promise((resolve, reject) => {
            const timer = setTimeout(resolve, options.partMs);
            options.signal?.addEventListener('abort', () => {
              clearTimeout(timer);
              reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
            });
          });
          if (part === options.failPart) throw Object.assign(new Error('SlowDown'), { name: 'SlowDown' });
        } finally {
          seen.inFlight--;
        }
        return { output: { $metadata: {}, CopyPartResult: { ETag: `"p${part}"` } }, response: {} } as never;
      }
      const output: Record<string, unknown> =
        {
          CreateMultipartUploadCommand: { UploadId: 'mp-1' },
          CompleteMultipartUploadCommand: { ETag: '"done-10"' },
        }[command] ?? {};
      return { output: { $metadata: {}, ...(output as object) }, response: {} } as never;
    },
    { step: 'initialize', name: 'slow-parts' },
  );
  return { s3, seen };
}

describe('S3ReplicaStore: a multipart copy', () => {
  it('copies parts side by side, at most copyConcurrency at once, each from the verified version', async () => {
    const { s3, seen } = slowPartsClient({ partMs: 20 });
    const replica = new S3ReplicaStore(
      s3,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: 10, partBytes: 10, copyConcurrency: 3 },
    );
    const out = await replica.copyFromOrigin(message(95));
    expect(out).toEqual({ storedSha256: undefined, etag: '"done-10"' });
    expect(seen.maxInFlight).toBe(3);
    const parts = seen.sent
      .filter((s) => s.command === 'UploadPartCopyCommand')
      .map((s) => s.input as UploadPartCopyCommandInput);
    expect(parts).toHaveLength(10);
    expect(new Set(parts.map((p) => p.CopySource))).toEqual(
      new Set([`origin/blobs/${SHA}?versionId=v-verified`]),
    );
    expect(parts.map((p) => p.CopySourceRange).at(-1)).toBe('bytes=90-94');
    const complete = seen.sent.find((s) => s.command === 'CompleteMultipartUploadCommand')
      ?.input as CompleteMultipartUploadCommandInput;
    // Completed in part order whatever order the copies finished in.
    expect(complete.MultipartUpload?.Parts?.map((p) => [p.PartNumber, p.ETag])).toEqual(
      Array.from({ length: 10 }, (_, i) => [i + 1, `"p${i + 1}"`]),
    );
  });

  it('a failed part aborts the multipart upload and starts no more parts', async () => {
    const { s3, seen } = slowPartsClient({ partMs: 10, failPart: 2 });
    const replica = new S3ReplicaStore(
      s3,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: 10, partBytes: 10, copyConcurrency: 2 },
    );
    await expect(replica.copyFromOrigin(message(100))).rejects.toThrow(/SlowDown/);
    const commands = seen.sent.map((s) => s.command);
    expect(commands).toContain('AbortMultipartUploadCommand');
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    expect(commands.filter((c) => c === 'UploadPartCopyCommand').length).toBeLessThan(10);
  });
});

describe('S3ReplicaStore: a multipart copy stopped by the invocation', () => {
  it("the caller's signal stops the part copies, starts no more and aborts the upload", async () => {
    const stop = new AbortController();
    const { s3, seen } = slowPartsClient({ partMs: 50, signal: stop.signal });
    const replica = new S3ReplicaStore(
      s3,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: 10, partBytes: 10, copyConcurrency: 2 },
    );
    const copy = replica.copyFromOrigin(message(100), { signal: stop.signal });
    setTimeout(() => stop.abort(), 75);
    await expect(copy).rejects.toThrow();
    const commands = seen.sent.map((s) => s.command);
    // Two rounds of two parts at most had started out of ten; nothing is completed, the upload is gone.
    expect(commands.filter((c) => c === 'UploadPartCopyCommand').length).toBeLessThanOrEqual(4);
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    expect(commands.at(-1)).toBe('AbortMultipartUploadCommand');
  });

  it('a signal aborted before the copy begins starts no part', async () => {
    const { s3, seen } = slowPartsClient({ partMs: 1 });
    const replica = new S3ReplicaStore(
      s3,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: 10, partBytes: 10 },
    );
    await expect(replica.copyFromOrigin(message(100), { signal: AbortSignal.abort() })).rejects.toThrow();
    expect(seen.sent.map((s) => s.command).filter((c) => c === 'UploadPartCopyCommand')).toEqual([]);
  });
});

describe('copyRanges', () => {
  it('covers every byte once, in order', () => {
    const ranges = copyRanges(25, 10);
    expect(ranges).toEqual([
      { part: 1, first: 0, last: 9 },
      { part: 2, first: 10, last: 19 },
      { part: 3, first: 20, last: 24 },
    ]);
  });

  it('grows the part so the largest object S3 holds needs at most 10,000 parts', () => {
    const size = 5 * TiB;
    const ranges = copyRanges(size, 512 * 1024 ** 2);
    expect(ranges.length).toBeLessThanOrEqual(S3_MAX_PARTS);
    expect(ranges.at(-1)?.last).toBe(size - 1);
  });
});
