/**
 * `sync --wait`: once every file is committed, waits until every target that selects a synced
 * path holds it at the committed version (or a newer one), through the public API alone.
 *
 * Two answers say a target holds a file, both read from the ledger's per-target rows:
 * - `GET /v1/files/{path}` gives each selecting target's applied version. Files are asked for
 *   in rounds of growing batches (`fileRound`), and a file every target holds is never asked
 *   for again.
 * - `GET /v1/targets` gives each target's replication lag as the lag monitor last measured it.
 *   A measurement that read the whole feed, found no change unapplied and started after every
 *   synced file was seen committed proves the target holds them all: one request instead of one
 *   per file, which is what makes a re-run of a large library cheap to wait for. "After" is by
 *   the API's own clock (`GET /v1/health`) plus a margin for the functions' clocks differing a
 *   little; the monitor reads the feed strongly consistent, and a stale read of a target's row
 *   can only show it behind.
 *
 * No API route lists per-target state by prefix; the lag figures stand in for it when the mirror
 * is quiet, and the per-file reads when it is not (or when the monitor has not run since).
 */

import { terminalText } from '../common/terminal-text.ts';
import type { TargetList } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import type { Clock } from './upload.ts';

export type WaitClient = Pick<MirrorApi, 'getFile' | 'listTargets' | 'health'>;

/** A committed path and the version every target must hold (or pass). */
export interface WaitItem {
  readonly path: string;
  readonly version: number;
}

export interface WaitOptions {
  readonly timeoutSeconds: number;
  /** File status requests in flight. @default 8 */
  readonly concurrency?: number | undefined;
  /** File status requests per round, at most. @default 256 */
  readonly perRound?: number | undefined;
  /** Pause after a round that moved; doubles (to `maxDelayMs`) while rounds find nothing new. @default 250 */
  readonly firstDelayMs?: number | undefined;
  /** @default 5000 */
  readonly maxDelayMs?: number | undefined;
  /** How long after the commits were seen a lag measurement must start to vouch for them. @default 2000 */
  readonly lagMarginMs?: number | undefined;
}

export interface TargetWait {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  /** Synced files the target selects (its path prefix). */
  files: number;
  /** Of those, the files it holds at their committed version or newer. */
  held: number;
  /** Seconds into the wait when it held every file; null while it does not. */
  seconds: number | null;
  /**
   * A pull target's agent's conditions at the last look (`disk-full`, `read-only-filesystem`, …):
   * why files wait there, which no file's own row says while the agent retries.
   */
  agentConditions?: string[];
}

export interface BehindFile {
  readonly path: string;
  readonly version: number;
  /** The targets that did not hold it, with the last failure they recorded for it if any. */
  readonly targets: readonly {
    readonly id: string;
    readonly appliedVersion: number;
    readonly failure?: string;
  }[];
}

export interface WaitReport {
  readonly timeoutSeconds: number;
  seconds: number;
  /** Some target did not hold every file when the time was up. */
  timedOut: boolean;
  readonly targets: TargetWait[];
  /** Dry-run targets: they write nothing, so nothing is waited for. */
  readonly dryRunTargets: readonly string[];
  /** Files some target did not hold at the end (the first `BEHIND_SHOWN` by path listed). */
  behindFiles: number;
  behind: BehindFile[];
  /** API requests the wait made. */
  requests: number;
}

const BEHIND_SHOWN = 10;

interface Entry {
  readonly item: WaitItem;
  /** Targets that select the path and were not yet seen holding it. */
  readonly waiting: Set<string>;
  /** From the last status read: what each waiting target had applied, and its last failure. */
  last?: BehindFile['targets'];
  /** Status reads that found the file still behind somewhere: a file stuck at a target sinks. */
  misses: number;
  /** Its place in the order given (commit order, near enough: replication follows it). */
  readonly order: number;
}

interface Wait {
  readonly deps: WaitDeps;
  readonly started: number;
  readonly targets: Map<string, TargetWait>;
  /** Paths still waited for, in the order given (rounds resume where the last one stopped). */
  readonly open: Map<string, Entry>;
  readonly report: WaitReport;
  /** Lag measurements that started at or after this (epoch ms, the API's clock) vouch for the files. */
  readonly vouchAfter: number;
  /** Files the last round saw some target newly holding: the next round's first batch size. */
  lastMoved: number;
}

export interface WaitDeps {
  readonly client: WaitClient;
  readonly clock: Clock;
  /** After every round: the report so far (`behindFiles`: files some target does not hold yet). */
  readonly onRound?: ((report: Readonly<WaitReport>) => void) | undefined;
}

export async function waitForTargets(
  deps: WaitDeps,
  items: readonly WaitItem[],
  options: WaitOptions,
): Promise<WaitReport> {
  const { client, clock } = deps;
  const started = clock.now();
  const deadline = started + options.timeoutSeconds * 1000;
  const [list, health] = await Promise.all([client.listTargets(), client.health()]);
  const wait = startWait(deps, started, list, items, options, Date.parse(health.time));
  wait.report.requests += 2;
  let delay = options.firstDelayMs ?? 250;
  let first = true;
  for (;;) {
    // The lag figures cannot vouch before a measurement that starts after now: not worth a request at once.
    const vouched = first ? false : await lagRound(wait);
    const moved = (await fileRound(wait, options)) || vouched;
    first = false;
    wait.report.behindFiles = wait.open.size;
    deps.onRound?.(wait.report);
    if (wait.open.size === 0 || clock.now() >= deadline) break;
    // Faster while files come in, slower while nothing moves.
    delay = moved
      ? Math.max(options.firstDelayMs ?? 250, delay / 2)
      : Math.min(delay * 2, options.maxDelayMs ?? 5000);
    await clock.sleep(Math.max(0, Math.min(delay, deadline - clock.now())));
  }
  return finish(wait);
}

function startWait(
  deps: Wait['deps'],
  started: number,
  list: TargetList,
  items: readonly WaitItem[],
  options: WaitOptions,
  apiNow: number,
): Wait {
  const live = list.targets.filter((t) => t.dryRun !== true);
  const targets = new Map(
    live.map((t) => [t.id, { id: t.id, kind: t.kind, files: 0, held: 0, seconds: null as number | null }]),
  );
  const open = new Map<string, Entry>();
  for (const item of items) {
    const selecting = live.filter((t) => t.pathPrefix === undefined || item.path.startsWith(t.pathPrefix));
    for (const t of selecting) (targets.get(t.id) as TargetWait).files++;
    if (selecting.length > 0)
      open.set(item.path, {
        item,
        waiting: new Set(selecting.map((t) => t.id)),
        misses: 0,
        order: open.size,
      });
  }
  for (const t of targets.values()) if (t.files === 0) t.seconds = 0;
  return {
    deps,
    started,
    targets,
    open,
    vouchAfter: apiNow + (options.lagMarginMs ?? 2000),
    lastMoved: 0,
    report: {
      timeoutSeconds: options.timeoutSeconds,
      seconds: 0,
      timedOut: false,
      targets: [...targets.values()],
      dryRunTargets: list.targets.filter((t) => t.dryRun === true).map((t) => t.id),
      behindFiles: 0,
      behind: [],
      requests: 0,
    },
  };
}

/** `path` is held by `targetId`: counts it, and closes the path once every target holds it. */
function held(wait: Wait, entry: Entry, targetId: string): void {
  if (!entry.waiting.delete(targetId)) return;
  const target = wait.targets.get(targetId) as TargetWait;
  target.held++;
  if (target.held === target.files) target.seconds = secondsSince(wait);
  if (entry.waiting.size === 0) wait.open.delete(entry.item.path);
}

const secondsSince = (wait: Wait) => Math.round(wait.deps.clock.now() - wait.started) / 1000;

/** Targets whose lag figures vouch for every file: one `GET /v1/targets`. True if any did. */
async function lagRound(wait: Wait): Promise<boolean> {
  const behind = [...wait.targets.values()].filter((t) => t.held < t.files);
  if (behind.length === 0) return false;
  const { targets } = await wait.deps.client.listTargets();
  wait.report.requests++;
  noteAgentConditions(wait, targets);
  let moved = false;
  for (const t of targets) {
    const lag = t.lag;
    const measured = lag.measuredAt === undefined ? Number.NaN : Date.parse(lag.measuredAt);
    const vouches =
      lag.caughtUp === true && lag.pending === 0 && !lag.pendingCapped && measured >= wait.vouchAfter;
    if (!vouches || !behind.some((b) => b.id === t.id)) continue;
    for (const entry of [...wait.open.values()]) held(wait, entry, t.id);
    moved = true;
  }
  return moved;
}

function noteAgentConditions(
  wait: Wait,
  targets: Awaited<ReturnType<WaitClient['listTargets']>>['targets'],
): void {
  for (const t of targets) {
    const waiting = wait.targets.get(t.id);
    if (waiting === undefined || waiting.kind !== 'pull') continue;
    const conditions = t.lag.agentConditions ?? [];
    if (conditions.length > 0) waiting.agentConditions = [...conditions];
    else delete waiting.agentConditions;
  }
}

/**
 * Asks for the open files least often found behind first, oldest first among those: replication
 * follows commit order near enough, so when a target lacks the oldest file it lacks the newer
 * ones too. The first batch is as large as the number of files that moved in the last round (at
 * least one), and doubles, up to `concurrency`, while some target held every file of the batch
 * it was waiting for; the round stops after a batch in which every target still lacked one, or
 * after `perRound` requests. So a target trickling files in costs a few requests per file, one
 * that has caught up a round of full batches, and a stopped one a request per round.
 */
async function fileRound(wait: Wait, options: WaitOptions): Promise<boolean> {
  const concurrency = options.concurrency ?? 8;
  const queue = [...wait.open.values()].sort((a, b) => a.misses - b.misses || a.order - b.order);
  let budget = Math.min(options.perRound ?? 256, queue.length);
  let size = Math.min(concurrency, Math.max(1, wait.lastMoved));
  let moved = 0;
  while (budget > 0) {
    const batch = queue.splice(0, Math.min(size, budget));
    budget -= batch.length;
    const reads = await Promise.all(batch.map((entry) => checkFile(wait, entry)));
    wait.report.requests += batch.length;
    moved += reads.filter((r) => r.moved).length;
    const behind = new Set(reads.flatMap((r) => r.behind));
    if (!reads.some((r) => r.asked.some((id) => !behind.has(id)))) break;
    size = Math.min(concurrency, size * 2);
  }
  wait.lastMoved = moved;
  return moved > 0;
}

interface FileRead {
  /** The targets the file was waited for by, before this read. */
  readonly asked: readonly string[];
  /** Those that still lack it. */
  readonly behind: readonly string[];
  /** Some target was seen holding it for the first time. */
  readonly moved: boolean;
}

/** One `GET /v1/files/{path}`: which of the targets waited for hold the file now. */
async function checkFile(wait: Wait, entry: Entry): Promise<FileRead> {
  const asked = [...entry.waiting];
  let status: Awaited<ReturnType<WaitClient['getFile']>>;
  try {
    status = await wait.deps.client.getFile(entry.item.path);
  } catch (err) {
    // Bad credentials or a refused request will not mend by waiting; anything else may.
    if (err instanceof ApiError && [400, 401, 403].includes(err.status)) throw err;
    return { asked, behind: asked, moved: false };
  }
  const last: BehindFile['targets'][number][] = [];
  for (const id of asked) {
    const t = status.targets.find((s) => s.id === id);
    if (t === undefined || t.appliedVersion >= entry.item.version) held(wait, entry, id);
    else
      last.push({
        id,
        appliedVersion: t.appliedVersion,
        ...(t.failure === undefined ? {} : { failure: t.failure.reason }),
      });
  }
  entry.last = last;
  if (last.length > 0) entry.misses++;
  return { asked, behind: last.map((t) => t.id), moved: last.length < asked.length };
}

function finish(wait: Wait): WaitReport {
  const { report } = wait;
  report.seconds = secondsSince(wait);
  report.timedOut = wait.open.size > 0;
  report.behindFiles = wait.open.size;
  report.behind = [...wait.open.values()]
    .sort((a, b) => (a.item.path < b.item.path ? -1 : a.item.path > b.item.path ? 1 : 0))
    .slice(0, BEHIND_SHOWN)
    .map((e) => ({
      path: e.item.path,
      version: e.item.version,
      targets: [...e.waiting].map((id) => e.last?.find((t) => t.id === id) ?? { id, appliedVersion: 0 }),
    }));
  return report;
}

/** One line per target, and on a timeout the first files still behind. */
export function formatWaitReport(r: WaitReport): string {
  const lines = r.targets.map((t) => {
    const when =
      t.seconds === null ? `not all within ${r.timeoutSeconds} s` : `after ${t.seconds.toFixed(1)} s`;
    return `target ${t.id} (${t.kind}): ${t.held}/${t.files} file(s) held, ${when}${agentSays(t)}`;
  });
  for (const id of r.dryRunTargets) lines.push(`target ${id}: dry run, copies nothing (not waited for)`);
  for (const b of r.behind) {
    const at = b.targets
      .map(
        (t) =>
          `${t.id} has v${t.appliedVersion}${t.failure === undefined ? '' : ` (last failure: ${terminalText(t.failure)})`}`,
      )
      .join(', ');
    lines.push(`behind: ${terminalText(b.path)} v${b.version}: ${at}`);
  }
  if (r.behindFiles > r.behind.length) lines.push(`behind: ${r.behindFiles - r.behind.length} more file(s)`);
  return lines.join('\n');
}

/** The one-line error of a wait that timed out: the targets behind and a few of their files. */
export function waitTimeoutMessage(r: WaitReport): string {
  const late = r.targets
    .filter((t) => t.held < t.files)
    .map((t) => {
      const paths = r.behind.filter((b) => b.targets.some((x) => x.id === t.id)).map((b) => b.path);
      const few = paths.slice(0, 3).join(', ');
      return `${t.id} (${t.files - t.held} of ${t.files} behind, e.g. ${few})${agentSays(t)}`;
    });
  return `not every target holds the files after ${r.timeoutSeconds} s: ${late.join('; ')}`;
}

/** `; its agent reports disk-full` for a target held up by its agent's machine. */
function agentSays(t: TargetWait): string {
  const conditions = t.agentConditions ?? [];
  return t.held < t.files && conditions.length > 0
    ? `; its agent reports ${conditions.map(terminalText).join(', ')}`
    : '';
}
