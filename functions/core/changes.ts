/**
 * Reading the change feed. A cursor holds one sequence number per shard; each
 * shard's sequence is gap-free, so returning a prefix of every shard and
 * advancing only past what was returned never skips an entry.
 */
import { ValidationError } from './errors.js';
import type { Change } from './model.js';
import type { Ledger } from './ports.js';

export type Cursor = readonly number[];

export function initialCursor(shards: number): Cursor {
  return Array.from({ length: shards }, () => 0);
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify({ v: 1, s: cursor })).toString('base64url');
}

export function decodeCursor(text: string | undefined, shards: number): Cursor {
  if (text === undefined || text === '') return initialCursor(shards);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('cursor', 'cursor is not one this API returned', { code: 'invalid_cursor' });
  }
  const seqs = (parsed as { s?: unknown } | null)?.s;
  if (
    !Array.isArray(seqs) ||
    seqs.length !== shards ||
    !seqs.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
  ) {
    throw new ValidationError('cursor', 'cursor is not one this API returned', { code: 'invalid_cursor' });
  }
  return seqs as number[];
}

/** Up to `limit` changes after the cursor, oldest first across shards, and the cursor after them. */
export async function readChanges(
  ledger: Pick<Ledger, 'readFeed'>,
  cursor: Cursor,
  limit: number,
): Promise<{ changes: Change[]; cursor: Cursor }> {
  const perShard = await Promise.all(cursor.map((after, shard) => ledger.readFeed(shard, after, limit)));
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
