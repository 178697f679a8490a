/** The feed follower's wait between catch-up rounds (agent/catch-up.ts). */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FeedFollower } from '../../../agent/catch-up.ts';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import type { StateStore } from '../../../agent/state-store.ts';

describe('feed follower', () => {
  it('200 rounds waited out under one stop signal leave no abort listener behind on it', async () => {
    const log = createMemoryLog();
    let rounds = 0;
    const follower = new FeedFollower({
      ledger: { readFeed: async () => [], latestFeedSeq: async () => 0 },
      state: { cursor: [0], recordCursor: async () => undefined } as unknown as StateStore,
      feedShards: 1,
      pageSize: 100,
      // A millisecond between rounds: each round's wait ends on its timer, not on the signal.
      intervalSeconds: 0.001,
      conditions: new Conditions(log),
      log,
      work: async () => ({ kind: 'skipped' }),
      onRound: () => {
        rounds++;
      },
    });
    const stop = new AbortController();
    const run = follower.run(stop.signal, 'start');
    while (rounds < 200) await new Promise((r) => setTimeout(r, 5));
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    await run;
  });

  it('the stop signal still ends the wait between rounds at once', async () => {
    const log = createMemoryLog();
    let rounds = 0;
    const follower = new FeedFollower({
      ledger: { readFeed: async () => [], latestFeedSeq: async () => 0 },
      state: { cursor: [0], recordCursor: async () => undefined } as unknown as StateStore,
      feedShards: 1,
      pageSize: 100,
      intervalSeconds: 3600,
      conditions: new Conditions(log),
      log,
      work: async () => ({ kind: 'skipped' }),
      onRound: () => {
        rounds++;
      },
    });
    const stop = new AbortController();
    const run = follower.run(stop.signal, 'start');
    while (rounds < 1) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    stop.abort();
    await run;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(getEventListeners(stop.signal, 'abort').length).toBe(0);
  });
});
