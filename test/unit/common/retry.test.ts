import { describe, expect, it, vi } from 'vitest';
import { backoffMs, pause, retry, sleep } from '../../../common/retry.ts';

describe('sleep and pause', () => {
  it('sleep resolves after the time, and rejects with the reason as soon as the signal aborts', async () => {
    vi.useFakeTimers();
    try {
      let done = false;
      const slept = sleep(1000).then(() => {
        done = true;
      });
      await vi.advanceTimersByTimeAsync(999);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await slept;
      expect(done).toBe(true);

      const controller = new AbortController();
      const aborted = sleep(60_000, controller.signal);
      controller.abort(new Error('shutting down'));
      await expect(aborted).rejects.toThrow('shutting down');
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('sleep on an aborted signal rejects at once; without a reason it is an AbortError', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(sleep(60_000, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('pause resolves (does not reject) when the signal aborts', async () => {
    const controller = new AbortController();
    const paused = pause(60_000, controller.signal);
    controller.abort(new Error('x'));
    await expect(paused).resolves.toBeUndefined();
  });
});

describe('backoffMs', () => {
  const top = () => 0.999_999;
  it('doubles from the base up to the cap (the ceiling, with random near 1)', () => {
    expect([0, 1, 2, 3, 10, 50, 5000].map((a) => backoffMs(a, 1000, 60_000, top))).toEqual([
      1000, 2000, 4000, 8000, 60_000, 60_000, 60_000,
    ]);
  });

  it('full jitter draws from [0, ceiling); equal jitter from [ceiling/2, ceiling)', () => {
    expect(backoffMs(3, 1000, 60_000, () => 0)).toBe(0);
    expect(backoffMs(3, 1000, 60_000, () => 0.5)).toBe(4000);
    expect(backoffMs(3, 1000, 60_000, () => 0, 'equal')).toBe(4000);
    expect(backoffMs(3, 1000, 60_000, () => 0.5, 'equal')).toBe(6000);
    expect(backoffMs(3, 1000, 60_000, top, 'equal')).toBe(8000);
  });

  it('a negative attempt counts as the first', () => {
    expect(backoffMs(-3, 100, 1000, top)).toBe(100);
  });
});

describe('retry', () => {
  const noWait = { sleep: async () => undefined };

  it('returns the first success, passing the attempt number', async () => {
    const seen: number[] = [];
    const result = await retry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 2) throw new Error(`fail ${attempt}`);
        return 'ok';
      },
      { attempts: 5, ...noWait },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([0, 1, 2]);
  });

  it('throws the last error after `attempts` tries, waiting the backoff between them', async () => {
    const waits: number[] = [];
    const fn = vi.fn(async (attempt: number) => {
      throw new Error(`fail ${attempt}`);
    });
    await expect(
      retry(fn, {
        attempts: 3,
        baseMs: 100,
        capMs: 1000,
        random: () => 0.5,
        sleep: async (ms) => {
          waits.push(ms);
        },
      }),
    ).rejects.toThrow('fail 2');
    expect(fn).toHaveBeenCalledTimes(3);
    expect(waits).toEqual([50, 100]);
  });

  it('stops at once on an error that is not retryable', async () => {
    const fn = vi.fn(async () => {
      throw new TypeError('bad input');
    });
    await expect(
      retry(fn, { attempts: 5, retryable: (e) => !(e instanceof TypeError), ...noWait }),
    ).rejects.toThrow('bad input');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('waits at least what the error asks for (Retry-After)', async () => {
    const waits: number[] = [];
    await retry(
      async (attempt) => {
        if (attempt === 0) throw Object.assign(new Error('slow down'), { retryAfterMs: 7000 });
      },
      {
        attempts: 2,
        baseMs: 10,
        minDelayMs: (e) => (e as { retryAfterMs?: number }).retryAfterMs,
        onRetry: (_e, _a, ms) => waits.push(ms),
        ...noWait,
      },
    );
    expect(waits).toEqual([7000]);
  });

  it('an abort during the wait rejects with its reason and starts no new try', async () => {
    const controller = new AbortController();
    const fn = vi.fn(async () => {
      controller.abort(new Error('cancelled'));
      throw new Error('fail');
    });
    await expect(retry(fn, { attempts: 5, baseMs: 10, signal: controller.signal })).rejects.toThrow(
      'cancelled',
    );
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('refuses attempts below 1', async () => {
    await expect(retry(async () => 1, { attempts: 0 })).rejects.toThrow(RangeError);
  });
});
