/**
 * The complete-multipart handler (functions/handlers/complete-multipart-handler.ts): each record of
 * a batch is one completion; a record that fails (a body that is not a completion, storage that
 * errs) is named in `batchItemFailures` and the others complete. In-memory ledger, fake storage.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { quietTelemetry } from '../../../functions/adapters/powertools.js';
import type { StoredPart } from '../../../functions/core/ports.js';
import { createCompleteMultipartHandler } from '../../../functions/handlers/complete-multipart-handler.js';
import { lambdaContext } from '../../support/api-events.js';
import { RecordingMetrics } from '../../support/domain.js';
import { fifoRecord, sqsEvent } from '../../support/sqs-events.js';

const MiB = 1024 * 1024;

async function world() {
  const ledger = new InMemoryLedger();
  const completed: string[] = [];
  const blobs = {
    async completeMultipart(_sha: string, multipartId: string, _parts: readonly StoredPart[]) {
      if (multipartId === 'mp-throttled') throw Object.assign(new Error('slow down'), { name: 'SlowDown' });
      completed.push(multipartId);
    },
    async abortMultipart() {},
    async stat() {
      return undefined;
    },
  };
  const metrics = new RecordingMetrics();
  const handler = createCompleteMultipartHandler({
    ledger,
    blobs,
    clock: { now: () => new Date() },
    metrics,
    telemetry: quietTelemetry(metrics),
  } as never);
  async function upload(multipartId: string): Promise<string> {
    const now = new Date();
    const u: Upload = {
      uploadId: randomUUID(),
      path: `big/${multipartId}.bin`,
      sha256: randomUUID().replaceAll('-', '').repeat(2),
      size: 9 * MiB,
      contentType: 'application/octet-stream',
      status: 'pending',
      multipart: { multipartId, partSize: 8 * MiB, partCount: 2 },
      expiresAt: new Date(now.getTime() + 3600_000).toISOString(),
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
    };
    await ledger.putUpload(u);
    await ledger.recordPart(u.uploadId, { partNumber: 1, size: 8 * MiB, sha256: 'b'.repeat(64), etag: 'e1' });
    await ledger.recordPart(u.uploadId, { partNumber: 2, size: MiB, sha256: 'c'.repeat(64), etag: 'e2' });
    return u.uploadId;
  }
  return { handler, upload, completed };
}

const completion = (uploadId: string, messageId: string) =>
  fifoRecord({ completeUpload: { uploadId } }, 'completions', { messageId });

describe('complete-multipart handler', () => {
  it('completes each message of a batch; a bad body and a storage error fail their own records only', async () => {
    const w = await world();
    const first = await w.upload('mp-1');
    const throttled = await w.upload('mp-throttled');
    const second = await w.upload('mp-2');
    const response = await w.handler(
      sqsEvent([
        completion(first, 'm1'),
        fifoRecord({ verifyBlob: { sha256: 'a'.repeat(64) } }, 'completions', { messageId: 'm-bad' }),
        completion(throttled, 'm-throttled'),
        completion(second, 'm2'),
      ]),
      lambdaContext(),
    );
    expect(response.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['m-bad', 'm-throttled']);
    expect(w.completed.sort()).toEqual(['mp-1', 'mp-2']);
  });
});
