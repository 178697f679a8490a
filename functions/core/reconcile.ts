/**
 * Anti-entropy: compare what the ledger says each target should hold with what
 * the target holds, and re-send what is missing, outdated or altered. Runs on a
 * schedule, on demand (`media-mirror reconcile`), and at local start (queue state
 * does not survive a local restart). A target added to the topology is filled
 * by the same pass: it has applied nothing, so every head is re-sent to it.
 *
 * A run walks the heads a page at a time and stops starting pages at its deadline. Scheduled
 * runs (`resume`) go on from a checkpoint saved after every page, so a cycle over every head
 * spans as many runs as the library needs. The walk is an eventually consistent paged scan
 * (half the read cost of a strongly consistent one; the table has no index of every head, and
 * tombstones must be visited too): a head read stale is harmless because a head that seems to
 * have drifted is read again strongly consistently before anything is counted or re-sent.
 *
 * The walk only sees what the ledger holds. A run that begins a cycle first looks the other way:
 * it lists each S3 target's objects under its key prefix (one request per 1,000 keys, where the walk
 * pays one HEAD per path) and names those the mirror holds no live file for at that target
 * ("foreign"): a path the mirror deleted is drift it caused, and its delete is re-sent; an object
 * the ledger never knew, or one outside the target's path prefix, may be someone's data and is only
 * reported. Before the walk, so that it reports the buckets as the run found them: after it, a
 * delete the walk had just re-sent was often applied before the listing came to it. The listing
 * holds one page at a time, and stops starting pages halfway to the run's deadline, leaving the
 * rest of the time to the walk. A scheduled run saves the listing's position (the target, the key
 * to list after) in the checkpoint after every page, and the runs after it go on from there before
 * their walk, mid-cycle too, until every target has been listed to its last key: were each listing
 * to start again at the first key, the part of a bucket (and the targets after it) beyond what half
 * a run can list would never be checked. A run without `resume` lists from the first key and leaves
 * the stored position alone.
 */
import { randomUUID } from 'node:crypto';
import { sleep } from '../../common/retry.ts';
import type { FileVersion } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { fanOut } from './commit.js';
import type {
  FanoutQueue,
  ListingPosition,
  ReconcileCheckpoint,
  ReconcileLedger,
  ReplicaStore,
  TargetLedger,
  VersionLedger,
} from './ports.js';

export interface ReconcileDeps {
  readonly ledger: VersionLedger & TargetLedger & ReconcileLedger;
  readonly fanout: FanoutQueue;
  readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
  /** S3 targets' buckets, to check the objects themselves (not only the ledger's record of them). */
  readonly replicas?: (targetId: string) => Pick<ReplicaStore, 'stat' | 'list'> | undefined;
}

export interface TargetReconcile {
  /** Versions re-sent (for any reason). */
  resent: number;
  /** The ledger said applied, but the object is gone. */
  missing: number;
  /** The object differs from what was written (version, hash, size or ETag). */
  altered: number;
}

/** Why an object in a replica bucket is not the mirror's: see ForeignObjects. */
export type ForeignReason = 'deleted' | 'unknown' | 'unselected';

/** How many foreign objects a target's report names (the counts cover them all). */
export const FOREIGN_SAMPLE = 20;

/** What listing an S3 target's objects under its key prefix found. */
export interface ForeignObjects {
  /** Objects listed. */
  listed: number;
  /** Objects the mirror holds no live file for at this target. */
  foreign: number;
  /** Of those, paths the mirror deleted: their delete is re-sent (a dry run sends nothing). */
  deleted: number;
  /**
   * The first foreign objects, at most FOREIGN_SAMPLE: `deleted` (re-sent), `unknown` (the ledger has
   * no such path: left alone) or `unselected` (outside the target's path prefix: left alone).
   */
  sample: { key: string; path: string; reason: ForeignReason }[];
  /**
   * This run's listing of the target reached its last key: false when the run's deadline stopped it
   * (a scheduled run goes on from there in the next run).
   */
  complete: boolean;
  /**
   * The key this run's listing began after: it went on from where an earlier run stopped, so
   * `listed` and the counts cover only the rest of the bucket. Absent: listed from the first key.
   */
  resumedAfter?: string;
}

export interface ReconcileReport {
  /** Heads visited by this run. */
  readonly heads: number;
  readonly targets: Record<string, TargetReconcile>;
  /**
   * S3 targets listed by this run, in whole or in part, by id (a run that begins a cycle over the
   * heads, or a scheduled one that goes on with an unfinished listing; with replicas and
   * `listObjects`); empty when none was.
   */
  readonly foreign: Record<string, ForeignObjects>;
  readonly dryRun: boolean;
  /** Pages of the table this run read. */
  readonly pages: number;
  /** The run reached the last head: the cycle (begun by this run or an earlier one) is complete. */
  readonly cycleComplete: boolean;
}

export interface ReconcileOptions {
  readonly targetIds?: readonly string[];
  /** Count and report, change nothing. */
  readonly dryRun?: boolean;
  /**
   * Check objects in S3 targets: one HEAD per path and target (a deleted path's only where no listing
   * weighs the target in this cycle: targetsListedThisCycle). @default true when replicas are given
   */
  readonly checkObjects?: boolean;
  /**
   * List S3 targets' objects for foreign ones, in a run that begins a cycle over the heads or goes on
   * with an unfinished listing (one request per `listPageSize` keys). @default checkObjects
   */
  readonly listObjects?: boolean;
  /** Keys per listing page (S3 answers at most 1,000). @default 1000 */
  readonly listPageSize?: number;
  /** Upper bound on object checks per second, to spare the buckets' request rates. @default 50 */
  readonly checksPerSecond?: number;
  /**
   * Go on from the stored checkpoint (the walk's position and the listing's) and save it after every
   * page (scheduled runs). Without it a run starts at the first head and the first key, and leaves
   * the checkpoint alone.
   */
  readonly resume?: boolean;
  /** Epoch milliseconds (real time) after which the run starts no more pages; one page is always read. */
  readonly deadline?: number;
  /** Table rows read per page (a page holds at most this many heads). @default 200 */
  readonly pageSize?: number;
}

type Drift = 'behind' | 'missing' | 'altered' | undefined;

export async function reconcileTargets(
  deps: ReconcileDeps,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const targets = deps.targets.filter((t) => !options.targetIds || options.targetIds.includes(t.id));
  const pass: ReconcilePass = {
    deps,
    options,
    targets,
    // Distinct from the original send, which the FIFO queue would still deduplicate for 5 minutes,
    // and from any other run's: runs may overlap (a manual one, or a scheduled one started late),
    // and a row one run forgets after another's re-send was applied comes back only with its own.
    resend: `reconcile-${Date.now()}-${randomUUID()}`,
    report: Object.fromEntries(targets.map((t) => [t.id, { resent: 0, missing: 0, altered: 0 }])),
    checkObjects: options.checkObjects ?? deps.replicas !== undefined,
    pace: pacer(options.checksPerSecond ?? 50),
  };
  const walk = await startWalk(deps, options);
  let heads = 0;
  let pages = 0;
  const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
  const foreign = await foreignListing(pass, walk, deadline);
  pass.listedTargets = targetsListedThisCycle(pass, foreign);
  while (pages === 0 || Date.now() < deadline) {
    const page = await deps.ledger.pageHeads({ after: walk.after, limit: options.pageSize ?? 200 });
    pages++;
    for (const head of page.heads) await reconcileHead(pass, head);
    heads += page.heads.length;
    walk.after = page.next;
    walk.heads += page.heads.length;
    if (options.resume) await saveWalk(deps, walk);
    if (page.next === undefined) break;
  }
  const cycleComplete = walk.after === undefined;
  return { heads, targets: pass.report, foreign, dryRun: options.dryRun === true, pages, cycleComplete };
}

type Walk = { -readonly [K in keyof ReconcileCheckpoint]: ReconcileCheckpoint[K] };

/** Where the run starts: the stored checkpoint when resuming one, else the first head. */
async function startWalk(deps: ReconcileDeps, options: ReconcileOptions): Promise<Walk> {
  const stored = options.resume ? await deps.ledger.getReconcileCheckpoint() : undefined;
  const fresh: Walk = { cycleStartedAt: new Date().toISOString(), heads: 0 };
  if (!stored) return fresh;
  // The last run ended a cycle: this one begins the next (a listing left unfinished goes on).
  if (stored.after === undefined)
    return { ...fresh, lastCycleEndedAt: stored.lastCycleEndedAt, listing: stored.listing };
  return { ...stored };
}

/** Saves where the listing goes on (undefined: it is done), with the walk as it stands: not yet begun in this run. */
async function saveListing(deps: ReconcileDeps, walk: Walk, at: ListingPosition | undefined): Promise<void> {
  walk.listing = at;
  await deps.ledger.putReconcileCheckpoint({ ...walk });
}

/** Saves the walk after a page; at the last page, the cycle's end (the next run starts a new cycle). */
async function saveWalk(deps: ReconcileDeps, walk: Walk): Promise<void> {
  const ended = walk.after === undefined;
  await deps.ledger.putReconcileCheckpoint({
    ...walk,
    ...(ended ? { lastCycleEndedAt: new Date().toISOString() } : {}),
  });
}

/** What one reconcile pass carries from head to head. */
interface ReconcilePass {
  readonly deps: ReconcileDeps;
  readonly options: ReconcileOptions;
  readonly targets: ReconcileDeps['targets'];
  readonly resend: string;
  readonly report: Record<string, TargetReconcile>;
  readonly checkObjects: boolean;
  readonly pace: () => Promise<void>;
  /** Targets whose every object a listing weighs in this cycle: see targetsListedThisCycle. */
  listedTargets?: ReadonlySet<string>;
}

type TargetState = Awaited<ReturnType<TargetLedger['listTargetStates']>>[number];

/**
 * Finds the targets that selected this head and do not hold it, and re-sends it to them. A head
 * from the (eventually consistent) walk that seems to have drifted is read again, strongly
 * consistently, and weighed as it is now: a stale read re-sends nothing old and forgets no row.
 */
async function reconcileHead(pass: ReconcilePass, head: FileVersion, confirmed = false): Promise<void> {
  const { deps, options } = pass;
  const drifts = await headDrifts(pass, head);
  if (drifts.length === 0) return;
  if (!confirmed) {
    const current = await deps.ledger.getHead(head.path);
    if (!current) return;
    if (current.version !== head.version) return reconcileHead(pass, current, true);
  }
  for (const { target, drift } of drifts) {
    countDrift(pass.report[target.id] as TargetReconcile, drift);
    // The row says applied; the object says otherwise: forget the row so the resend is applied, and
    // move the target's lag watermark back below the change, which is pending again (probe 12, O1).
    if (drift !== 'behind' && !options.dryRun) {
      await deps.ledger.forgetTargetState(head.path, target.id);
      await deps.ledger.rewindWatermark(target.id, head.path, head.version);
    }
  }
  if (!options.dryRun)
    await fanOut({ fanout: deps.fanout, targets: drifts.map((d) => d.target) }, head, {
      resend: pass.resend,
    });
}

/** The targets that select the head and how each differs from it. */
async function headDrifts(
  pass: ReconcilePass,
  head: FileVersion,
): Promise<{ target: ReconcileDeps['targets'][number]; drift: Exclude<Drift, undefined> }[]> {
  const selecting = pass.targets.filter((t) => targetSelects(t, head.path));
  if (selecting.length === 0) return [];
  const states = new Map(
    (
      await pass.deps.ledger.listTargetStates(
        head.path,
        selecting.map((t) => t.id),
      )
    ).map((s) => [s.targetId, s]),
  );
  const drifts = [];
  for (const target of selecting) {
    const drift = await targetDrift(pass, head, target.id, states.get(target.id));
    if (drift) drifts.push({ target, drift });
  }
  return drifts;
}

/** How the target differs from the head: behind by the ledger's row, or by its object when checked. */
async function targetDrift(
  pass: ReconcilePass,
  head: FileVersion,
  targetId: string,
  state: TargetState | undefined,
): Promise<Drift> {
  // Behind includes a deleted path with no row at all: "no row" is not "never held" (replicate or
  // the agent may have written the file and died before its row, and the delete's message may
  // then be lost). The delete is re-sent once; applying it writes the row, so later runs skip it.
  if ((state?.appliedVersion ?? 0) < head.version) return 'behind';
  if (!pass.checkObjects) return undefined;
  // An object at a path the mirror deleted is what the listing finds and re-sends the delete for: a
  // HEAD per tombstone and cycle would make the walk's cost grow with every file ever deleted.
  if (head.deleted && pass.listedTargets?.has(targetId)) return undefined;
  const replica = pass.deps.replicas?.(targetId);
  if (!replica) return undefined;
  await pass.pace();
  return objectDrift(head, state?.etag, await replica.stat(head.path));
}

function countDrift(counts: TargetReconcile, drift: Exclude<Drift, undefined>): void {
  counts.resent++;
  if (drift === 'missing') counts.missing++;
  if (drift === 'altered') counts.altered++;
}

function objectDrift(
  head: FileVersion,
  recordedEtag: string | undefined,
  object:
    | { version: number | undefined; sha256: string | undefined; size: number; etag: string | undefined }
    | undefined,
): Drift {
  if (head.deleted) return object ? 'altered' : undefined;
  if (!object) return 'missing';
  const changed =
    object.version !== head.version ||
    object.sha256 !== head.sha256 ||
    object.size !== head.size ||
    (recordedEtag !== undefined && object.etag !== undefined && object.etag !== recordedEtag);
  return changed ? 'altered' : undefined;
}

/**
 * Spaces calls to at most `perSecond`, on time passed: on the wall clock, a step back (NTP on the
 * laptop running `media-mirror-ops reconcile`) made the next check wait out the whole step.
 */
function pacer(perSecond: number): () => Promise<void> {
  const gapMs = 1000 / perSecond;
  let next = 0;
  return async () => {
    const now = performance.now();
    const wait = next - now;
    next = Math.max(now, next) + gapMs;
    if (wait > 0) await sleep(wait);
  };
}

/**
 * The targets whose every object some listing weighs in this cycle, so that an object at a path the
 * mirror deleted is found there (and its delete re-sent) without a HEAD from the walk. A scheduled
 * run's listing begins with each cycle and goes on from run to run until it reaches every target's
 * last key: each of them. A run that does not resume: those it listed from the first key to the last.
 * A stray object put at a deleted path after the listing passed its key is found by the next cycle's.
 */
function targetsListedThisCycle(
  pass: ReconcilePass,
  foreign: Record<string, ForeignObjects>,
): ReadonlySet<string> {
  if (!(pass.options.listObjects ?? pass.checkObjects)) return new Set();
  const listable = pass.targets.filter((t) => pass.deps.replicas?.(t.id) !== undefined);
  if (pass.options.resume) return new Set(listable.map((t) => t.id));
  return new Set(
    listable
      .filter((t) => foreign[t.id]?.complete === true && foreign[t.id]?.resumedAfter === undefined)
      .map((t) => t.id),
  );
}

/**
 * This run's listing, if it lists: one begins at a cycle's start; a scheduled run that resumes
 * mid-cycle lists only to finish a listing an earlier run left unfinished, and otherwise leaves its
 * time to the walk. Half the time to the deadline is the listing's.
 */
async function foreignListing(
  pass: ReconcilePass,
  walk: Walk,
  deadline: number,
): Promise<Record<string, ForeignObjects>> {
  const { deps, options } = pass;
  if (!(options.listObjects ?? pass.checkObjects)) return {};
  if (walk.after !== undefined && walk.listing === undefined) return {};
  return listForeign(pass, Date.now() + (deadline - Date.now()) / 2, {
    from: walk.listing,
    save: options.resume ? (at) => saveListing(deps, walk, at) : undefined,
  });
}

/**
 * Lists each S3 target in turn until `deadline`, from `from` (else the first target's first key).
 * With `save` (a scheduled run) the position is saved after every page, and the listing stops at the
 * deadline between targets too (one page per run is always read): the next run goes on from there.
 * Without it nothing remembers the position, so each target gets a page at least, or a large first
 * bucket would keep the others from ever being listed.
 */
async function listForeign(
  pass: ReconcilePass,
  deadline: number,
  {
    from,
    save,
  }: {
    from: ListingPosition | undefined;
    save: ((at: ListingPosition | undefined) => Promise<void>) | undefined;
  },
): Promise<Record<string, ForeignObjects>> {
  const found: Record<string, ForeignObjects> = {};
  const listed = pass.targets.flatMap((target) => {
    const replica = pass.deps.replicas?.(target.id);
    return replica ? [{ target, replica }] : [];
  });
  const stored = from ? listed.findIndex(({ target }) => target.id === from.targetId) : -1;
  // A position naming a target no longer listed (out of the topology, its bucket unknown): where it
  // stood among the others is unknown, so the listing starts over rather than skip any.
  const first = Math.max(stored, 0);
  for (const [i, { target, replica }] of listed.entries()) {
    if (i < first) continue;
    if (save && Object.keys(found).length > 0 && Date.now() >= deadline) break;
    const next = listed[i + 1]?.target.id;
    const done = next === undefined ? undefined : { targetId: next };
    found[target.id] = await listTarget(pass, target, replica, {
      after: i === stored ? from?.after : undefined,
      deadline,
      saved: save && ((after) => save(after === undefined ? done : { targetId: target.id, after })),
    });
  }
  return found;
}

/** Lists one target's bucket after `after` (a page at least), until its last key or `deadline`. */
async function listTarget(
  pass: ReconcilePass,
  target: ReconcileDeps['targets'][number],
  replica: Pick<ReplicaStore, 'list'>,
  from: {
    after: string | undefined;
    deadline: number;
    /** Called after every page with the key the listing goes on after (undefined: the last key was reached). */
    saved: ((after: string | undefined) => Promise<void>) | undefined;
  },
): Promise<ForeignObjects> {
  const counts: ForeignObjects = {
    listed: 0,
    foreign: 0,
    deleted: 0,
    sample: [],
    complete: false,
    ...(from.after === undefined ? {} : { resumedAfter: from.after }),
  };
  let after = from.after;
  do {
    const page = await replica.list({ after, limit: pass.options.listPageSize ?? 1000 });
    counts.listed += page.objects.length;
    await foreignInPage(pass, target, page.objects, counts);
    after = page.next;
    counts.complete = after === undefined;
    await from.saved?.(after);
  } while (after !== undefined && Date.now() < from.deadline);
  return counts;
}

/**
 * Weighs one listing page: its paths' heads in one batched read (the page's live files), then each
 * path not live there read again strongly consistently (normally none: every object is a live file).
 */
async function foreignInPage(
  pass: ReconcilePass,
  target: ReconcileDeps['targets'][number],
  objects: readonly { key: string; path: string }[],
  counts: ForeignObjects,
): Promise<void> {
  const selected = objects.filter((o) => targetSelects(target, o.path)).map((o) => o.path);
  const live = new Set(selected.length === 0 ? [] : await pass.deps.ledger.liveFilesAmong(selected));
  for (const object of objects) {
    const found = await whyForeign(pass, target, object.path, live.has(object.path));
    if (!found) continue;
    counts.foreign++;
    if (counts.sample.length < FOREIGN_SAMPLE) counts.sample.push({ ...object, reason: found.reason });
    if (found.reason !== 'deleted' || !found.head) continue;
    counts.deleted++;
    if (!pass.options.dryRun) await resendDelete(pass, target, found.head);
  }
}

/** Why the target's object at `path` is not the mirror's (with the head that says so), or undefined if it is. */
async function whyForeign(
  pass: ReconcilePass,
  target: ReconcileDeps['targets'][number],
  path: string,
  live: boolean,
): Promise<{ reason: ForeignReason; head?: FileVersion | undefined } | undefined> {
  if (!targetSelects(target, path)) return { reason: 'unselected' };
  if (live) return undefined;
  const head = await pass.deps.ledger.getHead(path);
  if (!head) return { reason: 'unknown' };
  // Committed since the batched read: the target's file now.
  return head.deleted ? { reason: 'deleted', head } : undefined;
}

/**
 * The target holds a file the mirror deleted: re-send the tombstone, as the walk re-sends any drift.
 * A row that says the delete was applied is forgotten first (the object says otherwise), or the
 * replicate would skip the message. The run's tag makes a re-send the walk already made in this run
 * the same message, which the FIFO queue drops.
 */
async function resendDelete(
  pass: ReconcilePass,
  target: ReconcileDeps['targets'][number],
  tombstone: FileVersion,
): Promise<void> {
  const { deps } = pass;
  const state = await deps.ledger.getTargetState(tombstone.path, target.id);
  if ((state?.appliedVersion ?? 0) >= tombstone.version) {
    await deps.ledger.forgetTargetState(tombstone.path, target.id);
    await deps.ledger.rewindWatermark(target.id, tombstone.path, tombstone.version);
  }
  await fanOut({ fanout: deps.fanout, targets: [target] }, tombstone, { resend: pass.resend });
}
