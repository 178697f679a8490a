import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Change } from '../../../contracts/model.js';
import { decodeCursor, encodeCursor, initialCursor, readChanges } from '../../../functions/core/changes.js';
import { ValidationError } from '../../../functions/core/errors.js';

function change(shard: number, seq: number, appendedAt: string): Change {
  return {
    shard,
    seq,
    path: `p${shard}-${seq}`,
    version: 1,
    sha256: null,
    size: 0,
    contentType: null,
    deleted: false,
    committedAt: appendedAt,
    appendedAt,
  };
}

/** An in-memory feed: shards of gap-free seqs with arbitrary (even skewed) append times. */
function feedOf(shards: Change[][]) {
  return {
    readFeed: async (shard: number, after: number, limit: number) =>
      (shards[shard] ?? []).filter((c) => c.seq > after).slice(0, limit),
    latestFeedSeq: async (shard: number) => shards[shard]?.at(-1)?.seq ?? 0,
  };
}

const feeds = fc.integer({ min: 1, max: 6 }).chain((k) =>
  fc
    .array(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 30 }), {
      minLength: k,
      maxLength: k,
    })
    .map((shards) =>
      shards.map((times, shard) =>
        times.map((t, i) => change(shard, i + 1, new Date(t * 1000).toISOString())),
      ),
    ),
);

describe('change feed reading', () => {
  it('a reader paging with any limit sees every entry exactly once, each shard in seq order (property)', async () => {
    await fc.assert(
      fc.asyncProperty(feeds, fc.integer({ min: 1, max: 7 }), async (shards, limit) => {
        const feed = feedOf(shards);
        let cursor = initialCursor(shards.length);
        const seen: Change[] = [];
        for (let guard = 0; guard < 1000; guard++) {
          const page = await readChanges(feed, cursor, limit);
          expect(page.changes.length).toBeLessThanOrEqual(limit);
          seen.push(...page.changes);
          cursor = decodeCursor(encodeCursor(page.cursor), shards.length);
          if (page.changes.length === 0) break;
        }
        expect(seen.map((c) => `${c.shard}/${c.seq}`).sort()).toEqual(
          shards
            .flat()
            .map((c) => `${c.shard}/${c.seq}`)
            .sort(),
        );
        for (let s = 0; s < shards.length; s++) {
          const seqs = seen.filter((c) => c.shard === s).map((c) => c.seq);
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        }
      }),
    );
  });

  it('entries appended while reading are picked up later, never skipped', async () => {
    const shards: Change[][] = [
      [change(0, 1, '2026-01-01T00:00:02Z')],
      [change(1, 1, '2026-01-01T00:00:01Z')],
    ];
    const feed = feedOf(shards);
    const first = await readChanges(feed, initialCursor(2), 10);
    // A late entry with an *earlier* timestamp (clock skew between writers) still comes next.
    shards[0]?.push(change(0, 2, '2026-01-01T00:00:00Z'));
    const second = await readChanges(feed, first.cursor, 10);
    expect(first.changes.map((c) => c.path)).toEqual(['p1-1', 'p0-1']);
    expect(second.changes.map((c) => c.path)).toEqual(['p0-2']);
  });

  it('rejects cursors it did not issue, naming the field', () => {
    for (const bad of [
      'garbage',
      encodeCursor([1, 2]),
      Buffer.from('{"s":[-1,0,0,0]}').toString('base64url'),
      Buffer.from('{"s":[0,0,0,0]}').toString('base64url'),
      Buffer.from('{"v":2,"s":[0,0,0,0]}').toString('base64url'),
      Buffer.from('{"v":1,"s":[0,0,0,0],"x":1}').toString('base64url'),
    ]) {
      expect(() => decodeCursor(bad, 4)).toThrow(ValidationError);
    }
    expect(decodeCursor(undefined, 3)).toEqual([0, 0, 0]);
  });

  it('a cursor past the feed is refused (400 invalid_cursor on cursor), not answered "caught up"; one at the end is caught up', async () => {
    const shards: Change[][] = [
      [change(0, 1, '2026-01-01T00:00:01Z'), change(0, 2, '2026-01-01T00:00:02Z')],
      [],
    ];
    const feed = feedOf(shards);
    await expect(readChanges(feed, [999_999, 0], 10)).rejects.toMatchObject({
      field: 'cursor',
      code: 'invalid_cursor',
      message: expect.stringMatching(/ahead of the feed \(shard 0: 999999, the feed's last entry: 2\)/),
    });
    await expect(readChanges(feed, [2, 5], 10)).rejects.toMatchObject({ code: 'invalid_cursor' });
    expect(await readChanges(feed, [2, 0], 10)).toEqual({ changes: [], cursor: [2, 0] });
  });
});
