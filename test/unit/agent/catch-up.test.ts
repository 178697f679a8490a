/** The feed follower's wait between catch-up rounds (agent/catch-up.ts). */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FeedFollower } from '../../../agent/catch-up.ts';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import type { StateStore } from '../../../agent/state-store.ts';

/** A follower over an empty one-shard feed; `rounds()` says how many rounds it has run. */
function emptyFeedFollower(intervalSeconds: number) {
  const log = createMemoryLog();
  let rounds = 0;
  const follower = new FeedFollower({
    ledger: { readFeed: async () => [], latestFeedSeq: async () => 0 },
    state: { cursor: [0], recordCursor: async () => undefined } as unknown as StateStore,
    feedShards: 1,
    pageSize: 100,
    intervalSeconds,
    conditions: new Conditions(log),
    log,
    work: async () => ({ kind: 'skipped', heldVersion: 0 }),
    onRound: () => {
      rounds++;
    },
  });
  return { follower, rounds: () => rounds };
}

async function untilRounds(rounds: () => number, n: number): Promise<void> {
  while (rounds() < n) await new Promise((r) => setTimeout(r, 5));
}

describe('feed follower', () => {
  it('200 rounds waited out under one stop signal leave no abort listener behind on it', async () => {
    // A millisecond between rounds: each wait ends on its timer, not on the signal.
    const { follower, rounds } = emptyFeedFollower(0.001);
    const stop = new AbortController();
    const run = follower.run(stop.signal, 'start');
    await untilRounds(rounds, 200);
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    await run;
  });

  it('the stop signal still ends the wait between rounds at once', async () => {
    const { follower, rounds } = emptyFeedFollower(3600);
    const stop = new AbortController();
    const run = follower.run(stop.signal, 'start');
    await untilRounds(rounds, 1);
    const started = Date.now();
    stop.abort();
    await run;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(getEventListeners(stop.signal, 'abort').length).toBe(0);
  });

  it('a poke still ends the wait between rounds at once', async () => {
    const { follower, rounds } = emptyFeedFollower(3600);
    const stop = new AbortController();
    const run = follower.run(stop.signal, 'start');
    await untilRounds(rounds, 1);
    follower.poke('gap');
    await untilRounds(rounds, 2);
    expect(follower.lastRound?.reason).toBe('gap');
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    await run;
  });
});
