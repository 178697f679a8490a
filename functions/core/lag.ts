/**
 * Replication lag, computed centrally from the ledger (so a dead agent or a
 * stuck queue still shows lag growing): per target, the age of the oldest
 * committed change it has not applied, and how many such changes there are.
 *
 * Each target keeps a watermark: a feed cursor below which every change is
 * applied (or not selected). A run reads each shard past the watermark a page at
 * a time, advancing the watermark over applied changes up to the first unapplied
 * one, then counting the backlog. A run is bounded (a budget of ledger calls and
 * a deadline): shards are read a page each in turn, so every shard is looked at
 * in every run, and the watermark is saved with the figures after every round,
 * so a run cut short loses at most one round and the next run goes on from there.
 * While the monitor is still catching up with a long run of applied changes the
 * lag it reports is an upper bound (the age of the last change it checked); the
 * oldest unapplied change's age is exact as soon as that change is found.
 * The figures are stored (`LagRecord`): `GET /v1/targets` reads them, it walks nothing.
 */

import type { Change } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { initialCursor } from './changes.js';
import { fanOut } from './commit.js';
import type {
  AgentLedger,
  AgentReport,
  Clock,
  FanoutQueue,
  LagFigures,
  LagRecord,
  TargetLedger,
  VersionLedger,
} from './ports.js';

export interface LagDeps {
  readonly ledger: Pick<VersionLedger, 'readFeed' | 'markFannedOut'> &
    Pick<TargetLedger, 'appliedVersions' | 'getLagRecord' | 'putLagRecord'> &
    Pick<AgentLedger, 'getAgentReport'>;
  /** Given, the run also drains the outbox: changes whose fan-out never completed are sent again. */
  readonly fanout?: FanoutQueue | undefined;
  readonly clock: Clock;
  readonly feedShards: number;
  readonly targets: readonly {
    readonly id: string;
    readonly kind: 's3' | 'pull';
    readonly pathPrefix?: string | undefined;
  }[];
}

export interface TargetLag extends LagFigures {
  readonly targetId: string;
  readonly kind: 's3' | 'pull';
  /** Pull targets: seconds since the agent's last heartbeat; undefined if it never reported. */
  readonly heartbeatAgeSeconds?: number | undefined;
  /** Pull targets: what keeps the agent from applying, as it last reported (`disk-full`...). */
  readonly agentConditions?: readonly string[] | undefined;
  /** Ledger calls this run made for the target. */
  readonly ledgerCalls: number;
}

export interface LagOptions {
  /** Stop counting a target's backlog at this many pending changes. @default 1000 */
  readonly lookAhead?: number;
  /** Ledger calls per target per run (at least enough to read one page of every shard). @default 400 */
  readonly callsPerTarget?: number;
  /** Epoch milliseconds (real time) after which a run starts no more pages. */
  readonly deadline?: number;
}

/** Feed entries per read, and paths per batched read of the target's rows. */
export const LAG_PAGE = 100;
const DEFAULT_CALLS_PER_TARGET = 400;

/**
 * A commit marks its feed entry right after the fan-out; an entry still unmarked this long after
 * it was appended lost its fan-out (a failed send, or a crash between commit and send).
 */
export const OUTBOX_GRACE_MS = 30_000;

/** Measures every target (in parallel, each within its own share of the budget) and stores the figures. */
export async function measureLag(deps: LagDeps, options: LagOptions = {}): Promise<TargetLag[]> {
  const run: Run = {
    deps,
    lookAhead: options.lookAhead ?? 1000,
    now: deps.clock.now().getTime(),
    // Reading every shard once (a feed page and the target's rows), the record read and written, a heartbeat.
    calls: Math.max(options.callsPerTarget ?? DEFAULT_CALLS_PER_TARGET, minimumCalls(deps.feedShards)),
    deadline: options.deadline ?? Number.POSITIVE_INFINITY,
    resent: new Set(),
  };
  return Promise.all(deps.targets.map((target) => measureTargetLag(run, target)));
}

/** The fewest ledger calls a run needs per target: one page of every shard is always read. */
export const minimumCalls = (feedShards: number): number => 2 * feedShards + 3;

type LagTarget = LagDeps['targets'][number];

interface Run {
  readonly deps: LagDeps;
  readonly lookAhead: number;
  /** The run's one "now", in epoch milliseconds (the deps' clock). */
  readonly now: number;
  readonly calls: number;
  readonly deadline: number;
  /** Feed entries this run already re-sent from the outbox (`shard/seq`): once, whichever target found it. */
  readonly resent: Set<string>;
}

/** One shard's scan in this run. */
interface ShardScan {
  readonly shard: number;
  /** The last seq read. */
  after: number;
  /** The watermark still follows the scan (nothing unapplied met yet). */
  advancing: boolean;
  /** Read to the feed's end, or to the look-ahead: nothing more to learn this run. */
  done: boolean;
  /** The last change read: while nothing unapplied was met, the lag is at most its age. */
  last: Change | undefined;
}

/** One target's measurement: its watermark as it advances, and the backlog found past it. */
class TargetScan {
  readonly watermark: number[];
  readonly shards: ShardScan[];
  pending = 0;
  oldest: Change | undefined;
  capped = false;
  calls = 0;
  /** Reconcile moved the watermark back while this run went on: it saves nothing more. */
  superseded = false;

  constructor(
    readonly run: Run,
    readonly target: LagTarget,
    watermark: number[],
    /** The rewinds the record counted when this run read it (LagRecord.rewinds). */
    readonly rewinds: number,
    /** Pull targets: what the agent last reported. */
    readonly agent: AgentReport | undefined,
  ) {
    this.watermark = watermark;
    this.shards = watermark.map((after, shard) => ({
      shard,
      after,
      advancing: true,
      done: false,
      last: undefined,
    }));
  }

  /** Whether `n` more ledger calls fit (keeping two: the final save, a heartbeat), before the deadline. */
  affords(n: number): boolean {
    return this.calls + n + 2 <= this.run.calls && Date.now() < this.run.deadline;
  }

  figures(): LagFigures {
    const caughtUp = this.shards.every((s) => s.done || !s.advancing);
    // Per shard: the oldest unapplied change found, or while still walking applied ones, the last checked.
    const since = [
      ...(this.oldest ? [Date.parse(this.oldest.committedAt)] : []),
      ...this.shards.flatMap((s) =>
        !s.done && s.advancing && s.last ? [Date.parse(s.last.committedAt)] : [],
      ),
    ];
    // The target's rows were written by the agent's earlier run: its disk may lack anything after
    // the oldest change its rebuild has not settled (docs/agent.md, "Reports centrally").
    const rebuilding = this.target.kind === 'pull' ? this.agent?.rebuilding : undefined;
    const rebuildingSince = rebuilding?.since === undefined ? Number.NaN : Date.parse(rebuilding.since);
    if (!Number.isNaN(rebuildingSince)) since.push(rebuildingSince);
    const from = since.length > 0 ? Math.min(...since) : this.run.now;
    const { oldest } = this;
    return {
      lagSeconds: Math.max(0, (this.run.now - from) / 1000),
      pending: this.pending,
      pendingCapped: this.capped || this.shards.some((s) => !s.done) || rebuilding !== undefined,
      caughtUp: caughtUp && rebuilding === undefined,
      measuredAt: new Date(this.run.now).toISOString(),
      oldestPending: oldest && {
        path: oldest.path,
        version: oldest.version,
        committedAt: oldest.committedAt,
      },
      ...(this.target.kind === 'pull' ? { agentRebuilding: rebuilding !== undefined } : {}),
    };
  }
}

/** Reads the target's shards a page each per round, saving watermark and figures after every round. */
async function measureTargetLag(run: Run, target: LagTarget): Promise<TargetLag> {
  const { ledger } = run.deps;
  const record = await ledger.getLagRecord(target.id);
  // Read first: whether the agent rebuilds its folder goes into every figure this run saves.
  const report = target.kind === 'pull' ? await ledger.getAgentReport(target.id) : undefined;
  const scan = new TargetScan(
    run,
    target,
    startingWatermark(record, target, run.deps.feedShards),
    record?.rewinds ?? 0,
    report,
  );
  scan.calls++;
  if (target.kind === 'pull') scan.calls++;
  await walkShards(scan);
  const figures = await save(scan);
  return {
    targetId: target.id,
    kind: target.kind,
    ...figures,
    ...agentFigures(report, run.now),
    ledgerCalls: scan.calls,
  };
}

/**
 * Rounds of one page per open shard while the budget lasts; the first round reads every shard
 * whatever the budget (a shard never read has no lag to report). Saves after a round that moved
 * the watermark, so a run cut short loses at most one round.
 */
async function walkShards(scan: TargetScan): Promise<void> {
  for (let round = 0; ; round++) {
    const before = scan.watermark.join();
    for (const shard of scan.shards) {
      if (!shard.done && (round === 0 || scan.affords(2))) await readPage(scan, shard);
    }
    if (scan.shards.every((s) => s.done) || !scan.affords(2) || scan.superseded) return;
    if (scan.watermark.join() !== before) await save(scan);
  }
}

/** What a target selects, as the lag record keeps it: '' for every path. */
const selectionOf = (target: LagTarget): string => target.pathPrefix ?? '';

/**
 * The stored watermark, or the feed's start when none is stored, the shard count changed, or the
 * target now selects paths the stored one did not (its prefix widened or moved): the watermark
 * passed their changes as never to be applied, and the target may lack every one of them. A
 * narrower prefix keeps it (what it passed stays applied or unselected).
 */
function startingWatermark(record: LagRecord | undefined, target: LagTarget, shards: number): number[] {
  const stored = record?.cursor;
  const widened = record?.selection !== undefined && !selectionOf(target).startsWith(record.selection);
  return stored?.length === shards && !widened ? [...stored] : [...initialCursor(shards)];
}

/**
 * Saves watermark and figures, unless reconcile moved the watermark back since the run read it: the
 * run's watermark may then be past a change pending again, and the next run reads from the rewound one.
 */
async function save(scan: TargetScan): Promise<LagFigures> {
  const figures = scan.figures();
  if (scan.superseded) return figures;
  const saved = await scan.run.deps.ledger.putLagRecord(scan.target.id, {
    cursor: scan.watermark,
    figures,
    rewinds: scan.rewinds,
    selection: selectionOf(scan.target),
  });
  scan.calls++;
  if (!saved) scan.superseded = true;
  return figures;
}

/**
 * Reads one page of a shard past where its scan stands and the target's rows for the paths it
 * selects (one batched read): advances the watermark over applied changes up to the first
 * unapplied one, then counts the backlog until the feed ends or the look-ahead is reached.
 */
async function readPage(scan: TargetScan, position: ShardScan): Promise<void> {
  const { ledger } = scan.run.deps;
  const page = await ledger.readFeed(position.shard, position.after, LAG_PAGE);
  scan.calls++;
  const selected = page.filter((c) => targetSelects(scan.target, c.path));
  const applied =
    selected.length > 0
      ? await ledger.appliedVersions(scan.target.id, [...new Set(selected.map((c) => c.path))])
      : new Map<string, number>();
  scan.calls += Math.ceil(selected.length / LAG_PAGE);
  for (const change of page) {
    position.after = change.seq;
    position.last = change;
    // A change the target does not select counts as applied: it never will be.
    if (!targetSelects(scan.target, change.path) || (applied.get(change.path) ?? 0) >= change.version) {
      if (position.advancing) scan.watermark[position.shard] = change.seq;
      continue;
    }
    position.advancing = false;
    if (await countPending(scan, change)) {
      position.done = true;
      return;
    }
  }
  if (page.length < LAG_PAGE) position.done = true;
}

/** Counts an unapplied change (re-sending it if its fan-out was lost); true once the look-ahead is reached. */
async function countPending(scan: TargetScan, change: Change): Promise<boolean> {
  await drainOutbox(scan, change);
  scan.pending++;
  if (!scan.oldest || change.committedAt < scan.oldest.committedAt) scan.oldest = change;
  if (scan.pending < scan.run.lookAhead) return false;
  scan.capped = true;
  return true;
}

/**
 * Sends an unmarked change again (a distinct deduplication id; targets apply it idempotently),
 * once per run whichever target met it, and only while the budget allows (the next run goes on).
 */
async function drainOutbox(scan: TargetScan, change: Change): Promise<void> {
  const { deps, now, resent } = scan.run;
  const key = `${change.shard}/${change.seq}`;
  if (!deps.fanout || change.fannedOut || now - Date.parse(change.appendedAt) < OUTBOX_GRACE_MS) return;
  if (resent.has(key) || !scan.affords(1)) return;
  resent.add(key);
  await fanOut({ fanout: deps.fanout, targets: deps.targets }, change, { resend: 'outbox' });
  await deps.ledger.markFannedOut(change.shard, change.seq);
  scan.calls++;
}

/** A pull target's agent, as its last report reads at `now`. */
function agentFigures(report: AgentReport | undefined, now: number) {
  if (report === undefined) return { heartbeatAgeSeconds: undefined };
  return {
    heartbeatAgeSeconds: Math.max(0, (now - Date.parse(report.heartbeatAt)) / 1000),
    agentConditions: report.conditions,
  };
}

/** A target's lag as stored by the monitor's latest run (`GET /v1/targets`): reads, walks nothing. */
export interface StoredLag extends Partial<LagFigures> {
  readonly targetId: string;
  readonly heartbeatAgeSeconds?: number | undefined;
  readonly agentConditions?: readonly string[] | undefined;
}

/** Every target's stored figures (one read each) and, for pull targets, its agent's heartbeat age now. */
export async function storedLag(deps: {
  readonly ledger: Pick<TargetLedger, 'getLagRecord'> & Pick<AgentLedger, 'getAgentReport'>;
  readonly clock: Clock;
  readonly targets: readonly { readonly id: string; readonly kind: 's3' | 'pull' }[];
}): Promise<StoredLag[]> {
  const now = deps.clock.now().getTime();
  return Promise.all(
    deps.targets.map(async (target) => {
      const [record, report] = await Promise.all([
        deps.ledger.getLagRecord(target.id),
        target.kind === 'pull' ? deps.ledger.getAgentReport(target.id) : undefined,
      ]);
      return { targetId: target.id, ...record?.figures, ...agentFigures(report, now) };
    }),
  );
}
