/**
 * A computer's wall clock stepped while an upload runs (NTP correcting it, a user setting it, a
 * VM resumed): how long the client has waited is the time that passed, not the clock's jump.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Upload } from '../../../contracts/api.ts';
import { type FetchLike, MirrorApi } from '../../../web/client/api.ts';
import { waitForVerdict } from '../../../web/client/upload/verify.ts';

const HOUR = 3600_000;

afterEach(() => {
  vi.useRealTimers();
});

/** Only `Date` is faked: timers and `performance.now()` run as they do. */
function wallClock() {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.parse('2026-12-02T07:00:00Z') });
  return { step: (ms: number) => vi.setSystemTime(Date.now() + ms) };
}

const upload = (status: Upload['status']) => ({ status }) as Upload;

describe('a wall clock stepped mid-upload (probe skew)', () => {
  it('the verification wait is not cut short by the clock jumping 2 hours ahead (probe skew)', async () => {
    const clock = wallClock();
    const answers: Upload['status'][] = ['pending', 'pending', 'committed'];
    let polls = 0;
    const api = {
      async getUpload() {
        polls++;
        if (polls === 1) clock.step(2 * HOUR);
        return upload(answers[polls - 1] ?? 'committed');
      },
    } as unknown as MirrorApi;
    const signal = new AbortController().signal;
    const verdict = await waitForVerdict(api, 'u', { pollFirstMs: 1, timeoutMs: 30 * 60_000 }, signal);
    expect(verdict.status).toBe('committed');
    expect(polls).toBe(3);
  });

  it('network errors are retried for their window of time passed, however the clock jumps (probe skew)', async () => {
    const clock = wallClock();
    let calls = 0;
    const fetch: FetchLike = async () => {
      calls++;
      if (calls === 2) clock.step(2 * HOUR);
      if (calls <= 4) throw new TypeError('fetch failed');
      return new Response('{"targets":[]}', { status: 200, headers: { 'content-type': 'application/json' } });
    };
    const api = new MirrorApi({
      baseUrl: 'https://api.test',
      token: 't',
      fetch,
      retries: 1,
      retryWindowMs: 60_000,
      backoff: { baseMs: 1, maxMs: 2 },
    });
    await expect(api.listTargets()).resolves.toEqual({ targets: [] });
    expect(calls).toBe(5);
  });
});
