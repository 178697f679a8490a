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

  it('stop after a while for a file some target never holds: a page left open does not read it for good', async () => {
    // A target that refused the file (failed), or a file deleted since, never holds it: each such
    // file was read every 5 s for as long as the page stayed open, a read an API call (a Lambda
    // invocation) each, up to 16 a second with enough of them.
    const day = 86_400_000;
    let now = 0;
    const clock = {
      now: () => now,
      // A round per macrotask; past a day of the page's time the loop is left waiting.
      sleep: (ms: number) =>
        new Promise<void>((resolve) => {
          now += ms;
          if (now <= day) setImmediate(resolve);
        }),
    };
    const stuck = {
      reads: 0,
      stopped: 0,
      async checkTargets() {
        this.reads++;
        return false;
      },
      stopFollowing() {
        this.stopped++;
      },
    };
    const watch = new TargetWatch<typeof stuck>(clock);
    watch.add(stuck, 3);
    while (watch.size > 0 && now <= day) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(watch.size).toBe(0);
    expect(stuck.stopped).toBe(1);
    // A minute at once a second, then every 5 s up to the half hour: about 400 reads, not 17,000.
    expect(stuck.reads).toBeLessThan(500);
    expect(now).toBeLessThanOrEqual(31 * 60_000);
  });
});
