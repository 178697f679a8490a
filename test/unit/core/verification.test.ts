/**
 * Verification across invocations: an object above the one-pass size is hashed in ranges, the
 * SHA-256 state kept in the ledger from one invocation to the next (a continuation message names
 * it), and the digest
 * is the one a single pass gives. Through the ingest handler, a large object in a batch goes on in
 * continuations while the batch's small objects commit at once.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resumableSha256 } from '../../../common/sha256-resumable.js';
import { DynamoLedger } from '../../../functions/adapters/dynamo-ledger.js';
import type { IngestDeps } from '../../../functions/core/ingest.js';
import {
  hashInRanges,
  type VerificationPointer,
  type VerificationProgress,
  verificationMessageSchema,
} from '../../../functions/core/verification.js';
import { createIngestHandler } from '../../../functions/handlers/ingest-handler.js';
import { LOCAL_CREDENTIALS, type RunningEmulator, startDynamo } from '../../../local/emulators.ts';
import { ensureLedgerTable } from '../../../local/resources.ts';
import { lambdaContext } from '../../support/api-events.js';
import { RecordingMetrics, randomBytes, sha256Hex, testTelemetry } from '../../support/domain.js';
import { standardRecord } from '../../support/sqs-events.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

/** What the continuation message carries, as it comes back off the queue (JSON, checked): no state. */
const throughQueue = (pointer: VerificationPointer): VerificationPointer =>
  verificationMessageSchema.parse(JSON.parse(JSON.stringify({ verifyBlob: pointer }))).verifyBlob;

describe('hashInRanges', () => {
  it('hashes an object across several invocations, its state kept between them, to the one-pass digest', async () => {
    const blobs = new VersionedBlobs();
    const bytes = randomBytes(1024 * 1024 + 12_345);
    const sha256 = sha256Hex(bytes);
    const versionId = blobs.put(sha256, bytes);
    const target = { sha256, versionId, etag: undefined, size: bytes.length };
    const rangeBytes = 64 * 1024;
    const rangesPerInvocation = 5;

    let progress: VerificationProgress | undefined;
    const offsets: number[] = [];
    for (let invocation = 1; invocation < 100; invocation++) {
      // A time budget of five ranges: the first always runs, then hasTime is asked before each next.
      let budget = rangesPerInvocation - 1;
      const result = await hashInRanges(
        blobs,
        target,
        { rangeBytes, readAhead: 3, hasTime: () => budget-- > 0 },
        progress,
      );
      if (result.done) {
        expect(result).toEqual({
          done: true,
          sha256: createHash('sha256').update(bytes).digest('hex'),
          size: bytes.length,
        });
        break;
      }
      if ('gone' in result) throw new Error('the object is there');
      progress = structuredClone(result.progress);
      expect(progress.hops).toBe(invocation);
      offsets.push(progress.offset);
    }
    // 17 ranges (16 full, 1 partial) at five per invocation: three continuations, four invocations.
    expect(offsets).toEqual([5, 10, 15].map((n) => n * rangeBytes));
    // Every read named the object version being verified.
    const reads = blobs.calls.filter((c) => c.op === 'readRange');
    expect(reads.length).toBeGreaterThanOrEqual(17);
    expect(new Set(reads.map((c) => c.versionId))).toEqual(new Set([versionId]));
  });

  it('a state from other bytes gives another digest (the state is what is carried, not just the offset)', async () => {
    const blobs = new VersionedBlobs();
    const bytes = randomBytes(200_000);
    const sha256 = sha256Hex(bytes);
    const versionId = blobs.put(sha256, bytes);
    const target = { sha256, versionId, etag: undefined, size: bytes.length };
    const first = await hashInRanges(blobs, target, { rangeBytes: 50_000, hasTime: () => false });
    if (first.done || 'gone' in first) throw new Error('one range of four');
    const other = new VersionedBlobs();
    other.put(sha256, randomBytes(200_000));
    const fromOther = await hashInRanges(other, target, { rangeBytes: 50_000, hasTime: () => false });
    if (fromOther.done || 'gone' in fromOther) throw new Error('one range of four');
    const finish = (state: VerificationProgress) =>
      hashInRanges(blobs, target, { rangeBytes: 50_000, hasTime: () => true }, state);
    expect(await finish(first.progress)).toMatchObject({ done: true, sha256 });
    expect(await finish({ ...first.progress, state: fromOther.progress.state })).not.toMatchObject({
      sha256,
    });
  });
});

let server: RunningEmulator;
let dynamo: DynamoDBClient;

beforeAll(async () => {
  server = await startDynamo({ port: 0, tableStatusMs: 0 });
  dynamo = new DynamoDBClient({
    region: 'us-east-1',
    endpoint: server.endpoint,
    credentials: { ...LOCAL_CREDENTIALS },
  });
});
afterAll(async () => {
  dynamo?.destroy();
  await server?.stop();
});

async function newLedger(): Promise<DynamoLedger> {
  const name = `verification-${randomUUID()}`;
  await ensureLedgerTable(dynamo, name);
  return new DynamoLedger(dynamo, name);
}

const record = (body: unknown): SQSRecord => standardRecord(body);

const s3Event = (sha256: string, size: number, versionId: string | undefined) => ({
  Records: [
    {
      eventName: 'ObjectCreated:Put',
      eventTime: new Date().toISOString(),
      s3: { bucket: { name: 'origin' }, object: { key: `blobs/${sha256}`, size, versionId } },
    },
  ],
});

describe('the ingest handler with a large object in a batch', () => {
  async function world(
    verification: NonNullable<Parameters<typeof createIngestHandler>[0]['verification']> = {
      onePassMaxBytes: 4096,
      rangeBytes: 8192,
      readAhead: 2,
      // lambdaContext has 30 s left, under the reserve: one range per invocation.
      reserveMs: 60_000,
    },
  ) {
    const ledger = await newLedger();
    const blobs = new VersionedBlobs();
    const metrics = new RecordingMetrics();
    const deps: IngestDeps = {
      ledger,
      blobs,
      metrics,
      clock: { now: () => new Date() },
      feedShards: 2,
      targets: [{ id: 'alpha', kind: 's3' as const }],
      fanout: { send: async () => undefined },
    };
    const continuations: VerificationPointer[] = [];
    const handler = createIngestHandler({
      ...deps,
      telemetry: testTelemetry(metrics),
      verificationQueue: { continueVerification: async (p) => void continuations.push(throughQueue(p)) },
      verification,
    });
    const invoke = (...bodies: unknown[]) =>
      handler({ Records: bodies.map(record) }, lambdaContext('ingest'));
    /** Stores bytes and claims them for a pending upload, as the API would. */
    async function stored(path: string, bytes: Buffer, claimed = sha256Hex(bytes)) {
      const versionId = blobs.put(claimed, bytes);
      const uploadId = randomUUID();
      const now = new Date();
      await ledger.putUpload({
        uploadId,
        path,
        sha256: claimed,
        size: bytes.length,
        contentType: 'image/png',
        status: 'pending',
        expiresAt: new Date(now.getTime() + 15 * 60 * 1000).toISOString(),
        createdAt: new Date(now.getTime() - 1000).toISOString(),
        updatedAt: now.toISOString(),
      });
      await ledger.addPendingUpload(claimed, uploadId);
      return { sha256: claimed, versionId, uploadId, event: s3Event(claimed, bytes.length, versionId) };
    }
    return { ledger, blobs, metrics, continuations, handler, invoke, stored };
  }

  it('commits the small objects in the first invocation while the large one goes on in continuations to its commit', async () => {
    const w = await world();
    const large = await w.stored('media/large.png', randomBytes(40 * 1024 + 17));
    const small = [
      await w.stored('media/small-1.png', randomBytes(1000)),
      await w.stored('media/small-2.png', randomBytes(3000)),
    ];

    const first = await w.invoke(large.event, small[0]?.event, small[1]?.event);
    expect(first.batchItemFailures).toEqual([]);
    for (const s of small)
      expect(await w.ledger.getUpload(s.uploadId)).toMatchObject({ status: 'committed' });
    expect(await w.ledger.getUpload(large.uploadId)).toMatchObject({ status: 'pending' });
    expect(await w.ledger.getBlob(large.sha256)).toBeUndefined();
    expect(w.continuations).toMatchObject([
      { sha256: large.sha256, versionId: large.versionId, offset: 8192, hops: 1 },
    ]);

    // Each continuation is delivered to a new invocation, as the queue would.
    let invocations = 1;
    while (w.continuations.length > 0) {
      const next = w.continuations.shift() as VerificationPointer;
      const out = await w.invoke({ verifyBlob: next });
      expect(out.batchItemFailures).toEqual([]);
      invocations++;
      expect(invocations).toBeLessThan(20);
    }
    // 40 KiB + 17 bytes in 8 KiB ranges, one range per invocation: six invocations.
    expect(invocations).toBe(6);
    expect(await w.ledger.getUpload(large.uploadId)).toMatchObject({ status: 'committed' });
    expect(await w.ledger.getBlob(large.sha256)).toMatchObject({
      versionId: large.versionId,
      size: 40 * 1024 + 17,
    });
    expect(w.metrics.total('VerificationsContinued')).toBe(5);
    // The small ones were hashed in one pass; the large one only in ranges, of its own version.
    const calls = w.blobs.calls.filter((c) => c.op === 'hash' || c.op === 'readRange');
    expect(
      calls
        .filter((c) => c.op === 'hash')
        .map((c) => c.sha256)
        .sort(),
    ).toEqual(small.map((s) => s.sha256).sort());
    expect(
      calls
        .filter((c) => c.sha256 === large.sha256)
        .every((c) => c.op === 'readRange' && c.versionId === large.versionId),
    ).toBe(true);
  });

  it('without a configured reserve, hashes until a quarter of the invocation is left, then goes on in the next', async () => {
    const w = await world({ onePassMaxBytes: 1024, rangeBytes: 1024, readAhead: 2 });
    const size = 40 * 1024;
    const large = await w.stored('media/timed.png', randomBytes(size));
    // An invocation of 30 s whose clock moves 2 s each time it is read: a reserve of 7.5 s.
    const timedContext = () => {
      let remaining = 32_000;
      return { ...lambdaContext('ingest'), getRemainingTimeInMillis: () => (remaining -= 2_000) };
    };
    await w.handler({ Records: [record(large.event)] }, timedContext());
    const offsets: number[] = [];
    while (w.continuations.length > 0) {
      const next = w.continuations.shift() as VerificationPointer;
      offsets.push(next.offset);
      await w.handler({ Records: [record({ verifyBlob: next })] }, timedContext());
    }
    // Several ranges per invocation, never the whole object in one.
    expect(offsets.length).toBeGreaterThanOrEqual(2);
    expect(offsets[0]).toBeGreaterThan(1024);
    expect(offsets[0]).toBeLessThan(size);
    expect(await w.ledger.getUpload(large.uploadId)).toMatchObject({ status: 'committed' });
  });

  it('rejects a large object whose bytes do not match once the last continuation has hashed them', async () => {
    const w = await world();
    const claimed = sha256Hex(randomBytes(10));
    const large = await w.stored('media/forged.png', randomBytes(20 * 1024), claimed);
    expect((await w.invoke(large.event)).batchItemFailures).toEqual([]);
    let invocations = 1;
    while (w.continuations.length > 0) {
      await w.invoke({ verifyBlob: w.continuations.shift() });
      invocations++;
    }
    expect(invocations).toBe(3);
    expect(await w.ledger.getUpload(large.uploadId)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/sha256 mismatch/),
    });
    expect(w.blobs.versionsOf(claimed)).toEqual([]);
  });

  /** Runs the continuations as the queue would deliver them, each to a new invocation; how many ran. */
  async function drain(w: Awaited<ReturnType<typeof world>>): Promise<number> {
    let invocations = 0;
    while (w.continuations.length > 0) {
      const out = await w.invoke({ verifyBlob: w.continuations.shift() });
      expect(out.batchItemFailures).toEqual([]);
      invocations++;
      expect(invocations).toBeLessThan(20);
    }
    return invocations;
  }

  it('a large duplicate version over a pinned blob is hashed in ranges across invocations, then its upload commits', async () => {
    const w = await world();
    const bytes = randomBytes(20 * 1024 + 5);
    const pinned = await w.stored('media/first.png', bytes);
    await w.invoke(pinned.event);
    await drain(w);
    expect(await w.ledger.getBlob(pinned.sha256)).toMatchObject({ versionId: pinned.versionId });

    // The same bytes sent again through another upload's URL: a second object version at the key.
    const duplicate = await w.stored('media/again.png', Buffer.from(bytes));
    w.blobs.calls.length = 0;
    expect((await w.invoke(duplicate.event)).batchItemFailures).toEqual([]);
    expect(w.continuations).toMatchObject([
      { sha256: pinned.sha256, versionId: duplicate.versionId, offset: 8192, hops: 1 },
    ]);
    expect(await w.ledger.getUpload(duplicate.uploadId)).toMatchObject({ status: 'pending' });
    // 20 KiB + 5 bytes in 8 KiB ranges, one per invocation: two more invocations.
    expect(await drain(w)).toBe(2);

    expect(await w.ledger.getUpload(duplicate.uploadId)).toMatchObject({ status: 'committed' });
    // Never hashed in one pass; every range read named the duplicate's version; the pin stays.
    expect(w.blobs.calls.filter((c) => c.op === 'hash')).toEqual([]);
    const reads = w.blobs.calls.filter((c) => c.op === 'readRange');
    // Three ranges, one a read ahead each invocation but the last (readAhead 2) fetched again.
    expect(reads.length).toBeGreaterThanOrEqual(3);
    expect(new Set(reads.map((c) => c.versionId))).toEqual(new Set([duplicate.versionId]));
    expect(w.blobs.versionsOf(pinned.sha256).map((v) => v.versionId)).toEqual([pinned.versionId]);
    expect(await w.ledger.getBlob(pinned.sha256)).toMatchObject({ versionId: pinned.versionId });
  });

  it('a large version of other bytes over a pinned blob is rejected once its last range is hashed', async () => {
    const w = await world();
    const bytes = randomBytes(20 * 1024);
    const pinned = await w.stored('media/first.png', bytes);
    await w.invoke(pinned.event);
    await drain(w);
    const forged = await w.stored('media/forged.png', randomBytes(20 * 1024), pinned.sha256);
    w.blobs.calls.length = 0;
    await w.invoke(forged.event);
    expect(await drain(w)).toBe(2);
    expect(w.blobs.calls.filter((c) => c.op === 'hash')).toEqual([]);
    expect(await w.ledger.getUpload(forged.uploadId)).toMatchObject({ status: 'pending' });
    expect(w.blobs.versionsOf(pinned.sha256).map((v) => v.versionId)).toEqual([pinned.versionId]);
    expect(w.metrics.total('IngestRejected')).toBe(1);
  });

  it('a continuation anyone could have sent skips no byte: a hash state it carries is not taken (AWS review 8, A1)', async () => {
    const w = await world();
    const genuine = randomBytes(20 * 1024);
    // Other bytes of the same size stored at the genuine content's key, and a message claiming the
    // hash already went through all of them with the genuine bytes' state.
    const forged = await w.stored('media/forged-state.png', randomBytes(genuine.length), sha256Hex(genuine));
    const hasher = await resumableSha256();
    hasher.update(genuine);
    const message = {
      verifyBlob: {
        sha256: forged.sha256,
        versionId: forged.versionId,
        size: genuine.length,
        offset: genuine.length,
        state: Buffer.from(hasher.save()).toString('base64'),
        hops: 1,
      },
    };
    expect((await w.invoke(message)).batchItemFailures).toEqual([]);
    expect(await w.ledger.getUpload(forged.uploadId)).toMatchObject({ status: 'pending' });
    expect(await w.ledger.getBlob(forged.sha256)).toBeUndefined();
    // The hash starts over and reads every byte, in the ranges that follow.
    expect(w.continuations).toMatchObject([{ sha256: forged.sha256, offset: 8192, hops: 1 }]);
    expect(await drain(w)).toBe(2);
    expect(await w.ledger.getUpload(forged.uploadId)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/sha256 mismatch/),
    });
    expect(await w.ledger.getBlob(forged.sha256)).toBeUndefined();
  });

  it('a continuation for an object version since deleted ends quietly', async () => {
    const w = await world();
    const large = await w.stored('media/gone.png', randomBytes(20 * 1024));
    await w.invoke(large.event);
    w.blobs.lose(large.sha256, large.versionId as string);
    expect((await w.invoke({ verifyBlob: w.continuations.shift() })).batchItemFailures).toEqual([]);
    expect(w.continuations).toEqual([]);
    expect(await w.ledger.getUpload(large.uploadId)).toMatchObject({ status: 'pending' });
  });
});
