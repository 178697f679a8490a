/** The change feed's shards as commits take them, and ids derived from a path by hashing it: its FIFO group and deduplication ids. */
import { createHash } from 'node:crypto';

/**
 * A path's shard by hash: stable for a given shard count. Commits no longer append by it (they
 * take a shard from FeedShards); kept for the tests that spread paths over shards.
 */
export function shardOf(path: string, shards: number): number {
  return createHash('sha256').update(path).digest().readUInt32BE(0) % shards;
}

/**
 * How long a shard this process lost to another process's append is left to that process, while
 * a shard not lost lately is there to take (docs/design-notes.md, "Which shard a commit takes").
 */
export const LOST_SHARD_HOLD_OFF_MS = 30_000;

/**
 * Which feed shard a commit appends to. Any shard keeps the feed's invariants: entry seq + 1 is
 * written only with that shard's counter moving from seq, whoever writes it, and the version
 * records its shard and seq. So the shard is chosen for contention alone, not by the path.
 *
 * One per process (a Lambda environment, a local function's worker): a shard is lent to one
 * commit at a time, so this process's commits never race each other for a counter; they wait
 * here (no ledger call) rather than being refused by the ledger (a write each). A commit refused
 * because another process appended first marks the shard lost (`lost`): for
 * LOST_SHARD_HOLD_OFF_MS it is taken only when every shard has been lost lately, and a free
 * shard not lost is waited for meanwhile. Two processes thus settle on shards of their own: the
 * loser leaves the shard to the winner. Nothing here is needed for correctness: a wrong guess
 * costs a refused write, as before.
 */
export class FeedShards {
  readonly #busy: boolean[];
  readonly #lostAt: number[];
  readonly #waiting: (() => void)[] = [];

  constructor(
    readonly count: number,
    private readonly options: { now?: () => number; random?: () => number; holdOffMs?: number } = {},
  ) {
    if (!Number.isInteger(count) || count < 1) throw new Error(`feed shards: ${count}`);
    this.#busy = Array.from({ length: count }, () => false);
    this.#lostAt = Array.from({ length: count }, () => Number.NEGATIVE_INFINITY);
  }

  /** A shard for one commit, lent until `release`. */
  async acquire(): Promise<number> {
    for (;;) {
      const shard = this.#pick();
      if (shard !== undefined) {
        this.#busy[shard] = true;
        return shard;
      }
      await new Promise<void>((wake) => this.#waiting.push(wake));
    }
  }

  release(shard: number): void {
    this.#busy[shard] = false;
    for (const wake of this.#waiting.splice(0)) wake();
  }

  /** Another process appended to `shard` between this commit's read and its write. */
  lost(shard: number): void {
    this.#lostAt[shard] = this.#now();
  }

  /** A commit appended to `shard` at its first write: the shard is this process's to keep. */
  won(shard: number): void {
    this.#lostAt[shard] = Number.NEGATIVE_INFINITY;
  }

  /** A free shard not lost lately, at random; when every shard was lost lately, the free one lost longest ago. */
  #pick(): number | undefined {
    const now = this.#now();
    const holdOff = this.options.holdOffMs ?? LOST_SHARD_HOLD_OFF_MS;
    const all = this.#lostAt.map((_, shard) => shard);
    const kept = all.filter((shard) => now - (this.#lostAt[shard] as number) >= holdOff);
    const free = (kept.length > 0 ? kept : all).filter((shard) => !this.#busy[shard]);
    if (free.length === 0) return undefined;
    if (kept.length === 0)
      return free.reduce((a, b) => ((this.#lostAt[b] as number) < (this.#lostAt[a] as number) ? b : a));
    const random = this.options.random ?? Math.random;
    return free[Math.min(free.length - 1, Math.floor(random() * free.length))];
  }

  #now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }
}

const perProcess = new Map<number, FeedShards>();

/** This process's FeedShards for a shard count. */
export function feedShardsOf(count: number): FeedShards {
  let shards = perProcess.get(count);
  if (shards === undefined) {
    shards = new FeedShards(count);
    perProcess.set(count, shards);
  }
  return shards;
}

/**
 * SQS FIFO group and deduplication ids allow 128 ASCII characters at most,
 * and paths may be longer or non-ASCII: hash them.
 */
export function messageGroupId(path: string): string {
  return createHash('sha256').update(path).digest('hex');
}

export function deduplicationId(path: string, version: number, resend?: string): string {
  return createHash('sha256')
    .update(`${path}\n${version}${resend === undefined ? '' : `\n${resend}`}`)
    .digest('hex');
}
