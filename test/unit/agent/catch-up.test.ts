/** The feed follower's wait between catch-up rounds (agent/catch-up.ts). */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FeedFollower } from '../../../agent/catch-up.ts';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import type { WorkOutcome } from '../../../agent/queue-consumer.ts';
import type { StateStore } from '../../../agent/state-store.ts';
import type { Change } from '../../../contracts/model.ts';

/** A follower over an empty one-shard feed; `rounds()` says how many rounds it has run. */
function emptyFeedFollower(intervalSeconds: number) {
  const log = createMemoryLog();
  let rounds = 0;
  const follower = new FeedFollower({
    ledger: { readFeed: async () => [], latestFeedSeq: async () => 0 },
    state: {
      cursor: [0],
      rebuilding: false,
      recordCursor: async () => undefined,
      recordRebuilt: async () => undefined,
    } as unknown as StateStore,
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

/** A one-shard feed of `changes` (seq 1..n) and a follower whose state keeps its cursor in memory. */
function feedFollower(
  paths: readonly [string, number][],
  work: (change: Change) => WorkOutcome | Promise<WorkOutcome>,
  pageSize = 100,
) {
  const log = createMemoryLog();
  const feed: Change[] = paths.map(([path, version], i) => ({
    path,
    version,
    sha256: 'a'.repeat(64),
    size: 1,
    contentType: 'text/plain',
    deleted: false,
    committedAt: '2026-12-01T00:00:00.000Z',
    shard: 0,
    seq: i + 1,
    appendedAt: `2026-12-01T00:00:0${i}.000Z`,
  }));
  const state = {
    cursor: [0] as number[],
    marks: [null] as (string | null)[],
    async recordCursor(next: number[], marks: (string | null)[]) {
      state.cursor = [...next];
      state.marks = [...marks];
    },
    cursorMark: (shard: number) => state.marks[shard] ?? null,
    async resetCursor(shard: number) {
      state.cursor[shard] = 0;
      state.marks[shard] = null;
    },
    rebuilding: false,
    async recordRebuilt() {
      state.rebuilding = false;
    },
  };
  const worked: string[] = [];
  const follower = new FeedFollower({
    ledger: {
      readFeed: async (_shard, after, limit) => feed.filter((c) => c.seq > after).slice(0, limit),
      latestFeedSeq: async () => feed.length,
    },
    state: state as unknown as StateStore,
    feedShards: 1,
    pageSize,
    intervalSeconds: 3600,
    conditions: new Conditions(log),
    log,
    work: async (v) => {
      worked.push(`${v.path}@${v.version}`);
      return work(v as Change);
    },
  });
  return { follower, state, worked };
}

describe('feed follower: the cursor never passes what was not settled', () => {
  it('a change whose apply failed stops the cursor before it; the next round applies it and moves on', async () => {
    let failB = true;
    const { follower, state, worked } = feedFollower(
      [
        ['a', 1],
        ['b', 1],
        ['c', 1],
      ],
      (change) =>
        change.path === 'b' && failB
          ? { kind: 'failed', error: new Error('disk full') }
          : { kind: 'applied', bytes: 1, adopted: false },
    );
    const first = await follower.round('start', new AbortController().signal);
    expect(first.complete).toBe(false);
    expect(state.cursor).toEqual([1]);
    failB = false;
    worked.length = 0;
    const second = await follower.round('retry', new AbortController().signal);
    expect(second.complete).toBe(true);
    expect(worked).toEqual(['b@1', 'c@1']);
    expect(state.cursor).toEqual([3]);
  });

  it("a page with several versions of a path applies that path's newest", async () => {
    const { follower, state, worked } = feedFollower(
      [
        ['a', 1],
        ['b', 1],
        ['a', 2],
        ['a', 3],
      ],
      () => ({ kind: 'applied', bytes: 1, adopted: false }),
    );
    expect((await follower.round('start', new AbortController().signal)).complete).toBe(true);
    expect(worked.sort()).toEqual(['a@3', 'b@1']);
    expect(state.cursor).toEqual([4]);
  });
});
