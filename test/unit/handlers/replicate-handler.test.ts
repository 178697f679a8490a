/**
 * The replicate handler applies a FIFO batch's paths side by side: each path (message group) in
 * order, a failure returns the rest of its own group only, other paths go on, and what failed is
 * named in `batchItemFailures`. Driven with SQS FIFO events against an in-memory ledger and
 * replica that log every call.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { SQSBatchResponse } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CopyCheckpoint } from '../../../functions/core/ports.js';
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

  it("a storage error is recorded by its name and status, not its text: the row is every API reader's, the text names account, role and bucket (probe leak, L3)", async () => {
    const denied = Object.assign(
      new Error(
        'User: arn:aws:sts::123456789012:assumed-role/mirror-replicate/fn is not authorized to perform: s3:PutObject on resource: "arn:aws:s3:::mediamirror-eu-123456789012/a.jpg"',
      ),
      { name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 } },
    );
    const network = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:443'), { code: 'ECONNREFUSED' });
    const { handler, failures } = world({
      copy: async (m) => {
        throw m.path === 'a.jpg' ? denied : network;
      },
    });
    await handler(sqsEvent([record('a.jpg', 1), record('b.jpg', 1)]), lambdaContext());
    const reasons = Object.fromEntries(failures.map((f) => [f.path, f.reason]));
    expect(reasons['a.jpg']).toMatch(/^AccessDenied \(HTTP 403\)/);
    expect(reasons['b.jpg']).toMatch(/^Error \(ECONNREFUSED\)/);
    for (const reason of Object.values(reasons)) {
      expect(reason).not.toMatch(/123456789012|arn:|10\.1\.2\.3/);
      expect(reason).toContain("replicate function's log");
    }
  });

  it('a body that is not a replication message fails its record and says so in the log (on its way to the DLQ)', async () => {
    const logged = vi.spyOn(Logger.prototype, 'error');
    const { handler, copied } = world();
    const bad = { ...record('bad.jpg', 1), body: JSON.stringify({ path: 'bad.jpg' }) };
    const response = await handler(sqsEvent([bad, record('ok.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual(['bad.jpg#1']);
    expect(copied).toEqual(['ok.jpg 1']);
    expect(logged).toHaveBeenCalledWith(
      expect.stringMatching(/not a replication message/),
      expect.objectContaining({ messageId: 'bad.jpg#1' }),
    );
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
      'readForReplication a.jpg with blob',
      'copy a.jpg 3 from v-verified',
      'recordTargetState a.jpg 3',
    ]);
  });

  it('a later batch reads the target row again (what one batch knows is not kept across batches)', async () => {
    const { handler, calls } = world({ heads: { 'a.jpg': 1 } });
    await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    calls.length = 0;
    await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(calls).toEqual(['readForReplication a.jpg with blob']);
  });

  it("reads the path's head, the target row and the message's blob in one ledger read", async () => {
    const { handler, reads, calls } = world({ heads: { 'a.jpg': 1 } });
    const response = await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual([]);
    expect(reads.max).toBe(1);
    expect(calls).toEqual([
      'readForReplication a.jpg with blob',
      'copy a.jpg 1 from v-verified',
      'recordTargetState a.jpg 1',
    ]);
  });

  it("a message behind the head copies the head's bytes from their own verified version, not from the version of the message's bytes", async () => {
    // v1's message arrives after v2 (other bytes) was committed: the head is applied, and its copy
    // names the object version the ingest verified for the head's content.
    const head = 'd'.repeat(64);
    const { handler, calls } = world({ heads: { 'a.jpg': 2 }, headSha256: { 'a.jpg': head } });
    const response = await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual([]);
    expect(calls).toEqual([
      'readForReplication a.jpg with blob',
      'getBlob',
      `copy a.jpg 2 from v-verified-${head.slice(0, 8)}`,
      'recordTargetState a.jpg 2',
    ]);
  });

  it("a replica that reports storing other bytes than the ledger's is not recorded: the record fails and the failure is on the row", async () => {
    const { handler, states, failures } = world({
      heads: { 'a.jpg': 1 },
      storedSha256: () => 'e'.repeat(64),
    });
    const response = await handler(sqsEvent([record('a.jpg', 1)]), lambdaContext());
    expect(failedIds(response)).toEqual(['a.jpg#1']);
    expect(states.has('a.jpg')).toBe(false);
    expect(failures).toEqual([expect.objectContaining({ path: 'a.jpg', version: 1 })]);

    const right = world({ heads: { 'a.jpg': 1 }, storedSha256: (m) => m.sha256 ?? undefined });
    expect(failedIds(await right.handler(sqsEvent([record('a.jpg', 1)]), lambdaContext()))).toEqual([]);
    expect(right.states.get('a.jpg')).toMatchObject({ appliedVersion: 1, status: 'verified' });
  });

  it('a message for a path this target does not take is refused: nothing copied, no row written', async () => {
    const { handler, calls, copied, states } = world({
      target: { id: 'alpha', kind: 's3', pathPrefix: 'public/' },
      heads: { 'private/a.jpg': 1, 'public/b.jpg': 1 },
    });
    const response = await handler(
      sqsEvent([record('private/a.jpg', 1), record('public/b.jpg', 1)]),
      lambdaContext(),
    );
    expect(failedIds(response)).toEqual([]);
    expect(copied).toEqual(['public/b.jpg 1']);
    expect([...states.keys()]).toEqual(['public/b.jpg']);
    expect(calls.filter((c) => c.includes('private/'))).toEqual([]);
  });
});

/** Rejects when `signal` aborts (as the SDK does with an abortSignal), else resolves after `ms`. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    });
  });
}

describe('replicate handler: the invocation near its deadline', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A context whose remaining time runs down with the (fake) clock, from `ms`. */
  function contextOf(ms: number) {
    const endsAt = Date.now() + ms;
    return { ...lambdaContext('replicate'), getRemainingTimeInMillis: () => endsAt - Date.now() };
  }

  /** Runs the handler on fake time, stepping the clock until it answers; when it answered. */
  async function runOnFakeTime(run: () => Promise<SQSBatchResponse>) {
    const started = Date.now();
    let answer: SQSBatchResponse | undefined;
    const done = run().then((r) => {
      answer = r;
    });
    for (let step = 0; answer === undefined && step < 10_000; step++) await vi.advanceTimersByTimeAsync(100);
    await done;
    return { response: answer as SQSBatchResponse, tookMs: Date.now() - started };
  }

  it('returns only the records it did not finish: a slow copy is aborted, the rest of its path not started', async () => {
    vi.useFakeTimers();
    const signals: Record<string, AbortSignal | undefined> = {};
    const { handler, copied, calls, metrics, released } = world({
      // 60 s left: nothing starts and copies in flight are aborted 10 s before the end, with 5 s to settle.
      deadline: { stopBeforeMs: 10_000, graceMs: 5_000 },
      copy: async (m, signal) => {
        signals[`${m.path} ${m.version}`] = signal;
        const ms = { 'a.jpg': 300_000, 'b.jpg': 1_000, 'c.jpg': 30_000 }[m.path] ?? 0;
        await sleep(ms, signal);
      },
    });
    const batch = [
      record('a.jpg', 1),
      record('b.jpg', 1),
      record('c.jpg', 1),
      record('a.jpg', 2),
      record('c.jpg', 2),
    ];
    const { response, tookMs } = await runOnFakeTime(() => handler(sqsEvent(batch), contextOf(60_000)));
    // b v1 (1 s) and c v1 (30 s) were applied and are not returned; a v1 was aborted at 50 s and
    // a v2 never started; c v2 started at 30 s and was aborted.
    expect(failedIds(response).sort()).toEqual(['a.jpg#1', 'a.jpg#2', 'c.jpg#2']);
    expect(copied.sort()).toEqual(['b.jpg 1', 'c.jpg 1']);
    expect(calls.filter((c) => c.startsWith('recordTargetState'))).toEqual([
      'recordTargetState b.jpg 1',
      'recordTargetState c.jpg 1',
    ]);
    expect(calls.filter((c) => c.startsWith('copy a.jpg'))).toEqual(['copy a.jpg 1 from v-verified']);
    expect(signals['a.jpg 1']?.aborted).toBe(true);
    // Deferred, not failed: no failure on the target rows, and the invocation answered in time.
    expect(calls.filter((c) => c.startsWith('recordTargetFailure'))).toEqual([]);
    expect(metrics.total('ReplicationsDeferred')).toBe(2);
    // Handed back to the queue at once, not left for the visibility timeout.
    const receiptOf = (id: string) => batch.find((r) => r.messageId === id)?.receiptHandle;
    expect(released.sort()).toEqual(['a.jpg#1', 'a.jpg#2', 'c.jpg#2'].map(receiptOf).sort());
    expect(tookMs).toBeGreaterThanOrEqual(50_000);
    expect(tookMs).toBeLessThan(60_000);
  });

  it('work that ignores its signal is reported unfinished once the grace has passed, before the invocation ends', async () => {
    vi.useFakeTimers();
    const { handler, copied, released } = world({
      deadline: { stopBeforeMs: 10_000, graceMs: 4_000 },
      copy: async (m) => {
        if (m.path === 'stuck.jpg') await sleep(600_000);
      },
    });
    const { response, tookMs } = await runOnFakeTime(() =>
      handler(sqsEvent([record('stuck.jpg', 1), record('ok.jpg', 1)]), contextOf(30_000)),
    );
    expect(failedIds(response)).toEqual(['stuck.jpg#1']);
    expect(copied).toEqual(['ok.jpg 1']);
    // Still running: not handed back at once, so no other invocation takes its path while it may
    // still write (it waits out the visibility timeout, six times the function's).
    expect(released).toEqual([]);
    // The stop at 20 s, plus the 4 s grace.
    expect(tookMs).toBeGreaterThanOrEqual(24_000);
    expect(tookMs).toBeLessThan(25_000);
  });

  it('an invocation already past its stop starts nothing and returns every record', async () => {
    const { handler, calls } = world({ deadline: { stopBeforeMs: 40_000 } });
    const response = await handler(sqsEvent([record('a.jpg', 1), record('b.jpg', 1)]), lambdaContext());
    expect(failedIds(response).sort()).toEqual(['a.jpg#1', 'b.jpg#1']);
    expect(calls).toEqual([]);
  });

  it('by default stops a quarter of a short invocation before its end', async () => {
    vi.useFakeTimers();
    const { handler } = world({ copy: (m, signal) => sleep(m.path === 'slow.jpg' ? 60_000 : 10, signal) });
    const { response, tookMs } = await runOnFakeTime(() =>
      handler(sqsEvent([record('slow.jpg', 1), record('fast.jpg', 1)]), contextOf(20_000)),
    );
    expect(failedIds(response)).toEqual(['slow.jpg#1']);
    // Stops at 15 s (a quarter of 20 s left); the aborted copy settles at once.
    expect(tookMs).toBeGreaterThanOrEqual(15_000);
    expect(tookMs).toBeLessThan(16_000);
  });

  it('a large copy the deadline stopped is kept in the ledger for its path and continued by the next delivery, not started over', async () => {
    vi.useFakeTimers();
    // Stands in for S3 (the parts each kept upload holds) and for the replica store's use of the
    // checkpoint the core hands it (functions/adapters/s3.ts; test/unit/adapters/replica-copy.test.ts).
    const held = new Map<string, Set<number>>();
    const partsCopied: number[] = [];
    let created = 0;
    const keptOrNew = async (m: { version: number; sha256: string | null }, checkpoint: CopyCheckpoint) => {
      const kept = await checkpoint.load();
      if (kept?.version === m.version) return kept.uploadId;
      const uploadId = `mp-${++created}`;
      const now = new Date().toISOString();
      await checkpoint.save({
        uploadId,
        version: m.version,
        sha256: String(m.sha256),
        partBytes: 1,
        startedAt: now,
        expiresAt: now,
      });
      return uploadId;
    };
    const { handler, copyUploads, calls, released } = world({
      deadline: { stopBeforeMs: 10_000, graceMs: 1_000 },
      copy: async (m, signal, checkpoint) => {
        if (!checkpoint) throw new Error('the core handed the replica no checkpoint');
        const uploadId = await keptOrNew(m, checkpoint);
        const done = held.get(uploadId) ?? new Set<number>();
        held.set(uploadId, done);
        for (const part of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].filter((p) => !done.has(p))) {
          await sleep(10_000, signal);
          done.add(part);
          partsCopied.push(part);
        }
        await checkpoint.clear(uploadId);
      },
    });
    // 60.5 s left, stop 10 s before the end: 5 parts of 10 s each (and a few reads), then the deadline.
    const first = await runOnFakeTime(() => handler(sqsEvent([record('big.mov', 1)]), contextOf(60_500)));
    expect(failedIds(first.response)).toEqual(['big.mov#1']);
    expect(released).toHaveLength(1);
    expect(partsCopied).toEqual([1, 2, 3, 4, 5]);
    expect(copyUploads.get('alpha big.mov')).toMatchObject({ uploadId: 'mp-1', version: 1 });
    expect(calls.filter((c) => c.startsWith('recordTarget'))).toEqual([]);

    const second = await runOnFakeTime(() => handler(sqsEvent([record('big.mov', 1)]), contextOf(60_500)));
    expect(failedIds(second.response)).toEqual([]);
    expect(partsCopied).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(created).toBe(1);
    expect(copyUploads.size).toBe(0);
    expect(calls.filter((c) => c.startsWith('recordTarget'))).toEqual(['recordTargetState big.mov 1']);
    // 5 parts of 10 s: the second delivery took half a whole copy's time.
    expect(second.tookMs).toBeGreaterThanOrEqual(50_000);
    expect(second.tookMs).toBeLessThan(51_000);
  });
});

describe('replicate handler: a replica never goes backwards', () => {
  it('an older copy that lands after a newer version was recorded is overwritten by the newer one again', async () => {
    const heads: Record<string, number> = { 'a.jpg': 1 };
    /** The version whose bytes the replica object holds: the last copy that landed. */
    const object = new Map<string, number>();
    const stuck = deferred();
    let first = true;
    const { handler, states, released, metrics, calls } = world({
      heads,
      deadline: { stopBeforeMs: 300, graceMs: 50 },
      copy: async (m, signal) => {
        // As the SDK does: a call started on an aborted signal is refused at once...
        signal?.throwIfAborted();
        // ...but the first copy (v1) was accepted: S3 completes it whatever the client does.
        if (first) {
          first = false;
          await stuck.promise;
        }
        object.set(m.path, m.version);
      },
    });
    const context = (ms: number) => {
      const endsAt = Date.now() + ms;
      return { ...lambdaContext('replicate'), getRemainingTimeInMillis: () => endsAt - Date.now() };
    };
    const r1 = await handler(sqsEvent([record('a.jpg', 1)]), context(500));
    expect(failedIds(r1)).toEqual(['a.jpg#1']);
    expect(released).toEqual([]);
    // v2 is committed and applied by another invocation (the visibility timeout ran out, say).
    heads['a.jpg'] = 2;
    const r2 = await handler(sqsEvent([record('a.jpg', 1), record('a.jpg', 2)]), context(10_000));
    expect(r2.batchItemFailures).toEqual([]);
    expect(object.get('a.jpg')).toBe(2);
    const replicated = metrics.total('FilesReplicated');
    // Now the orphaned v1 copy lands: its row update is refused, so it puts the head back.
    stuck.resolve();
    const copiesOf2 = () => calls.filter((c) => c.startsWith('copy a.jpg 2')).length;
    for (let i = 0; i < 200 && (object.get('a.jpg') !== 2 || copiesOf2() < 2); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(copiesOf2()).toBe(2);
    expect(states.get('a.jpg')?.appliedVersion).toBe(2);
    expect(object.get('a.jpg')).toBe(2);
    expect(metrics.total('FilesReplicated')).toBe(replicated);
  });

  it('a copy request in flight at the stop is let finish: not handed back at once, the replica not left older than its row', async () => {
    const heads: Record<string, number> = { 'a.jpg': 1 };
    const object = new Map<string, number>();
    const { handler, states, released } = world({
      heads,
      deadline: { stopBeforeMs: 300, graceMs: 50 },
      copy: (m, signal) =>
        new Promise<void>((resolve) => {
          signal?.throwIfAborted();
          if (m.version === 1) {
            // The request has reached S3, which lands it 400 ms later; the store waits for that
            // answer (functions/adapters/s3.ts never abandons a sent copy on the deadline).
            setTimeout(() => {
              object.set(m.path, 1);
              resolve();
            }, 400);
            return;
          }
          object.set(m.path, m.version);
          resolve();
        }),
    });
    const context = (ms: number) => {
      const endsAt = Date.now() + ms;
      return { ...lambdaContext('replicate'), getRemainingTimeInMillis: () => endsAt - Date.now() };
    };
    const r1 = await handler(sqsEvent([record('a.jpg', 1)]), context(500));
    expect(r1.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(['a.jpg#1']);
    const handedBack = released.length;
    heads['a.jpg'] = 2;
    const r2 = await handler(sqsEvent([record('a.jpg', 1), record('a.jpg', 2)]), context(10_000));
    expect(r2.batchItemFailures).toEqual([]);
    await new Promise((r) => setTimeout(r, 600));
    expect(states.get('a.jpg')?.appliedVersion).toBe(2);
    expect({ handedBack, replicaHolds: object.get('a.jpg') }).toEqual({ handedBack: 0, replicaHolds: 2 });
  });
});

describe('replicate handler: what goes back to the queue at once', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a path stopped by the deadline is handed back; a path that failed waits out its visibility timeout', async () => {
    vi.useFakeTimers();
    const { handler, released, calls } = world({
      deadline: { stopBeforeMs: 10_000, graceMs: 1_000 },
      copy: async (m, signal) => {
        if (m.path === 'bad.jpg') throw new Error('copy refused by the target');
        await sleep(600_000, signal);
      },
    });
    const batch = [record('bad.jpg', 1), record('slow.jpg', 1), record('bad.jpg', 2), record('slow.jpg', 2)];
    const started = Date.now();
    const endsAt = started + 30_000;
    const done = handler(sqsEvent(batch), {
      ...lambdaContext(),
      getRemainingTimeInMillis: () => endsAt - Date.now(),
    });
    await vi.advanceTimersByTimeAsync(25_000);
    const response = await done;
    expect(failedIds(response).sort()).toEqual(['bad.jpg#1', 'bad.jpg#2', 'slow.jpg#1', 'slow.jpg#2']);
    const receiptOf = (id: string) => batch.find((r) => r.messageId === id)?.receiptHandle;
    expect(released.sort()).toEqual(['slow.jpg#1', 'slow.jpg#2'].map(receiptOf).sort());
    expect(calls).toContain('recordTargetFailure bad.jpg 1');
    expect(calls).not.toContain('recordTargetFailure slow.jpg 1');
  });
});
