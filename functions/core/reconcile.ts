/**
 * Anti-entropy: compare what the ledger says each target should hold with what
 * the target holds, and re-send what is missing, outdated or altered. Runs on a
 * schedule, on demand (`media-mirror reconcile`), and at local start (queue state
 * does not survive a local restart). A target added to the topology is filled
 * by the same pass: it has applied nothing, so every head is re-sent to it.
 */
import { sleep } from '../../common/retry.ts';
import type { FileVersion } from '../../contracts/model.js';
import { targetSelects } from '../../contracts/topology.js';
import { fanOut } from './commit.js';
import type { FanoutQueue, ReplicaStore, TargetLedger, VersionLedger } from './ports.js';

export interface ReconcileDeps {
  readonly ledger: VersionLedger & TargetLedger;
  readonly fanout: FanoutQueue;
  readonly targets: readonly { readonly id: string; readonly pathPrefix?: string | undefined }[];
  /** S3 targets' buckets, to check the objects themselves (not only the ledger's record of them). */
  readonly replicas?: (targetId: string) => ReplicaStore | undefined;
}

export interface TargetReconcile {
  /** Versions re-sent (for any reason). */
  resent: number;
  /** The ledger said applied, but the object is gone. */
  missing: number;
  /** The object differs from what was written (version, hash, size or ETag). */
  altered: number;
}

export interface ReconcileReport {
  readonly heads: number;
  readonly targets: Record<string, TargetReconcile>;
  readonly dryRun: boolean;
}

export interface ReconcileOptions {
  readonly targetIds?: readonly string[];
  /** Count and report, change nothing. */
  readonly dryRun?: boolean;
  /** Check objects in S3 targets (one HEAD per path and target). @default true when replicas are given */
  readonly checkObjects?: boolean;
  /** Upper bound on object checks per second, to spare the buckets' request rates. @default 50 */
  readonly checksPerSecond?: number;
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
    // Distinct from the original send, which the FIFO queue would still deduplicate for 5 minutes.
    resend: `reconcile-${Date.now()}`,
    report: Object.fromEntries(targets.map((t) => [t.id, { resent: 0, missing: 0, altered: 0 }])),
    checkObjects: options.checkObjects ?? deps.replicas !== undefined,
    pace: pacer(options.checksPerSecond ?? 50),
  };
  let heads = 0;
  for await (const head of deps.ledger.scanHeads()) {
    heads++;
    await reconcileHead(pass, head);
  }
  return { heads, targets: pass.report, dryRun: options.dryRun === true };
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
}

type TargetState = Awaited<ReturnType<TargetLedger['listTargetStates']>>[number];

/** Finds the targets that selected this head and do not hold it, and re-sends it to them. */
async function reconcileHead(pass: ReconcilePass, head: FileVersion): Promise<void> {
  const { deps, options } = pass;
  const selecting = pass.targets.filter((t) => targetSelects(t, head.path));
  const states = new Map(
    (
      await deps.ledger.listTargetStates(
        head.path,
        selecting.map((t) => t.id),
      )
    ).map((s) => [s.targetId, s]),
  );
  const needed: { id: string }[] = [];
  for (const target of selecting) {
    const state = states.get(target.id);
    const drift = await targetDrift(pass, head, target.id, state);
    if (!drift) continue;
    countDrift(pass.report[target.id] as TargetReconcile, drift);
    needed.push(target);
    // The row says applied; the object says otherwise: forget the row so the resend is applied.
    if (drift !== 'behind' && !options.dryRun) await deps.ledger.forgetTargetState(head.path, target.id);
  }
  if (needed.length > 0 && !options.dryRun)
    await fanOut({ fanout: deps.fanout, targets: needed }, head, { resend: pass.resend });
}

/** How the target differs from the head: behind by the ledger's row, or by its object when checked. */
async function targetDrift(
  pass: ReconcilePass,
  head: FileVersion,
  targetId: string,
  state: TargetState | undefined,
): Promise<Drift> {
  if ((state?.appliedVersion ?? 0) < head.version) {
    // A path deleted before this target ever held it needs nothing there.
    return head.deleted && !state ? undefined : 'behind';
  }
  if (!pass.checkObjects) return undefined;
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

/** Spaces calls to at most `perSecond`. */
function pacer(perSecond: number): () => Promise<void> {
  const gapMs = 1000 / perSecond;
  let next = 0;
  return async () => {
    const now = Date.now();
    const wait = next - now;
    next = Math.max(now, next) + gapMs;
    if (wait > 0) await sleep(wait);
  };
}
