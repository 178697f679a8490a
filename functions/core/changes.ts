/**
 * Reading the change feed. A cursor holds one sequence number per shard; each
 * shard's sequence is gap-free, so returning a prefix of every shard and
 * advancing only past what was returned never skips an entry.
 */
import { type Change, type Cursor, initialCursor, parseCursor } from '../../contracts/model.js';
import { ValidationError } from './errors.js';
import type { Ledger } from './ports.js';

export { type Cursor, encodeCursor, initialCursor } from '../../contracts/model.js';

/** The cursor a client sent (none: the feed's start); one this API did not return is a 400 on `cursor`. */
export function decodeCursor(text: string | undefined, shards: number): Cursor {
  if (text === undefined || text === '') return initialCursor(shards);
  const cursor = parseCursor(text, shards);
  if (cursor === undefined)
    throw new ValidationError('cursor', 'cursor is not one this API returned', { code: 'invalid_cursor' });
  return cursor;
}

/**
 * Up to `limit` changes after the cursor, oldest first across shards, and the cursor after them.
 * A cursor past a shard's last entry is refused (400 `invalid_cursor`), not answered "caught up":
 * its reader would silently skip every change up to it (a cursor kept across a restore of the
 * ledger from a backup, or one made up). Checked only for shards with nothing new, so a reader
 * that is behind pays nothing for it.
 */
export async function readChanges(
  ledger: Pick<Ledger, 'readFeed' | 'latestFeedSeq'>,
  cursor: Cursor,
  limit: number,
): Promise<{ changes: Change[]; cursor: Cursor }> {
  const perShard = await Promise.all(
    cursor.map(async (after, shard) => {
      const entries = await ledger.readFeed(shard, after, limit);
      if (entries.length === 0 && after > 0) {
        const latest = await ledger.latestFeedSeq(shard);
        if (after > latest) {
          throw new ValidationError(
            'cursor',
            `cursor is ahead of the feed (shard ${shard}: ${after}, the feed's last entry: ${latest}); start again without a cursor`,
            { code: 'invalid_cursor' },
          );
        }
      }
      return entries;
    }),
  );
  // A k-way merge by append time that takes each shard's entries in seq order, whatever the
  // clocks of the writers said: what is returned is a prefix of every shard, so nothing is skipped.
  const heads = perShard.map(() => 0);
  const merged: Change[] = [];
  while (merged.length < limit) {
    let pick: Change | undefined;
    perShard.forEach((entries, shard) => {
      const candidate = entries[heads[shard] ?? 0];
      if (candidate && (!pick || candidate.appendedAt < pick.appendedAt)) pick = candidate;
    });
    if (!pick) break;
    merged.push(pick);
    heads[pick.shard] = (heads[pick.shard] ?? 0) + 1;
  }
  const next = [...cursor];
  for (const change of merged) next[change.shard] = change.seq;
  return { changes: merged, cursor: next };
}
