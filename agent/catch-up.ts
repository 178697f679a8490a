/**
 * Catch-up from the change feed: the agent's backstop for everything the queue
 * did not bring (a first start, a purged queue, an outage longer than the queue's
 * retention, messages gone to the DLQ after a disk-full spell).
 *
 * A round reads each shard after the confirmed cursor, page by page; in a page,
 * only the newest version of each path is applied (the older ones are superseded),
 * and the shard's cursor advances over the longest prefix of the page whose paths
 * are settled (applied, already held, not selected, or refused and counted). A
 * version that failed for a transient reason stops its shard's cursor there, so it
 * is read again next round: the cursor never passes an entry that was not settled,
 * and because each shard's sequence is gap-free (docs/design-notes.md), nothing is skipped.
 *
 * Rounds run at start (the first start is a full bootstrap from cursor 0), every
 * `--catch-up-interval`, and at once when the queue shows a gap. Queue and feed
 * may bring the same version twice: the second finds it held and skips.
 */

import { createHash } from 'node:crypto';
import { pause } from '../common/retry.ts';
import type { Change } from '../contracts/model.ts';
import type { VersionInfo } from './applier.ts';
import type { Conditions } from './conditions.ts';
import { classifyCondition } from './errors.ts';
import type { AgentLog } from './log.ts';
import type { LedgerView } from './ports.ts';
import type { WorkOutcome } from './queue-consumer.ts';
import type { StateStore } from './state-store.ts';
import { backoffMs, errorMessage, wakeableWait } from './util.ts';

export interface RoundReport {
  readonly reason: string;
  readonly changes: number;
  readonly applied: number;
  readonly skipped: number;
  readonly refused: number;
  readonly unsettled: number;
  readonly seconds: number;
  /** Every shard was read to its end with every entry settled. */
  readonly complete: boolean;
}

export interface FeedFollowerDeps {
  readonly ledger: Pick<LedgerView, 'readFeed' | 'latestFeedSeq'>;
  readonly state: StateStore;
  readonly feedShards: number;
  readonly pageSize: number;
  readonly intervalSeconds: number;
  readonly conditions: Conditions;
  readonly log: AgentLog;
  readonly work: (v: VersionInfo, signal: AbortSignal) => Promise<WorkOutcome>;
  readonly onRound?: (report: RoundReport) => void;
}

export class FeedFollower {
  private wake: (() => void) | undefined;
  private pokeReason: string | undefined;
  private failures = 0;
  catchingUp = false;
  rounds = 0;
  lastRound: RoundReport | undefined;
  backlog: number | undefined;
  /**
   * While the state is rebuilding: per shard, when the oldest entry not yet settled was committed
   * (or, between pages, the last entry settled: nothing after it is known to be on disk yet).
   */
  private readonly frontier = new Map<number, string>();

  constructor(private readonly deps: FeedFollowerDeps) {}

  /** Asks for a round now (or right after the one running). */
  poke(reason: string): void {
    this.pokeReason ??= reason;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async run(signal: AbortSignal, firstReason: string): Promise<void> {
    let reason = firstReason;
    while (!signal.aborted) {
      this.pokeReason = undefined;
      let report: RoundReport;
      try {
        report = await this.round(reason, signal);
      } catch (error) {
        // The loop must outlive anything a round throws (the state's disk full, a bug): log, back off, go on.
        this.catchingUp = false;
        const kind = classifyCondition(error);
        if (kind) this.deps.conditions.raise(kind, error, { during: 'catch-up' });
        else this.deps.log.log('error', 'catch-up round failed', { error: errorMessage(error) });
        report = {
          reason,
          changes: 0,
          applied: 0,
          skipped: 0,
          refused: 0,
          unsettled: 0,
          seconds: 0,
          complete: false,
        };
      }
      if (signal.aborted) break;
      let waitMs = this.deps.intervalSeconds * 1000;
      if (!report.complete) {
        waitMs = Math.min(waitMs, backoffMs(this.failures++));
      } else {
        this.failures = 0;
      }
      if (this.pokeReason === undefined) {
        await wakeableWait(signal, (wake) => (this.wake = wake), waitMs);
        this.wake = undefined;
      }
      reason = this.pokeReason ?? (report.complete ? 'periodic' : 'retry');
    }
  }

  /** One pass over every shard, from the confirmed cursor to the end of the feed. */
  async round(reason: string, signal: AbortSignal): Promise<RoundReport> {
    const started = performance.now();
    const totals = { changes: 0, applied: 0, skipped: 0, refused: 0, unsettled: 0 };
    this.catchingUp = true;
    let complete = true;
    try {
      const shards = Array.from({ length: this.deps.feedShards }, (_, shard) => shard);
      const results = await Promise.all(shards.map((shard) => this.followShard(shard, signal, totals)));
      complete = results.every(Boolean) && !signal.aborted;
      if (complete) {
        await this.deps.state.recordRebuilt();
        this.frontier.clear();
      }
    } finally {
      this.catchingUp = false;
    }
    const report: RoundReport = {
      reason,
      ...totals,
      seconds: Math.round((performance.now() - started) / 10) / 100,
      complete,
    };
    this.rounds++;
    this.lastRound = report;
    // An incomplete round while a condition holds (network down...) was already logged as that condition.
    const quiet = !complete && this.deps.conditions.any;
    if (report.changes > 0 || !complete) {
      this.deps.log.log(quiet ? 'debug' : complete ? 'info' : 'warn', 'catch-up round', { ...report });
    }
    this.deps.onRound?.(report);
    await this.refreshBacklog().catch(() => undefined);
    return report;
  }

  /**
   * While the agent rebuilds its folder from the feed (its state was made from nothing): when the
   * oldest change it may still lack was committed, the lag monitor's measure of how far behind it
   * is (the ledger's rows were written by an earlier run). `null`: rebuilding, not yet known.
   */
  rebuildingSince(): string | null | undefined {
    if (!this.deps.state.rebuilding) return undefined;
    let oldest: string | undefined;
    for (const at of this.frontier.values()) if (oldest === undefined || at < oldest) oldest = at;
    return oldest ?? null;
  }

  /** Feed entries after the cursor, all shards together (K small queries). */
  async refreshBacklog(): Promise<number> {
    const cursor = this.deps.state.cursor;
    const latest = await Promise.all(cursor.map((_, shard) => this.deps.ledger.latestFeedSeq(shard)));
    this.backlog = latest.reduce((sum, seq, shard) => sum + Math.max(0, seq - (cursor[shard] ?? 0)), 0);
    return this.backlog;
  }

  private async followShard(shard: number, signal: AbortSignal, totals: RoundTotals): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      const after = this.deps.state.cursor[shard] ?? 0;
      const page = await this.readAfterCursor(shard, after);
      if (page === undefined) return false;
      if (page.length === 0) {
        this.frontier.delete(shard);
        return true;
      }
      totals.changes += page.length;
      this.noteFrontier(shard, page, 0);
      const outcomes = await this.workNewest(page, signal, totals);
      // Re-read: the cursor started over if the feed no longer held its entry.
      const from = this.deps.state.cursor[shard] ?? 0;
      const { advanced, settled } = settledUpTo(page, outcomes, from);
      if (advanced > from) await this.moveCursor(shard, page, advanced);
      this.noteFrontier(shard, page, advanced);
      if (!settled) return false;
      if (page.length < this.deps.pageSize) {
        // A short page may still not be the end (DynamoDB's 1 MB page limit): one more read confirms.
        continue;
      }
      await pause(0);
    }
  }

  /** The shard's frontier once the cursor stands at `settled`: the first entry past it, else the last read. */
  private noteFrontier(shard: number, page: readonly Change[], settled: number): void {
    if (!this.deps.state.rebuilding) return;
    const next = page.find((c) => c.seq > settled) ?? page[page.length - 1];
    if (next) this.frontier.set(shard, next.committedAt);
  }

  /** Moves the shard's cursor onto the page's entry `seq`, with that entry's mark. */
  private async moveCursor(shard: number, page: readonly Change[], seq: number): Promise<void> {
    const next = [...this.deps.state.cursor];
    next[shard] = seq;
    const marks = next.map((_, i) => (i === shard ? markOfSeq(page, seq) : null));
    await this.deps.state.recordCursor(next, marks);
  }

  /**
   * The shard's entries after the cursor (undefined when the read failed); from the shard's start
   * when the feed no longer holds the entry the cursor stands on.
   */
  private async readAfterCursor(shard: number, after: number): Promise<Change[] | undefined> {
    const mark = after > 0 ? this.deps.state.cursorMark(shard) : null;
    // With a mark, the page starts at the entry the cursor stands on: it must still be there.
    const page = await this.readPage(shard, mark === null ? after : after - 1, mark === null ? 0 : 1);
    if (page === undefined) return undefined;
    const gone =
      mark === null
        ? // A cursor recorded without a mark (an older state): at least a cursor past the end is caught.
          after > 0 && page.length === 0 && (await this.pastTheEnd(shard, after))
        : page[0]?.seq !== after || changeMark(page[0]) !== mark;
    if (!gone) return mark === null ? page : page.slice(1);
    await this.startShardOver(shard, after);
    return this.readPage(shard, 0, 0);
  }

  /**
   * The shard's feed no longer holds the entry the cursor stood on: the ledger was restored from a
   * backup (or replaced). Its new entries reuse the seqs the cursor has passed, so the shard is read
   * again from its start; files already in place are kept (each path's newest entry is checked).
   */
  private async startShardOver(shard: number, after: number): Promise<void> {
    this.deps.log.log(
      'warn',
      'the change feed no longer holds the entry the cursor stood on (a ledger restored from a backup?): reading the shard again from its start',
      {
        shard,
        cursor: after,
      },
    );
    await this.deps.state.resetCursor(shard);
  }

  private async pastTheEnd(shard: number, after: number): Promise<boolean> {
    try {
      return (await this.deps.ledger.latestFeedSeq(shard)) < after;
    } catch {
      return false; // read again next round
    }
  }

  /** A page of the shard's feed after `after`; undefined when the read failed (raised or logged). */
  private async readPage(shard: number, after: number, extra: number): Promise<Change[] | undefined> {
    try {
      const page = await this.deps.ledger.readFeed(shard, after, this.deps.pageSize + extra);
      this.deps.conditions.clearRemote();
      return page;
    } catch (error) {
      const kind = classifyCondition(error);
      if (kind) this.deps.conditions.raise(kind, error, { during: 'read feed' });
      else this.deps.log.log('error', 'reading the feed failed', { shard, error: errorMessage(error) });
      return undefined;
    }
  }

  /** Works only the newest change of each path in the page (older ones would be skipped anyway), all at once. */
  private async workNewest(
    page: readonly Change[],
    signal: AbortSignal,
    totals: RoundTotals,
  ): Promise<Map<string, WorkOutcome>> {
    const newest = new Map<string, Change>();
    for (const change of page) {
      const seen = newest.get(change.path);
      if (!seen || change.version > seen.version) newest.set(change.path, change);
    }
    const outcomes = new Map<string, WorkOutcome>();
    await Promise.all(
      [...newest.values()].map(async (change) => {
        const outcome = await this.deps.work(change, signal);
        outcomes.set(change.path, outcome);
        countOutcome(totals, outcome);
      }),
    );
    return outcomes;
  }
}

/** Which entry a cursor stands on: two restores of the ledger do not give the same seq the same entry. */
function changeMark(change: Change): string {
  return createHash('sha256')
    .update(`${change.path}\0${change.version}\0${change.sha256 ?? ''}\0${change.appendedAt}`)
    .digest('hex')
    .slice(0, 16);
}

function markOfSeq(page: readonly Change[], seq: number): string | null {
  const change = page.find((c) => c.seq === seq);
  return change ? changeMark(change) : null;
}

type RoundTotals = { changes: number; applied: number; skipped: number; refused: number; unsettled: number };

function countOutcome(totals: RoundTotals, outcome: WorkOutcome): void {
  if (outcome.kind === 'applied' || outcome.kind === 'deleted') totals.applied++;
  else if (outcome.kind === 'skipped' || outcome.kind === 'not-selected') totals.skipped++;
  else if (outcome.kind === 'refused') totals.refused++;
  else totals.unsettled++;
}

/**
 * How far the cursor may move: up to the last change, in feed order, before the first one
 * whose path did not settle (failed or aborted), so that change is read again next round.
 */
function settledUpTo(
  page: readonly Change[],
  outcomes: Map<string, WorkOutcome>,
  after: number,
): { advanced: number; settled: boolean } {
  let advanced = after;
  for (const change of [...page].sort((a, b) => a.seq - b.seq)) {
    const outcome = outcomes.get(change.path);
    if (!outcome || outcome.kind === 'failed' || outcome.kind === 'aborted')
      return { advanced, settled: false };
    advanced = change.seq;
  }
  return { advanced, settled: true };
}
