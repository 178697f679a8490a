/** The local EventBridge schedules and the start-up re-notification of pending uploads. */
import { describe, expect, it } from 'vitest';
import { renotifyPendingUploads } from '../../../local/convergence.ts';
import type { S3ObjectCreated } from '../../../local/emulators.ts';
import { LocalScheduler, scheduledEvent } from '../../../local/scheduler.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fakeFunction(name: string, behaviour: (event: unknown) => Promise<unknown> = async () => 'ok') {
  const events: unknown[] = [];
  let running = 0;
  let maxRunning = 0;
  return {
    events,
    get maxRunning() {
      return maxRunning;
    },
    fn: {
      name,
      async invoke(event: unknown) {
        events.push(event);
        running++;
        maxRunning = Math.max(maxRunning, running);
        try {
          return await behaviour(event);
        } finally {
          running--;
        }
      },
    },
  };
}

describe('LocalScheduler', () => {
  it('runs a rule every interval with an EventBridge scheduled event, and once at start when asked', async () => {
    const errors: string[] = [];
    const scheduler = new LocalScheduler({ region: 'eu-west-1', onError: (e) => errors.push(e.message) });
    const lag = fakeFunction('lag-monitor');
    const reconcile = fakeFunction('reconcile');
    scheduler.add({ name: 'lag', fn: lag.fn, everySeconds: 0.05 });
    scheduler.add({ name: 'reconcile', fn: reconcile.fn, everySeconds: 0, atStart: true });
    scheduler.start();
    await sleep(230);
    await scheduler.stop();
    expect(lag.events.length).toBeGreaterThanOrEqual(3);
    expect(lag.events.length).toBeLessThanOrEqual(5);
    expect(reconcile.events).toHaveLength(1);
    expect(lag.events[0]).toMatchObject({
      version: '0',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      region: 'eu-west-1',
      resources: ['arn:aws:events:eu-west-1:000000000000:rule/lag'],
      detail: {},
    });
    expect(scheduler.stats().reconcile).toMatchObject({ runs: 1, failures: 0, lastResult: 'ok' });
    expect(errors).toEqual([]);
    // Stopped: no more runs.
    const after = lag.events.length;
    await sleep(120);
    expect(lag.events.length).toBe(after);
  });

  it('a run still going when the next is due is not overlapped; that tick is skipped', async () => {
    const scheduler = new LocalScheduler({ region: 'us-east-1', onError: () => undefined });
    const slow = fakeFunction('slow', () => sleep(120));
    scheduler.add({ name: 'slow', fn: slow.fn, everySeconds: 0.03 });
    scheduler.start();
    await sleep(300);
    await scheduler.stop();
    expect(slow.maxRunning).toBe(1);
    expect(scheduler.stats().slow?.skipped).toBeGreaterThan(0);
  });

  it('run() invokes now with a given event, waits for a run in progress, and reports failures', async () => {
    const errors: string[] = [];
    const scheduler = new LocalScheduler({ region: 'us-east-1', onError: (e) => errors.push(e.message) });
    let fail = false;
    const fn = fakeFunction('reconcile', async (event) => {
      await sleep(20);
      if (fail) throw new Error('Task timed out after 1 seconds');
      return { echoed: event };
    });
    scheduler.add({ name: 'reconcile', fn: fn.fn, everySeconds: 0 });
    scheduler.start();
    const [a, b] = await Promise.all([
      scheduler.run('reconcile', { targetIds: ['x'] }),
      scheduler.run('reconcile', { dryRun: true }),
    ]);
    expect(a).toEqual({ echoed: { targetIds: ['x'] } });
    expect(b).toEqual({ echoed: { dryRun: true } });
    expect(fn.maxRunning).toBe(1);
    fail = true;
    await expect(scheduler.run('reconcile')).rejects.toThrow(/timed out/);
    expect(errors).toEqual(['schedule reconcile: Task timed out after 1 seconds']);
    expect(scheduler.stats().reconcile).toMatchObject({ runs: 3, failures: 1 });
    await expect(scheduler.run('nope')).rejects.toThrow(/no schedule nope/);
    await scheduler.stop();
    await expect(scheduler.run('reconcile')).rejects.toThrow(/stopped/);
  });

  it('stop waits for a run in progress up to its grace, not for as long as the run takes', async () => {
    const scheduler = new LocalScheduler({ region: 'eu-west-1', onError: () => undefined, stopGraceMs: 100 });
    let finish: () => void = () => undefined;
    const long = fakeFunction('reconcile', () => new Promise<void>((resolve) => (finish = resolve)));
    scheduler.add({ name: 'reconcile', fn: long.fn, everySeconds: 0 });
    scheduler.start();
    const run = scheduler.run('reconcile').catch(() => undefined);
    await sleep(10);
    const started = Date.now();
    await scheduler.stop();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    finish();
    await run;
    // A quick run is waited for: stop returns once it ends, before the grace.
    const quick = new LocalScheduler({ region: 'eu-west-1', onError: () => undefined, stopGraceMs: 5000 });
    const short = fakeFunction('lag', () => sleep(50));
    quick.add({ name: 'lag', fn: short.fn, everySeconds: 0 });
    quick.start();
    const quickRun = quick.run('lag');
    const t0 = Date.now();
    await quick.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    await quickRun;
  });

  it('scheduledEvent has EventBridge time without milliseconds', () => {
    const event = scheduledEvent('r', 'us-east-1', new Date('2026-03-04T05:06:07.890Z'));
    expect(event.time).toBe('2026-03-04T05:06:07Z');
    expect(event.account).toBe('000000000000');
  });
});

describe('renotifyPendingUploads', () => {
  it('re-sends one notification per stored version of a pending blob, naming it; none for absent ones', async () => {
    const stored: Record<string, { size: number; eTag: string; versionId: string }[]> = {
      [`blobs/${'a'.repeat(64)}`]: [
        { size: 10, eTag: 'etag-a', versionId: 'v2' },
        { size: 10, eTag: 'etag-a', versionId: 'v1' },
      ],
    };
    const sent: S3ObjectCreated[] = [];
    const report = await renotifyPendingUploads({
      bucket: 'mirror-origin',
      async *pendingUploads() {
        yield { sha256: 'a'.repeat(64), uploadId: 'u1' };
        yield { sha256: 'a'.repeat(64), uploadId: 'u2' };
        yield { sha256: 'b'.repeat(64), uploadId: 'u3' };
      },
      versions: async (key) => stored[key] ?? [],
      notify: (e) => sent.push(e),
    });
    expect(report).toEqual({ waiting: 2, renotified: 1 });
    expect(sent).toEqual([
      expect.objectContaining({
        eventName: 'ObjectCreated:Put',
        bucket: 'mirror-origin',
        key: `blobs/${'a'.repeat(64)}`,
        size: 10,
        eTag: 'etag-a',
        versionId: 'v2',
      }),
      expect.objectContaining({ key: `blobs/${'a'.repeat(64)}`, versionId: 'v1' }),
    ]);
  });

  it('stops when aborted', async () => {
    const abort = new AbortController();
    abort.abort();
    const report = await renotifyPendingUploads({
      bucket: 'b',
      async *pendingUploads() {
        yield { sha256: 'a'.repeat(64), uploadId: 'u1' };
      },
      versions: async () => [{ size: 1, eTag: 'e' }],
      notify: () => {
        throw new Error('must not notify');
      },
      signal: abort.signal,
    });
    expect(report).toEqual({ waiting: 0, renotified: 0 });
  });
});
