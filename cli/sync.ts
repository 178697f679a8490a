/**
 * `media-mirror sync <dir> [prefix]`: brings a folder into the mirror, sending only what the
 * mirror does not hold. Each file's SHA-256 (from the hash cache when its size and stamp are
 * unchanged) is compared with its path's head, read once from the change feed: equal heads
 * cost no request at all. The rest go through the one upload flow (cli/upload.ts), many at a
 * time: content the mirror holds elsewhere is committed on proof of possession with no bytes
 * sent. Single PUTs are not waited for one by one: the feed, read on from the listing's cursor
 * every few seconds while files are sent and then until every file is settled, shows their
 * commits, and the uploads still missing are asked for directly, so a rejection is reported with
 * its reason. With `wait`, it then waits until every
 * target holds every file (cli/sync-wait.ts).
 */
import { terminalText } from '../common/terminal-text.ts';
import type { Limits } from '../contracts/api.ts';
import { contentTypeAllowed } from '../contracts/content-type.ts';
import { checkApiName, checkNewPathName, normalizePath, PathRuleError } from '../contracts/path-rules.ts';
import { ancestorsOf, type PathOccupancy, PathPolicy } from '../contracts/paths.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { acceptedGuess } from './content-type.ts';
import { followFeed, type OnFeedPage, type RemoteHead, readHeads } from './listing.ts';
import type { SendParts } from './multipart.ts';
import type { ProgressSink } from './progress.ts';
import type { PutFile } from './put-file.ts';
import { HashCache } from './sync-cache.ts';
import { excludeMatcher } from './sync-exclude.ts';
import type { SyncCounts, SyncProgress } from './sync-progress.ts';
import {
  folderSource,
  type SourceDigest,
  type SourceEntry,
  type SourceStat,
  type SyncSource,
} from './sync-source.ts';
import {
  formatWaitReport,
  type WaitItem,
  type WaitOptions,
  type WaitReport,
  waitForTargets,
} from './sync-wait.ts';
import { type Clock, uploadFile } from './upload.ts';

export type SyncClient = Pick<
  MirrorApi,
  | 'listChanges'
  | 'limits'
  | 'createUpload'
  | 'getUpload'
  | 'proveUpload'
  | 'getFile'
  | 'listTargets'
  | 'health'
>;

export interface SyncDeps {
  client: SyncClient;
  putFile: PutFile;
  sendParts: SendParts;
  clock: Clock;
  progress: SyncProgress;
  /**
   * Given, once the files are listed, a function that summarizes the run as it stands: a Ctrl-C
   * prints that (cli/file-commands.ts) instead of nothing. @default none
   */
  onSnapshot?: ((snapshot: () => SyncSummary) => void) | undefined;
}

export interface SyncOptions {
  /** A local folder; ignored when `source` is given. */
  dir: string;
  /** Where the library is read from. @default the folder `dir` */
  source?: SyncSource | undefined;
  /** Mirror paths are `prefix` + the file's path under `dir` ('/' added unless empty). */
  prefix: string;
  dryRun: boolean;
  /** Files hashed and sent at the same time. */
  jobs: number;
  /** The hash cache's file; null: no cache. */
  cacheFile: string | null;
  /** How long to wait for the commits once every file is sent. */
  timeoutSeconds: number;
  /** @default 500 */
  pollIntervalMs?: number | undefined;
  /** Once committed, wait until every target holds every file (not in a dry run). */
  wait?: WaitOptions | undefined;
  /** Entries left out of the run, matched against their path under the source (cli/sync-exclude.ts). */
  exclude?: readonly string[] | undefined;
}

export type FileOutcome = 'unchanged' | 'uploaded' | 'deduplicated' | 'planned' | 'skipped' | 'failed';

export interface SyncFileReport {
  file: string;
  path: string;
  size: number;
  outcome: FileOutcome;
  version?: number | undefined;
  /** Why a file was skipped or failed; for `planned`, `new` or `changed`. */
  reason?: string | undefined;
  /**
   * The type its extension maps to, which the mirror does not accept: the file goes (or, in a dry
   * run, would go) as application/octet-stream instead.
   */
  fellBackFrom?: string | undefined;
}

export interface SyncSummary {
  dir: string;
  prefix: string;
  dryRun: boolean;
  files: number;
  unchanged: number;
  uploaded: number;
  deduplicated: number;
  planned: number;
  skipped: number;
  failed: number;
  bytesHashed: number;
  bytesSent: number;
  seconds: number;
  /** With `--exclude`: the entries the patterns left out (not in `files`). */
  excluded?: number | undefined;
  /** Every file that was not unchanged (the unchanged are only counted). */
  reports: SyncFileReport[];
  /** With `wait`: what each target held when the wait ended. */
  wait?: WaitReport | undefined;
  /** With `wait`: why waiting for the targets stopped short (the API gone away, say). */
  waitError?: string | undefined;
  /** The hash cache could not be saved: the next run hashes these files again. */
  cacheError?: string | undefined;
  /**
   * The run was stopped (Ctrl-C, SIGTERM) before its end: `notFinished` files were not reached or
   * not finished, and `awaitingCommit` were sent without their commit seen yet (reported
   * `uploaded` with no version). A next run sends only what the mirror does not hold.
   */
  interrupted?: { notFinished: number; awaitingCommit: number } | undefined;
}

type LocalFile = SourceEntry;

interface Pending {
  readonly report: SyncFileReport;
  readonly uploadId: string;
  readonly sha256: string;
}

/** What a run shares: options, the mirror's heads and limits, counters, what awaits its commit. */
interface Run {
  readonly deps: SyncDeps;
  readonly options: SyncOptions;
  readonly source: SyncSource;
  readonly prefix: string;
  readonly limits: Limits;
  readonly heads: Map<string, RemoteHead>;
  readonly cache: HashCache;
  readonly counts: SyncCounts;
  readonly reports: SyncFileReport[];
  /** Files whose turn has ended (reported, or found unchanged); the rest are not done yet. */
  finished: number;
  /** Entries `--exclude` left out. */
  readonly excluded: number;
  readonly pending: Map<string, Pending>;
  /** SHA-256s the mirror holds (the heads) or that this run has sent: only these are worth a proof. */
  readonly known: Set<string>;
  /**
   * `--dry-run`: the targets' path policy and the heads as its occupancy, to predict the folder/file
   * rule's refusals (a real run learns them from the API).
   */
  readonly folderRule: { readonly policy: PathPolicy; readonly occupancy: PathOccupancy } | undefined;
  /** Files whose head already held their content: `wait` waits for them too (a run may not have). */
  readonly unchanged: WaitItem[];
  /** The change feed after the listing, read on to see this run's commits land. */
  readonly feed: FeedWatch;
}

interface FeedWatch {
  cursor: string | undefined;
  lastRead: number;
  /** A read started during the uploads; one at a time, since each carries the cursor on. */
  reading: Promise<void> | undefined;
}

/** How often the feed is read while files are still being sent (one request when nothing moved). */
const WATCH_EVERY_MS = 2_000;

export async function syncFolder(deps: SyncDeps, options: SyncOptions): Promise<SyncSummary> {
  const started = deps.clock.now();
  const counts: SyncCounts = {
    phase: 'listing',
    filesTotal: 0,
    filesDone: 0,
    versionsRead: 0,
    pages: 0,
    bytesHashed: 0,
    bytesSent: 0,
    failed: 0,
  };
  deps.progress.update(counts);
  const source = options.source ?? folderSource(options.dir, options.cacheFile);
  let run: Run;
  try {
    const listed = await source.list();
    const isExcluded = excludeMatcher(options.exclude ?? []);
    const files = listed.filter((entry) => !isExcluded(entry.rel));
    counts.filesTotal = files.length;
    const onPage = (versions: number) => {
      counts.versionsRead += versions;
      counts.pages++;
      deps.progress.update(counts);
    };
    const [limits, listing, policy] = await Promise.all([
      deps.client.limits(),
      readHeads(deps.client, onPage),
      options.dryRun ? targetsPolicy(deps.client) : undefined,
    ]);
    const cache = new HashCache(options.cacheFile, source.label);
    await cache.load();
    run = {
      deps,
      options: { ...options, dir: source.label },
      source,
      prefix: mirrorPrefix(options.prefix),
      limits,
      heads: listing.heads,
      cache,
      counts,
      reports: [],
      finished: 0,
      excluded: listed.length - files.length,
      pending: new Map(),
      // Every version's content, not the heads' alone: content only an older version (or a deleted
      // path) holds is committed on proof too, not sent again (probe V2).
      known: listing.contents,
      folderRule: policy && { policy, occupancy: headsOccupancy(listing.heads) },
      unchanged: [],
      feed: { cursor: listing.cursor, lastRead: deps.clock.now(), reading: undefined },
    };
    const live = run;
    deps.onSnapshot?.(() => interruptedSummary(live, files.length, (deps.clock.now() - started) / 1000));
    await syncFiles(run, files);
  } finally {
    await source.close();
  }
  const files = counts.filesTotal;
  // A wait cut short by an error still ends with the summary: which files were sent is known.
  let waitError: string | undefined;
  const wait =
    options.wait !== undefined && !options.dryRun
      ? await awaitTargets(run, options.wait).catch((error: unknown) => {
          waitError = error instanceof Error ? error.message : String(error);
          return undefined;
        })
      : undefined;
  counts.phase = 'done';
  deps.progress.update(counts);
  return {
    ...summarize(run, files, (deps.clock.now() - started) / 1000),
    wait,
    ...(waitError === undefined ? {} : { waitError }),
    ...(run.cache.saveError === undefined ? {} : { cacheError: run.cache.saveError }),
  };
}

/** Waits for every target to hold every committed file: those sent, and those found unchanged. */
async function awaitTargets(run: Run, options: WaitOptions): Promise<WaitReport> {
  const { counts, deps } = run;
  counts.phase = 'replicating';
  counts.filesDone = 0;
  const items = [
    ...run.unchanged,
    ...run.reports.flatMap((r) =>
      (r.outcome === 'uploaded' || r.outcome === 'deduplicated') && r.version !== undefined
        ? [{ path: r.path, version: r.version }]
        : [],
    ),
  ];
  counts.filesTotal = items.length;
  deps.progress.update(counts);
  const report = await waitForTargets(
    {
      client: deps.client,
      clock: deps.clock,
      onRound: (r) => {
        counts.filesDone = items.length - r.behindFiles;
        deps.progress.update(counts);
      },
    },
    items,
    options,
  );
  counts.filesDone = items.length - report.behindFiles;
  return report;
}

async function syncFiles(run: Run, files: readonly LocalFile[]): Promise<void> {
  run.counts.phase = 'syncing';
  const clashes = samePathClashes(run.prefix, files);
  try {
    await inPool(
      files,
      run.options.jobs,
      (f) => {
        const others = clashes.get(f.rel);
        return others === undefined ? syncOne(run, f) : refuseClash(run, f, others);
      },
      savingEvery(run, 5_000),
    );
  } finally {
    await run.cache.save();
    await run.feed.reading;
  }
  if (run.pending.size > 0) {
    // Sent files whose commit could not be confirmed (the API gone away, retries spent) are failed
    // with the reason, so the summary (which files did commit) is still printed.
    await awaitCommits(run).catch((error: unknown) => {
      const reason = `could not confirm the commit: ${error instanceof Error ? error.message : String(error)}`;
      for (const p of [...run.pending.values()]) settle(run, p, 'failed', undefined, reason);
    });
  }
}

/** `photos` → `photos/`; empty stays empty (the folder's files at the mirror's root). */
function mirrorPrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

/** Runs `work` over `items`, `jobs` at a time; `tick` after each item. */
async function inPool<T>(
  items: readonly T[],
  jobs: number,
  work: (item: T) => Promise<void>,
  tick: () => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
      await tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
}

/** Saves the hash cache at most every `ms` (one save at a time): a crash loses little hashing. */
function savingEvery(run: Run, ms: number): () => Promise<void> {
  let last = run.deps.clock.now();
  let saving: Promise<void> | undefined;
  return async () => {
    watchCommits(run);
    run.deps.progress.update(run.counts);
    if (saving !== undefined || run.deps.clock.now() - last < ms) return;
    last = run.deps.clock.now();
    saving = run.cache.save().finally(() => {
      saving = undefined;
    });
    await saving;
  };
}

/**
 * While files are still being sent, reads the feed on (at most every WATCH_EVERY_MS, in the
 * background) so the files already committed count as done: without it a long run showed none
 * done until every file was sent.
 */
function watchCommits(run: Run): void {
  const { feed, deps } = run;
  if (run.pending.size === 0 || feed.reading !== undefined) return;
  if (deps.clock.now() - feed.lastRead < WATCH_EVERY_MS) return;
  feed.lastRead = deps.clock.now();
  feed.reading = followFeed(deps.client, run.heads, feed.cursor, settlingPages(run))
    .then(() => undefined)
    // Only a count is lost: awaitCommits reads the feed again and reports what it cannot confirm.
    .catch(() => undefined)
    .finally(() => {
      feed.reading = undefined;
    });
}

/**
 * For each page of the feed read on: the cursor moves past it, and the files it shows committed
 * are done at once. While this run's own workers (or other writers) commit, a page is seldom
 * empty, and a read may not catch up until the last file is sent: settled only then, a 3,000-file
 * sync showed 0 done for minutes (probe). A page's cursor kept, a read cut off by an error
 * does not read those pages again. The read ends once no file awaits its commit (or at
 * `deadline`): other writers may keep the feed from ever coming back empty.
 */
function settlingPages(run: Run, deadline = Number.POSITIVE_INFINITY): OnFeedPage {
  return (_versions, cursor) => {
    run.feed.cursor = cursor;
    settleFromHeads(run);
    run.deps.progress.update(run.counts);
    return run.pending.size > 0 && run.deps.clock.now() < deadline;
  };
}

/**
 * Files whose mirror paths are one once normalized (NFC: "é" composed and decomposed are two names
 * on most file systems, one path in the mirror): by file, the others. Sending both would keep one
 * and lose the other, and every later sync would swap them.
 */
function samePathClashes(prefix: string, files: readonly LocalFile[]): Map<string, string[]> {
  const byPath = new Map<string, string[]>();
  for (const f of files) {
    const path = (prefix + f.rel).normalize('NFC');
    byPath.set(path, [...(byPath.get(path) ?? []), f.rel]);
  }
  const clashes = new Map<string, string[]>();
  for (const rels of byPath.values()) {
    if (rels.length < 2) continue;
    for (const rel of rels)
      clashes.set(
        rel,
        rels.filter((r) => r !== rel),
      );
  }
  return clashes;
}

async function refuseClash(run: Run, local: LocalFile, others: readonly string[]): Promise<void> {
  run.reports.push({
    file: local.name,
    path: (run.prefix + local.rel).normalize('NFC'),
    size: 0,
    outcome: 'failed',
    reason:
      `same mirror path as ${others.map((o) => JSON.stringify(o)).join(', ')} once Unicode-normalized (NFC): ` +
      'neither is sent; rename one',
  });
  run.counts.failed++;
  run.counts.filesDone++;
  run.finished++;
}

async function syncOne(run: Run, local: LocalFile): Promise<void> {
  const report: SyncFileReport = {
    file: local.name,
    path: run.prefix + local.rel,
    size: 0,
    outcome: 'failed',
  };
  try {
    await decide(run, local, report);
  } catch (err) {
    report.outcome = 'failed';
    report.reason = err instanceof Error ? err.message : String(err);
  } finally {
    await run.source.release(local).catch(() => undefined);
  }
  if (report.outcome === 'failed') run.counts.failed++;
  if (report.outcome !== 'unchanged') run.reports.push(report);
  if (!run.pending.has(report.path)) run.counts.filesDone++;
  run.finished++;
}

/** Fills in `report`: skipped, unchanged, planned, sent (or awaiting its commit). */
async function decide(run: Run, local: LocalFile, report: SyncFileReport): Promise<void> {
  const info = await run.source.stat(local);
  report.size = info.size;
  const byName = acceptedGuess(local.name, run.limits.contentTypes);
  // A bucket's object has a type of its own, known once it is read: judged then. A folder's file is
  // judged by its name before it is read.
  const { storesTypes } = run.source;
  const refusal = info.notSent ?? refuse(run, report, storesTypes ? undefined : byName.contentType);
  if (refusal !== undefined) {
    report.outcome = 'skipped';
    report.reason = refusal;
    return;
  }
  const digest = await digestOf(run, local, info);
  // An object's own type is what its owner set, not a guess: refused, the object is skipped.
  const typed = digest.contentType === undefined ? byName : { contentType: digest.contentType };
  const typeRefusal = storesTypes ? refusedType(run, typed.contentType) : undefined;
  if (typeRefusal !== undefined) {
    report.outcome = 'skipped';
    report.reason = typeRefusal;
    return;
  }
  if (typed.fellBackFrom !== undefined) report.fellBackFrom = typed.fellBackFrom;
  const head = run.heads.get(report.path);
  if (head !== undefined && !head.deleted && head.sha256 === digest.sha256) {
    report.outcome = 'unchanged';
    report.version = head.version;
    run.unchanged.push({ path: report.path, version: head.version });
    return;
  }
  if (run.options.dryRun) {
    const conflict = await predictedConflict(run, report.path);
    if (conflict !== undefined) {
      report.outcome = 'failed';
      report.reason = conflict;
      return;
    }
    report.outcome = 'planned';
    report.reason = head === undefined || head.deleted ? 'new' : 'changed';
    return;
  }
  await send(run, local, report, digest, typed.contentType);
}

/** The deployment's targets as the path policy needs them (`GET /v1/targets`). */
async function targetsPolicy(client: Pick<SyncClient, 'listTargets'>): Promise<PathPolicy> {
  const { targets } = await client.listTargets();
  return new PathPolicy(targets.map(({ id, kind, pathPrefix }) => ({ id, kind, pathPrefix })));
}

/**
 * `--dry-run`: the folder/file rule's refusal the API would give this path, judged on the heads
 * read at the start (a file where live files lie, or under a live file, for a pull target), in the
 * words of a real run's failure. Conflicts between two files of this run are not predicted: which
 * one is refused depends on which commits first.
 */
async function predictedConflict(run: Run, path: string): Promise<string | undefined> {
  if (run.folderRule === undefined) return undefined;
  try {
    await run.folderRule.policy.checkOccupancy(path, run.folderRule.occupancy);
    return undefined;
  } catch (error) {
    if (!(error instanceof PathRuleError)) throw error;
    return error.message;
  }
}

/** The heads read at the start as the rule's occupancy: live files, and the folders they lie in. */
function headsOccupancy(heads: ReadonlyMap<string, RemoteHead>): PathOccupancy {
  const live = [...heads.values()].filter((h) => !h.deleted).map((h) => h.path);
  const files = new Set(live);
  const folders = new Set(live.flatMap(ancestorsOf));
  return {
    liveFilesAmong: async (paths) => paths.filter((p) => files.has(p)),
    hasLiveFileUnder: async (folder) => folders.has(folder),
  };
}

/**
 * Why the API would refuse this file (read from `GET /v1/limits`), before anything is claimed; its
 * content type is judged too when given.
 */
function refuse(run: Run, report: SyncFileReport, contentType: string | undefined): string | undefined {
  const { limits } = run;
  if (report.size > limits.maxUploadBytes) {
    return `larger than the mirror accepts (${report.size} > ${limits.maxUploadBytes} bytes)`;
  }
  const typeRefusal = contentType === undefined ? undefined : refusedType(run, contentType);
  if (typeRefusal !== undefined) return typeRefusal;
  try {
    report.path = normalizePath(report.path);
    checkApiName(report.path);
    checkNewPathName(report.path);
  } catch (err) {
    return (err as Error).message;
  }
  if (Buffer.byteLength(report.path, 'utf8') > limits.maxPathBytes) {
    return `path longer than ${limits.maxPathBytes} bytes`;
  }
  return undefined;
}

function refusedType(run: Run, contentType: string): string | undefined {
  const accepted = run.limits.contentTypes;
  return contentTypeAllowed(contentType, accepted)
    ? undefined
    : `content type ${contentType} is not accepted (accepted: ${accepted.join(', ')})`;
}

async function digestOf(run: Run, local: LocalFile, info: SourceStat): Promise<SourceDigest> {
  const known = run.cache.lookup(local.rel, info.size, info.stamp);
  if (known !== undefined) return known;
  const digest = await run.source.hash(local, hashedBytes(run.counts));
  // A rewrite later in the same clock tick would keep this stamp, and the cache would vouch for
  // these bytes for good: the next run hashes the file again instead.
  if (info.recent !== true) run.cache.remember(local.rel, info.stamp, digest);
  return digest;
}

/** Adds one file's hashed bytes to the run's count, as its running total comes in. */
function hashedBytes(counts: SyncCounts): (done: number) => void {
  let counted = 0;
  return (done) => {
    counts.bytesHashed += done - counted;
    counted = done;
  };
}

async function send(
  run: Run,
  local: LocalFile,
  report: SyncFileReport,
  cached: SourceDigest,
  contentType: string,
): Promise<void> {
  const { deps, options } = run;
  // A bucket's object is read here when its digest came from the cache: what is sent is what was hashed.
  const bytes = await run.source.file(local, hashedBytes(run.counts));
  const digest = bytes.digest ?? cached;
  // Content no version in the feed names and this run has not sent is almost never held: answering
  // its challenge would cost a request (and a refusal) per new file. Without `proveUpload` the flow
  // sends the bytes at once.
  const api = deps.client;
  const client = run.known.has(digest.sha256)
    ? api
    : { createUpload: api.createUpload.bind(api), getUpload: api.getUpload.bind(api) };
  run.known.add(digest.sha256);
  const result = await uploadFile(
    {
      client,
      putFile: deps.putFile,
      sendParts: deps.sendParts,
      clock: deps.clock,
      progress: sentBytes(run.counts),
      hashFile: async () => digest,
    },
    {
      file: bytes.file,
      path: report.path,
      contentType,
      wait: false,
      timeoutSeconds: options.timeoutSeconds,
    },
  );
  report.version = result.version ?? undefined;
  if (result.status === 'pending') {
    report.outcome = 'uploaded';
    run.pending.set(report.path, { report, uploadId: result.uploadId, sha256: digest.sha256 });
    return;
  }
  report.outcome = result.deduplicated ? 'deduplicated' : 'uploaded';
}

/** A ProgressSink that adds one file's sent bytes to the run's count. */
function sentBytes(counts: SyncCounts): ProgressSink {
  let phase = '';
  let counted = 0;
  return {
    phase(p) {
      phase = p;
      counted = 0;
    },
    bytes(done) {
      if (phase !== 'uploading') return;
      counts.bytesSent += done - counted;
      counted = done;
    },
    stop() {},
  };
}

/**
 * Waits until every sent file is committed: the feed after the listing's cursor shows most of
 * them at once; uploads it does not show are asked for one by one (rejected, expired, or
 * committed and already replaced by a newer version).
 */
async function awaitCommits(run: Run): Promise<void> {
  const { deps, options, pending, counts } = run;
  counts.phase = 'committing';
  const deadline = deps.clock.now() + options.timeoutSeconds * 1000;
  let rounds = 0;
  while (pending.size > 0) {
    run.feed.cursor = await followFeed(deps.client, run.heads, run.feed.cursor, settlingPages(run, deadline));
    if (pending.size > 0 && rounds++ % 4 === 3) await settleFromUploads(run);
    deps.progress.update(counts);
    if (pending.size === 0) return;
    if (deps.clock.now() >= deadline) break;
    await deps.clock.sleep(options.pollIntervalMs ?? 500);
  }
  for (const p of pending.values()) {
    settle(
      run,
      p,
      'failed',
      undefined,
      `not committed within ${options.timeoutSeconds} s (upload ${p.uploadId})`,
    );
  }
}

function settleFromHeads(run: Run): void {
  for (const p of [...run.pending.values()]) {
    const head = run.heads.get(p.report.path);
    if (head !== undefined && !head.deleted && head.sha256 === p.sha256)
      settle(run, p, 'uploaded', head.version);
  }
}

/** Asks for up to 50 uploads the feed has not shown committed. */
async function settleFromUploads(run: Run): Promise<void> {
  const batch = [...run.pending.values()].slice(0, 50);
  await inPool(
    batch,
    8,
    async (p) => {
      const upload = await run.deps.client.getUpload(p.uploadId);
      if (upload.status === 'committed') settle(run, p, 'uploaded', upload.version);
      else if (upload.status !== 'pending')
        settle(run, p, 'failed', undefined, `${upload.status}: ${upload.reason ?? 'no reason given'}`);
    },
    async () => {},
  );
}

function settle(run: Run, p: Pending, outcome: FileOutcome, version?: number, reason?: string): void {
  run.pending.delete(p.report.path);
  p.report.outcome = outcome;
  p.report.version = version;
  if (reason !== undefined) p.report.reason = reason;
  if (outcome === 'failed') run.counts.failed++;
  run.counts.filesDone++;
}

function summarize(run: Run, files: number, seconds: number): SyncSummary {
  const count = (o: FileOutcome) => run.reports.filter((r) => r.outcome === o).length;
  const failed = count('failed');
  return {
    dir: run.options.dir,
    prefix: run.prefix,
    dryRun: run.options.dryRun,
    files,
    unchanged: files - run.reports.length,
    uploaded: count('uploaded'),
    deduplicated: count('deduplicated'),
    planned: count('planned'),
    skipped: count('skipped'),
    failed,
    bytesHashed: run.counts.bytesHashed,
    bytesSent: run.counts.bytesSent,
    seconds: Math.round(seconds * 1000) / 1000,
    ...((run.options.exclude?.length ?? 0) > 0 ? { excluded: run.excluded } : {}),
    reports: run.reports.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
  };
}

/** The run as it stands, stopped: only finished files count as unchanged; sent ones say so. */
function interruptedSummary(run: Run, files: number, seconds: number): SyncSummary {
  const awaiting = new Set([...run.pending.values()].map((p) => p.report));
  const summary = summarize(run, run.finished, seconds);
  return {
    ...summary,
    files,
    reports: summary.reports.map((r) =>
      awaiting.has(r) ? { ...r, reason: 'sent; its commit was not seen before the interrupt' } : r,
    ),
    interrupted: { notFinished: files - run.finished, awaitingCommit: awaiting.size },
  };
}

export function formatSyncSummary(s: SyncSummary): string {
  const lines = s.reports
    .filter((r) => r.outcome === 'failed' || r.outcome === 'skipped' || r.outcome === 'planned')
    // A local name may hold a line break (and a reason quotes it): escaped here, it cannot pass
    // for a line of its own, such as a fake summary.
    .map((r) => {
      const [path, reason] = [terminalText(r.path), terminalText(r.reason ?? '')];
      return `${r.outcome === 'planned' ? `would upload (${reason})` : r.outcome}: ${path}${r.outcome === 'planned' ? '' : `: ${reason}`}`;
    });
  const fellBack = s.reports.flatMap((r) => (r.fellBackFrom === undefined ? [] : [r.fellBackFrom]));
  if (fellBack.length > 0)
    lines.push(
      `application/octet-stream for ${fellBack.length} file(s) whose extension's type the mirror does not accept ` +
        `(${[...new Set(fellBack)].sort().join(', ')})`,
    );
  const sent = s.dryRun
    ? `${s.planned} to upload (dry run: nothing sent)`
    : `${s.uploaded} uploaded, ${s.deduplicated} deduplicated (no bytes sent)`;
  if (s.wait !== undefined) lines.push(formatWaitReport(s.wait));
  if (s.interrupted !== undefined)
    lines.push(
      `interrupted: ${s.interrupted.notFinished} file(s) not finished, ${s.interrupted.awaitingCommit} sent ` +
        'without their commit seen; sync again to finish (it sends only what the mirror does not hold)',
    );
  const excluded = s.excluded === undefined ? '' : ` (${s.excluded} excluded)`;
  lines.push(
    `${s.files} file(s)${excluded} in ${terminalText(s.dir)} → ${s.prefix === '' ? '(root)' : terminalText(s.prefix)}: ${s.unchanged} unchanged, ${sent}, ` +
      `${s.skipped} skipped, ${s.failed} failed; ${s.bytesHashed} bytes hashed, ${s.bytesSent} bytes sent in ${s.seconds.toFixed(1)} s`,
  );
  return lines.join('\n');
}
