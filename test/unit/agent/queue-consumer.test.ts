import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { VersionInfo } from '../../../agent/applier.ts';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import type { QueueMessage, QueuePort } from '../../../agent/ports.ts';
import { QueueConsumer, type WorkOutcome } from '../../../agent/queue-consumer.ts';

/** A FIFO queue in memory: hands out what is queued, records deletes and visibility changes. */
class FakeQueue implements QueuePort {
  readonly queued: QueueMessage[] = [];
  readonly deleted: string[] = [];
  readonly visibility: { receiptHandle: string; seconds: number }[] = [];
  failReceives = 0;
  receives = 0;

  push(group: string, body: Record<string, unknown>, receiveCount = 1): void {
    const id = `m${this.queued.length + this.deleted.length + 1}`;
    this.queued.push({
      messageId: id,
      receiptHandle: `rh-${id}`,
      body: JSON.stringify(body),
      receiveCount,
      groupId: group,
    });
  }

  async receive(options: { max: number; signal: AbortSignal }): Promise<QueueMessage[]> {
    this.receives++;
    if (this.failReceives > 0) {
      this.failReceives--;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    }
    const batch = this.queued.splice(0, options.max);
    if (batch.length === 0) await new Promise((r) => setTimeout(r, 5));
    return batch;
  }
  async delete(receiptHandle: string) {
    this.deleted.push(receiptHandle);
  }
  async setVisibility(entries: readonly { receiptHandle: string; seconds: number }[]) {
    this.visibility.push(...entries);
  }
  async backlog() {
    return this.queued.length;
  }
}

const message = (path: string, version: number, extra: Record<string, unknown> = {}) => ({
  targetId: 'onprem-dc1',
  path,
  version,
  sha256: 'a'.repeat(64),
  size: 1,
  contentType: 'text/plain',
  deleted: false,
  committedAt: '2024-01-01T00:00:00.000Z',
  ...extra,
});

function consumer(
  queue: FakeQueue,
  work: (v: VersionInfo) => Promise<WorkOutcome>,
  held = new Map<string, number>(),
) {
  const log = createMemoryLog();
  const gaps: string[] = [];
  const refused: string[] = [];
  const c = new QueueConsumer(
    {
      queue,
      targetId: 'onprem-dc1',
      concurrency: 4,
      visibilityTimeoutSeconds: 30,
      waitTimeSeconds: 0,
      conditions: new Conditions(log),
      log,
      work: (v) => work(v),
      heldVersion: (path) => held.get(path) ?? 0,
      onGap: (path, h, arrived) => gaps.push(`${path}:${h}->${arrived}`),
      onRefused: (code) => refused.push(code),
    },
    new AbortController().signal,
  );
  return { c, log, gaps, refused };
}

async function until(probe: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('queue consumer', () => {
  it('applies one group in order, groups in parallel, deletes what is applied', async () => {
    const queue = new FakeQueue();
    for (let v = 1; v <= 5; v++) queue.push('g-a', message('a', v));
    for (let v = 1; v <= 3; v++) queue.push('g-b', message('b', v));
    const order: string[] = [];
    let running = 0;
    let maxRunningA = 0;
    const { c } = consumer(queue, async (v) => {
      running += v.path === 'a' ? 1 : 0;
      maxRunningA = Math.max(maxRunningA, running);
      await new Promise((r) => setTimeout(r, 3));
      order.push(`${v.path}${v.version}`);
      running -= v.path === 'a' ? 1 : 0;
      return { kind: 'applied', bytes: 1, adopted: false };
    });
    const run = c.run();
    await until(() => queue.deleted.length === 8);
    c.stopReceiving();
    await run;
    await c.drain();
    expect(order.filter((o) => o.startsWith('a'))).toEqual(['a1', 'a2', 'a3', 'a4', 'a5']);
    expect(order.filter((o) => o.startsWith('b'))).toEqual(['b1', 'b2', 'b3']);
    expect(maxRunningA).toBe(1);
  });

  it('releases refused and malformed messages with a backoff that grows with the receive count', async () => {
    const queue = new FakeQueue();
    queue.push('g1', message('bad', 1), 1);
    queue.push('g2', message('bad2', 1), 4);
    queue.push('g3', { nonsense: true });
    queue.push('g4', message('other', 1, { targetId: 'someone-else' }));
    const { c, refused } = consumer(queue, async () => ({
      kind: 'refused',
      code: 'content-mismatch',
      reason: 'bytes differ',
    }));
    const run = c.run();
    await until(() => queue.visibility.length >= 4);
    c.stopReceiving();
    await run;
    await c.drain();
    expect(queue.deleted).toEqual([]);
    const byHandle = Object.fromEntries(queue.visibility.map((v) => [v.receiptHandle, v.seconds]));
    expect(byHandle['rh-m1']).toBeGreaterThanOrEqual(5);
    expect(byHandle['rh-m2']).toBeGreaterThan(byHandle['rh-m1'] as number);
    expect(refused.sort()).toEqual(['malformed-message', 'malformed-message']);
  });

  it('a message whose apply failed (disk, network) is not deleted: released with a backoff, so it is retried and, in the end, parked in the DLQ', async () => {
    const queue = new FakeQueue();
    queue.push('g1', message('a', 1), 1);
    queue.push('g2', message('b', 1), 3);
    const { c } = consumer(queue, async () => ({ kind: 'failed', error: new Error('ENOSPC') }));
    const run = c.run();
    await until(() => queue.visibility.length >= 2);
    c.stopReceiving();
    await run;
    await c.drain();
    expect(queue.deleted).toEqual([]);
    const byHandle = Object.fromEntries(queue.visibility.map((v) => [v.receiptHandle, v.seconds]));
    expect(byHandle['rh-m1']).toBeGreaterThanOrEqual(5);
    expect(byHandle['rh-m2']).toBeGreaterThan(byHandle['rh-m1'] as number);
  });

  it('a message ahead of the local state signals a gap; duplicates and older ones do not', async () => {
    const queue = new FakeQueue();
    queue.push('g', message('p', 3));
    queue.push('h', message('q', 6));
    queue.push('i', message('r', 1));
    const held = new Map([
      ['p', 2],
      ['q', 4],
      ['r', 5],
    ]);
    const { c, gaps } = consumer(queue, async () => ({ kind: 'skipped', heldVersion: 0 }), held);
    const run = c.run();
    await until(() => queue.deleted.length === 3);
    c.stopReceiving();
    await run;
    expect(gaps).toEqual(['q:4->6']);
  });

  it('a receive that fails (network) is logged once as a condition and retried', async () => {
    const queue = new FakeQueue();
    queue.failReceives = 2;
    queue.push('g', message('p', 1));
    const { c, log } = consumer(queue, async () => ({ kind: 'applied', bytes: 1, adopted: false }));
    const run = c.run();
    await until(() => queue.deleted.length === 1, 10_000);
    c.stopReceiving();
    await run;
    const lines = log.entries.filter((e) => e.fields.condition === 'network');
    expect(lines.map((l) => l.level)).toEqual(['error', 'info']);
    expect(lines[1]?.msg).toBe('recovered: network');
  });
  it('waiting for a free slot, again and again, leaves no abort listener behind on the receive signal', async () => {
    const queue = new FakeQueue();
    const signals = new Set<AbortSignal>();
    const receive = queue.receive.bind(queue);
    queue.receive = (options) => {
      signals.add(options.signal);
      return receive(options);
    };
    // Every slot (10) taken at each receive: the consumer waits for one to free 300 times over.
    for (let i = 0; i < 300; i++) queue.push(`g-${i}`, message(`p${i}`, 1));
    const { c } = consumer(queue, async () => {
      await new Promise((r) => setTimeout(r, 1));
      return { kind: 'applied', bytes: 1, adopted: false };
    });
    const run = c.run();
    await until(() => queue.deleted.length === 300, 20_000);
    expect(signals.size).toBe(1);
    const [signal] = [...signals] as [AbortSignal];
    expect(getEventListeners(signal, 'abort').length).toBeLessThanOrEqual(1);
    c.stopReceiving();
    await run;
  });
});
