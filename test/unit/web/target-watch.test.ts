/**
 * The upload page follows each committed file until every target holds it
 * (web/page/target-watch.ts): its reads are paced on time passed, so a wall clock stepped back
 * (NTP, a user setting it, a VM resumed) does not leave a file shown "pending" at its targets.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TargetWatch } from '../../../web/page/target-watch.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe("the page's target reads", () => {
  it('go on every second when the wall clock steps 2 hours back (probe skew)', async () => {
    // Only Date is faked: the page's timers run as they do.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.parse('2026-12-02T07:00:00Z') });
    const reads: number[] = [];
    const item = {
      async checkTargets(version: number) {
        reads.push(version);
        if (reads.length === 1) vi.setSystemTime(Date.now() - 2 * 3600_000);
        return reads.length >= 2;
      },
    };
    const watch = new TargetWatch<typeof item>();
    watch.add(item, 7);
    for (let waited = 0; watch.size > 0 && waited < 3000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // The second read, a second after the first; before, it was due in 2 hours.
    expect(reads).toEqual([7, 7]);
    expect(watch.size).toBe(0);
  });
});
