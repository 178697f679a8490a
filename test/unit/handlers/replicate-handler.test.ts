/**
 * The replicate handler applies a FIFO batch's paths side by side: each path (message group) in
 * order, a failure returns the rest of its own group only, other paths go on, and what failed is
 * named in `batchItemFailures`. Driven with SQS FIFO events against an in-memory ledger and
 * replica that log every call.
 */
import type { SQSBatchResponse } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { FileVersion, TargetState } from '../../../contracts/model.js';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { quietTelemetry } from '../../../functions/adapters/powertools.js';
import { systemClock } from '../../../functions/adapters/wiring.js';
import type { Ledger, ReplicaStore } from '../../../functions/core/ports.js';
import { createReplicateHandler } from '../../../functions/handlers/replicate-handler.js';
import { lambdaContext } from '../../support/api-events.js';
import { RecordingMetrics } from '../../support/domain.js';
import { fifoRecord, sqsEvent } from '../../support/sqs-events.js';

const SHA = 'c'.repeat(64);

function version(path: string, n: number): FileVersion {
  return {
    path,
    version: n,
    sha256: SHA,
    size: 5,
    contentType: 'image/jpeg',
    deleted: false,
    committedAt: new Date().toISOString(),
    uploadId: `upload-${path}-${n}`,
  };
}

const messageOf = (v: FileVersion): ReplicationMessage => ({
  targetId: 'alpha',
  path: v.path,
  version: v.version,
  sha256: v.sha256,
  size: v.size,
  contentType: v.contentType,
  deleted: v.deleted,
  committedAt: v.committedAt,
});

/** The record of `path` v`n`, grouped by path as the fan-out sends it. */
const record = (path: string, n: number) =>
  fifoRecord(messageOf(version(path, n)), path, { messageId: `${path}#${n}` });

type Copy = (message: ReplicationMessage) => Promise<void>;

/**
 * A ledger that holds `heads` (path → head version, or no head: each message's own version is
 * found by getVersion) and a replica whose copies run `copy` first. Every call is logged.
 */
function world(options: { heads?: Record<string, number>; copy?: Copy } = {}) {
  const calls: string[] = [];
  const states = new Map<string, TargetState>();
  const reads = { inFlight: 0, max: 0 };
  /** A read that answers on a later turn, counting how many are outstanding at once. */
  const read = async <T>(answer: () => T): Promise<T> => {
    reads.inFlight++;
    reads.max = Math.max(reads.max, reads.inFlight);
    await new Promise((r) => setTimeout(r, 5));
    reads.inFlight--;
    return answer();
  };
  const ledger = {
    getHead: async (path: string) => {
      calls.push(`getHead ${path}`);
      return read(() => {
        const head = options.heads?.[path];
        return head === undefined ? undefined : version(path, head);
      });
    },
    getVersion: async (path: string, n: number) => {
      calls.push(`getVersion ${path} ${n}`);
      return version(path, n);
    },
    getTargetState: async (path: string) => {
      calls.push(`getTargetState ${path}`);
      return read(() => states.get(path));
    },
    getBlob: async (sha256: string) => {
      calls.push('getBlob');
      return read(() => ({
        sha256,
        size: 5,
        verifiedAt: new Date().toISOString(),
        etag: '"e"',
        versionId: 'v-verified',
      }));
    },
    recordTargetState: async (state: TargetState) => {
      calls.push(`recordTargetState ${state.path} ${state.appliedVersion}`);
      const held = states.get(state.path);
      if (held && held.appliedVersion >= state.appliedVersion) return false;
      states.set(state.path, state);
      return true;
    },
    recordTargetFailure: async (failure: { path: string; version: number }) => {
      calls.push(`recordTargetFailure ${failure.path} ${failure.version}`);
    },
  } as unknown as Ledger;
  const copied: string[] = [];
  const replica = {
    copyFromOrigin: async (message: ReplicationMessage & { sourceVersionId?: string | undefined }) => {
      calls.push(`copy ${message.path} ${message.version} from ${message.sourceVersionId}`);
      await options.copy?.(message);
      copied.push(`${message.path} ${message.version}`);
      return { storedSha256: undefined, etag: '"replica"' };
    },
  } as unknown as ReplicaStore;
  const handler = createReplicateHandler({
    target: { id: 'alpha', kind: 's3' },
    ledger,
    replica,
    clock: systemClock,
    telemetry: quietTelemetry(new RecordingMetrics()),
  });
  return { handler, calls, copied, states, reads };
}

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
