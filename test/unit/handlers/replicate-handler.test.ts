/**
 * The replicate handler applies a FIFO batch's paths side by side: each path (message group) in
 * order, a failure returns the rest of its own group only, other paths go on, and what failed is
 * named in `batchItemFailures`. Driven with SQS FIFO events against an in-memory ledger and
 * replica that log every call.
 */
import type { SQSBatchResponse } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { lambdaContext } from '../../support/api-events.js';
import { record, replicateWorld as world } from '../../support/replicate-world.js';
import { sqsEvent } from '../../support/sqs-events.js';

const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((f) => f.itemIdentifier);

function deferred() {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('replicate handler: a FIFO batch', () => {
  it('applies different paths in parallel: one path waits on another that has not yet started', async () => {
    const bStarted = deferred();
    const { handler, copied } = world({
      copy: async (m) => {
        if (m.path === 'b.jpg') bStarted.resolve();
        // Sequential processing would never start b while a waits: the timer turns that into a failure.
        if (m.path === 'a.jpg') {
          const timeout = new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('b.jpg did not start while a.jpg was copying')), 2_000),
          );
          await Promise.race([bStarted.promise, timeout]);
        }
      },
    });
    const response = await handler(sqsEvent([record('a.jpg', 1), record('b.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual([]);
    expect(copied).toEqual(['b.jpg 1', 'a.jpg 1']);
  });

  it('applies one path in order, each version after the one before it has finished', async () => {
    const { handler, copied } = world({
      // The first version is the slowest: run side by side, it would finish last.
      copy: (m) => new Promise((r) => setTimeout(r, m.version === 1 ? 60 : 1)),
    });
    const response = await handler(
      sqsEvent([record('a.jpg', 1), record('a.jpg', 2), record('a.jpg', 3)]),
      lambdaContext(),
    );
    expect(failedIds(response)).toEqual([]);
    expect(copied).toEqual(['a.jpg 1', 'a.jpg 2', 'a.jpg 3']);
  });

  it('a failure returns the rest of its own path only; other paths are applied', async () => {
    const { handler, copied, calls } = world({
      copy: async (m) => {
        if (m.path === 'a.jpg' && m.version === 1) throw new Error('copy refused by the target');
      },
    });
    const response = await handler(
      sqsEvent([record('a.jpg', 1), record('b.jpg', 1), record('a.jpg', 2), record('b.jpg', 2)]),
      lambdaContext(),
    );
    expect(failedIds(response)).toEqual(['a.jpg#1', 'a.jpg#2']);
    expect(copied).toEqual(['b.jpg 1', 'b.jpg 2']);
    // a.jpg v2 is not even tried after v1 failed (it would overtake v1), and v1's failure is recorded.
    expect(calls.filter((c) => c.startsWith('copy a.jpg'))).toEqual(['copy a.jpg 1 from v-verified']);
    expect(calls).toContain('recordTargetFailure a.jpg 1');
  });

  it('a batch that fails whole names every record instead of throwing', async () => {
    const { handler } = world({
      copy: async () => {
        throw new Error('target unreachable');
      },
    });
    const response = await handler(sqsEvent([record('a.jpg', 1), record('b.jpg', 1)]), lambdaContext());
    expect(failedIds(response).sort()).toEqual(['a.jpg#1', 'b.jpg#1']);
  });

  it('copies the verified object version and does not read back the row it just wrote', async () => {
    // The head is v3: the first message applies it, the later two of the same path are known held.
    const { handler, calls } = world({ heads: { 'a.jpg': 3 } });
    const response = await handler(
      sqsEvent([record('a.jpg', 1), record('a.jpg', 2), record('a.jpg', 3)]),
      lambdaContext(),
    );
    expect(failedIds(response)).toEqual([]);
    expect(calls).toEqual([
      'getHead a.jpg',
      'getTargetState a.jpg',
      'getBlob',
      'copy a.jpg 3 from v-verified',
      'recordTargetState a.jpg 3',
    ]);
  });

  it('a later batch reads the target row again (what one batch knows is not kept across batches)', async () => {
    const { handler, calls } = world({ heads: { 'a.jpg': 1 } });
    await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    calls.length = 0;
    await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(calls).toEqual(['getHead a.jpg', 'getTargetState a.jpg', 'getBlob']);
  });

  it("reads the path's head, the target row and the message's blob side by side", async () => {
    const { handler, reads, calls } = world({ heads: { 'a.jpg': 1 } });
    const response = await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual([]);
    expect(reads.max).toBe(3);
    expect(calls.filter((c) => c === 'getBlob')).toHaveLength(1);
  });
});
