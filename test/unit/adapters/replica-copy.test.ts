/**
 * A replica copy above the single-copy limit runs its part copies side by side, a bounded number
 * at once, each from the verified source version; the first failed part aborts the upload.
 * Requests are answered by a middleware before they leave the client, so what is asserted is
 * exactly what S3 would receive.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CompleteMultipartUploadCommandInput,
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  type UploadPartCopyCommandInput,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3_MAX_PARTS } from '../../../contracts/multipart.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { copyRanges, makeS3Client, S3ReplicaStore } from '../../../functions/adapters/s3.js';
import type { CopyCheckpoint } from '../../../functions/core/ports.js';
import { LOCAL_CREDENTIALS, type S3Emulator, startS3 } from '../../../local/emulators.ts';

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

/** Which of the copy's requests this is, by method and query. */
function s3CommandOf(method: string, query: Record<string, unknown>): string {
  if (method === 'PUT') return 'partNumber' in query ? 'UploadPartCopy' : 'CopyObject';
  return 'uploads' in query ? 'CreateMultipartUpload' : 'CompleteMultipartUpload';
}

describe('S3ReplicaStore: a copy S3 may carry out after the client hangs up', () => {
  /**
   * A client whose HTTP handler answers CopyObject and CompleteMultipartUpload after `ms`, dropping
   * a request when its abortSignal fires, as the SDK's node handler does (S3 itself would go on).
   */
  function slowWritesClient(ms: number) {
    const sent: { command: string; withSignal: boolean }[] = [];
    const answers: Record<string, string> = {
      CopyObject: '<CopyObjectResult><ETag>"copied"</ETag></CopyObjectResult>',
      CompleteMultipartUpload:
        '<CompleteMultipartUploadResult><ETag>"done-1"</ETag></CompleteMultipartUploadResult>',
      CreateMultipartUpload:
        '<InitiateMultipartUploadResult><UploadId>mp-1</UploadId></InitiateMultipartUploadResult>',
      UploadPartCopy: '<CopyPartResult><ETag>"p"</ETag></CopyPartResult>',
    };
    const requestHandler = {
      handle: async (
        request: { method: string; query?: Record<string, unknown>; headers: Record<string, string> },
        options?: { abortSignal?: AbortSignal },
      ) => {
        const command = s3CommandOf(request.method, request.query ?? {});
        sent.push({ command, withSignal: options?.abortSignal !== undefined });
        if (command === 'CopyObject' || command === 'CompleteMultipartUpload') {
          await new Promise((resolve, reject) => {
            const timer = setTimeout(resolve, ms);
            options?.abortSignal?.addEventListener('abort', () => {
              clearTimeout(timer);
              reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
            });
          });
        }
        const { Readable } = await import('node:stream');
        return {
          response: {
            statusCode: 200,
            headers: { etag: '"p"' },
            body: Readable.from([answers[command] ?? '']),
          },
        };
      },
    };
    const s3 = new S3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      requestHandler: requestHandler as never,
    });
    return { s3, sent };
  }

  it('a CopyObject or CompleteMultipartUpload in flight when the deadline comes is let finish, not abandoned', async () => {
    for (const size of [100, 5]) {
      const { s3, sent } = slowWritesClient(150);
      const replica = new S3ReplicaStore(
        s3,
        'replica',
        '',
        { bucket: 'origin' },
        { multipartCopyAbove: 10, partBytes: 10 },
      );
      const stop = new AbortController();
      const copy = replica.copyFromOrigin(message(size), { signal: stop.signal });
      setTimeout(() => stop.abort(), 50);
      // Settled by S3's answer, not by the abort: the caller then knows the write landed.
      await expect(copy).resolves.toMatchObject({ etag: expect.any(String) });
      const final = size > 10 ? 'CompleteMultipartUpload' : 'CopyObject';
      expect(sent.filter((r) => r.command === final)).toEqual([{ command: final, withSignal: false }]);
    }
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

/**
 * Against the local S3 emulator (parts of at least 5 MiB, ListParts, versioned sources): a copy
 * the invocation's deadline stops keeps its upload, recorded through the checkpoint the replicate
 * core hands over (the ledger's record of target + path), and the next call continues it.
 */
describe('S3ReplicaStore: a multipart copy continued across invocations', () => {
  const PART = 5 * 1024 * 1024;
  const source = randomBytes(6 * PART + 12_345);
  const sourceSha = createHash('sha256').update(source).digest('hex');
  let emulator: S3Emulator;
  let dir: string;
  let s3: S3Client;
  let sourceVersionId: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'replica-copy-'));
    emulator = await startS3({ dir, port: 0 });
    s3 = makeS3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      endpoint: emulator.endpoint,
      credentials: { ...LOCAL_CREDENTIALS },
    });
    for (const Bucket of ['origin', 'replica']) await s3.send(new CreateBucketCommand({ Bucket }));
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: 'origin', VersioningConfiguration: { Status: 'Enabled' } }),
    );
    const put = await s3.send(
      new PutObjectCommand({ Bucket: 'origin', Key: `blobs/${sourceSha}`, Body: source }),
    );
    sourceVersionId = put.VersionId ?? '';
    // A later version of the same key: a copy must read the verified one, not this.
    await s3.send(new PutObjectCommand({ Bucket: 'origin', Key: `blobs/${sourceSha}`, Body: 'overwritten' }));
  }, 60_000);

  afterAll(async () => {
    await emulator?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const bigMessage = (path: string, version: number) => ({
    targetId: 'alpha',
    path,
    version,
    sha256: sourceSha,
    size: source.length,
    contentType: 'video/mp4',
    deleted: false,
    committedAt: new Date().toISOString(),
    sourceVersionId,
  });

  /** The store, and a count of part copies; `stopAfter` parts done, the deadline's signal fires. */
  function store(stop?: { after: number; controller: AbortController }) {
    const client = makeS3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      endpoint: emulator.endpoint,
      credentials: { ...LOCAL_CREDENTIALS },
    });
    const sent: string[] = [];
    let partsDone = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        sent.push(String(context.commandName));
        const out = await next(args);
        if (context.commandName === 'UploadPartCopyCommand' && ++partsDone === stop?.after) {
          stop.controller.abort(new Error('the invocation is about to end'));
        }
        return out;
      },
      { step: 'initialize', name: 'count-and-stop' },
    );
    const replica = new S3ReplicaStore(
      client,
      'replica',
      '',
      { bucket: 'origin' },
      { multipartCopyAbove: PART, partBytes: PART, copyConcurrency: 1 },
    );
    return { replica, sent, parts: () => sent.filter((c) => c === 'UploadPartCopyCommand').length };
  }

  function ledgerCheckpoint(ledger: InMemoryLedger, path: string): CopyCheckpoint {
    return {
      load: () => ledger.getCopyUpload('alpha', path),
      save: (upload) => ledger.putCopyUpload('alpha', path, upload),
      clear: (uploadId) => ledger.deleteCopyUpload('alpha', path, uploadId),
    };
  }

  async function replicaSha(key: string) {
    const out = await s3.send(new GetObjectCommand({ Bucket: 'replica', Key: key }));
    const bytes = Buffer.from(await (out.Body?.transformToByteArray() ?? new Uint8Array()));
    return {
      sha: createHash('sha256').update(bytes).digest('hex'),
      version: out.Metadata?.['mirror-version'],
    };
  }

  const openUploads = async (key: string) =>
    (
      (await s3.send(new ListMultipartUploadsCommand({ Bucket: 'replica', Prefix: key }))).Uploads ?? []
    ).filter((u) => u.Key === key);

  it('a copy stopped after 3 of 7 parts keeps its upload; the next call copies only the other 4, and the object is the source', async () => {
    const ledger = new InMemoryLedger();
    const path = 'videos/resumed.mp4';
    const checkpoint = ledgerCheckpoint(ledger, path);
    const controller = new AbortController();
    const first = store({ after: 3, controller });
    await expect(
      first.replica.copyFromOrigin(bigMessage(path, 2), { signal: controller.signal, checkpoint }),
    ).rejects.toThrow();
    expect(first.parts()).toBe(3);
    expect(first.sent).not.toContain('AbortMultipartUploadCommand');
    const kept = await ledger.getCopyUpload('alpha', path);
    expect(kept).toMatchObject({ version: 2, sha256: sourceSha, sourceVersionId, partBytes: PART });
    expect((await openUploads(path)).map((u) => u.UploadId)).toEqual([kept?.uploadId]);

    const second = store();
    const out = await second.replica.copyFromOrigin(bigMessage(path, 2), { checkpoint });
    expect(second.parts()).toBe(4);
    expect(second.sent).not.toContain('CreateMultipartUploadCommand');
    expect(out.etag).toMatch(/-7"$/);
    expect(await replicaSha(path)).toEqual({ sha: sourceSha, version: '2' });
    expect(await ledger.getCopyUpload('alpha', path)).toBeUndefined();
    expect(await openUploads(path)).toEqual([]);
  }, 60_000);

  it('a kept upload of another version is aborted, not completed, and the copy starts over', async () => {
    const ledger = new InMemoryLedger();
    const path = 'videos/replaced.mp4';
    const checkpoint = ledgerCheckpoint(ledger, path);
    const controller = new AbortController();
    await expect(
      store({ after: 2, controller }).replica.copyFromOrigin(bigMessage(path, 2), {
        signal: controller.signal,
        checkpoint,
      }),
    ).rejects.toThrow();
    const stale = await ledger.getCopyUpload('alpha', path);
    expect(stale?.version).toBe(2);

    const next = store();
    await next.replica.copyFromOrigin(bigMessage(path, 3), { checkpoint });
    expect(next.sent.slice(0, 2)).toEqual(['AbortMultipartUploadCommand', 'CreateMultipartUploadCommand']);
    expect(next.parts()).toBe(7);
    expect(await replicaSha(path)).toEqual({ sha: sourceSha, version: '3' });
    // The old upload is gone, not completed into the object.
    await expect(
      s3.send(new ListPartsCommand({ Bucket: 'replica', Key: path, UploadId: stale?.uploadId })),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    expect(await openUploads(path)).toEqual([]);
  }, 60_000);

  it('a kept upload of other source bytes or past its expiry is not continued either', async () => {
    const ledger = new InMemoryLedger();
    const path = 'videos/other-bytes.mp4';
    const checkpoint = ledgerCheckpoint(ledger, path);
    const controller = new AbortController();
    await expect(
      store({ after: 2, controller }).replica.copyFromOrigin(bigMessage(path, 2), {
        signal: controller.signal,
        checkpoint,
      }),
    ).rejects.toThrow();
    const kept = await ledger.getCopyUpload('alpha', path);
    if (!kept) throw new Error('no kept upload');
    await ledger.putCopyUpload('alpha', path, { ...kept, sourceVersionId: 'another-version' });
    const next = store();
    await next.replica.copyFromOrigin(bigMessage(path, 2), { checkpoint });
    expect(next.sent[0]).toBe('AbortMultipartUploadCommand');
    expect(next.parts()).toBe(7);

    const controller2 = new AbortController();
    await expect(
      store({ after: 2, controller: controller2 }).replica.copyFromOrigin(bigMessage(path, 4), {
        signal: controller2.signal,
        checkpoint,
      }),
    ).rejects.toThrow();
    const old = await ledger.getCopyUpload('alpha', path);
    if (!old) throw new Error('no kept upload');
    await ledger.putCopyUpload('alpha', path, {
      ...old,
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    });
    const after = store();
    await after.replica.copyFromOrigin(bigMessage(path, 4), { checkpoint });
    expect(after.sent[0]).toBe('AbortMultipartUploadCommand');
    expect(after.parts()).toBe(7);
    expect(await replicaSha(path)).toEqual({ sha: sourceSha, version: '4' });
    expect(await openUploads(path)).toEqual([]);
  }, 60_000);

  it('a copy that fails (not the deadline) aborts its upload and forgets it, as without a checkpoint', async () => {
    const ledger = new InMemoryLedger();
    const path = 'videos/failed.mp4';
    const checkpoint = ledgerCheckpoint(ledger, path);
    const failing = store();
    const client = (failing.replica as unknown as { s3: S3Client }).s3;
    let part = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'UploadPartCopyCommand' && ++part === 3) {
          throw Object.assign(new Error('InternalError'), { name: 'InternalError' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'fail-part-3' },
    );
    await expect(failing.replica.copyFromOrigin(bigMessage(path, 2), { checkpoint })).rejects.toThrow(
      /InternalError/,
    );
    expect(failing.sent).toContain('AbortMultipartUploadCommand');
    expect(await ledger.getCopyUpload('alpha', path)).toBeUndefined();
    expect(await openUploads(path)).toEqual([]);
  }, 60_000);
});
