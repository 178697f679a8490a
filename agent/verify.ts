/**
 * `media-mirror agent verify`: re-hash the mirror folder against the ledger.
 *
 * The ledger's heads for the target's selection come from the change feed read
 * from the start (every committed version is in it; the agent's role may Query
 * `FEED#*`, and may not Scan the table). Each head is compared with the folder:
 *
 * - missing: the ledger has a file the folder lacks;
 * - wrong:   the folder has other bytes (size or SHA-256) than the head;
 * - extra:   the folder has a file the ledger does not (or has deleted).
 *
 * `--repair` removes extras and leftover temp files (and the folders that left
 * empty), then fetches the right bytes through the same verified, atomic path the
 * agent uses, and records what it did in the local state and the ledger. It takes
 * the state lock, so it refuses to run while the agent runs on the same folder.
 */
import type { Dirent } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { decodeName, escapeNonUtf8 } from '../common/file-names.ts';
import type { Change } from '../contracts/model.ts';
import { Applier, hashLocalFile, isKeptAsideName } from './applier.ts';
import { type AgentClients, destroyClients, makeClients, originBlobSource } from './aws.ts';
import type { AgentConfig } from './config.ts';
import { MirrorFolderMovedError, RefusedError } from './errors.ts';
import { checkShardCountAgainstLedger, checkShardCountAgainstState } from './feed-shards.ts';
import { DynamoLedgerView } from './ledger.ts';
import type { BlobSource, LedgerView } from './ports.ts';
import { checkMirrorPath, isTempName, SafePaths, STATE_DIR_NAME } from './safe-path.ts';
import { StateStore } from './state-store.ts';
import { BandwidthLimiter, errorMessage, Semaphore } from './util.ts';

export interface DriftEntry {
  readonly path: string;
  readonly reason: string;
  readonly version?: number;
}

export interface VerifyReport {
  readonly targetId: string;
  readonly dir: string;
  /** Live files the ledger has for this target (heads not deleted). */
  readonly expected: number;
  readonly ok: number;
  readonly missing: readonly DriftEntry[];
  readonly wrong: readonly DriftEntry[];
  readonly extra: readonly DriftEntry[];
  /** Ledger paths the agent refuses to write (escaping or reserved names). */
  readonly unsafe: readonly DriftEntry[];
  /**
   * Files the agent kept aside (someone's, found where a version went or at a deleted path): not
   * drift, never removed, so that `--repair` does not undo what the agent kept.
   */
  readonly keptAside: readonly string[];
  /** Symlinks found in the folder: reported, never followed, never removed. */
  readonly symlinks: readonly string[];
  readonly staleTemps: readonly string[];
  readonly repaired?: {
    readonly fetched: number;
    readonly removed: number;
    readonly temps: number;
    readonly failed: readonly DriftEntry[];
  };
}

export function driftCount(report: VerifyReport): number {
  return report.missing.length + report.wrong.length + report.extra.length + report.staleTemps.length;
}

export interface VerifyOptions {
  readonly repair: boolean;
  readonly clients?: AgentClients;
  readonly ports?: { blobs?: BlobSource; ledger?: LedgerView };
  readonly onProgress?: (done: number, total: number) => void;
}

/** Every head of the feed: the newest version of each path. */
async function readHeads(ledger: Pick<LedgerView, 'readFeed'>, shards: number, pageSize: number) {
  const heads = new Map<string, Change>();
  await Promise.all(
    Array.from({ length: shards }, async (_, shard) => {
      let after = 0;
      for (;;) {
        const page = await ledger.readFeed(shard, after, pageSize);
        if (page.length === 0) return;
        for (const change of page) {
          const seen = heads.get(change.path);
          if (!seen || change.version > seen.version) heads.set(change.path, change);
          after = Math.max(after, change.seq);
        }
      }
    }),
  );
  return heads;
}

interface LocalTree {
  files: Set<string>;
  symlinks: string[];
  temps: string[];
  /**
   * Entries whose name is not valid UTF-8 (Latin-1 from an old share or archive), by their path
   * with `\xNN` escapes: no mirror path names them, and their name's bytes are what removes them
   * (decoded, the name would read U+FFFD in their place and name no file). A folder is not read.
   */
  notUtf8: Map<string, { readonly name: Buffer; readonly folder: boolean }>;
}

async function walk(root: string, stateDir: string): Promise<LocalTree> {
  const tree: LocalTree = { files: new Set(), symlinks: [], temps: [], notUtf8: new Map() };
  await visitFolder(root, { root, stateDir, tree });
  return tree;
}

/** Sorts a folder's entries into the tree; symlinks are noted, never followed. */
async function visitFolder(
  dir: string,
  walking: { root: string; stateDir: string; tree: LocalTree },
): Promise<void> {
  const { root, stateDir, tree } = walking;
  for (const entry of await readFolder(dir)) {
    const name = decodeName(entry.name);
    const full = join(dir, name ?? escapeNonUtf8(entry.name));
    const rel = relative(root, full).split(sep).join('/');
    if (name === undefined) {
      if (entry.isSymbolicLink()) tree.symlinks.push(rel);
      else tree.notUtf8.set(rel, { name: entry.name, folder: entry.isDirectory() });
      continue;
    }
    // The agent's own state is not part of the mirror.
    if (full === stateDir || (dir === root && name === STATE_DIR_NAME)) continue;
    if (entry.isSymbolicLink()) tree.symlinks.push(rel);
    else if (entry.isDirectory()) await visitFolder(full, walking);
    else if (isTempName(name)) tree.temps.push(rel);
    else if (entry.isFile()) tree.files.add(rel);
  }
}

/** A folder's entries, their names as bytes; none when it is gone (removed while the walk ran). */
async function readFolder(dir: string): Promise<Dirent<Buffer>[]> {
  try {
    return await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export async function verifyMirror(config: AgentConfig, options: VerifyOptions): Promise<VerifyReport> {
  const paths = await SafePaths.open(config.dir);
  const needClients = !options.ports?.blobs || !options.ports.ledger;
  const clients = needClients ? (options.clients ?? makeClients(config)) : undefined;
  const ownView = options.ports?.ledger
    ? undefined
    : new DynamoLedgerView(clients?.dynamo as AgentClients['dynamo'], config.table, config.targetId);
  const ledger = options.ports?.ledger ?? (ownView as DynamoLedgerView);
  // One view for both: the blob record it reads with a version serves that version's download.
  const blobs = options.ports?.blobs ?? originBlobSource(clients as AgentClients, config, ownView);
  try {
    await checkShardCount(config, ledger);
  } catch (error) {
    if (clients && !options.clients) destroyClients(clients);
    throw error;
  }
  const state = await StateStore.open(
    config.stateDir,
    { targetId: config.targetId, table: config.table, feedShards: config.feedShards },
    { readOnly: !options.repair },
  );
  try {
    const { heads, unsafe } = selectedHeads(
      await readHeads(ledger, config.feedShards, 1000),
      config.pathPrefix,
    );
    const tree = await walk(paths.root, config.stateDir);
    const checked = await checkLiveFiles(heads, tree, paths.root, config.concurrency, options.onProgress);
    // The walk and the hashes went by path: they describe the mirror folder only if it is still there.
    await paths.checkRoot();
    const report: VerifyReport = {
      targetId: config.targetId,
      dir: paths.root,
      ...checked,
      missing: checked.missing.sort(byPath),
      wrong: checked.wrong.sort(byPath),
      extra: extraFiles(tree, heads)
        .filter((e) => !isKeptAsideFile(e.path, heads))
        .sort(byPath),
      keptAside: [...tree.files].filter((file) => isKeptAsideFile(file, heads)).sort(),
      unsafe,
      symlinks: tree.symlinks.sort(),
      staleTemps: tree.temps.sort(),
    };
    if (!options.repair) return report;
    return {
      ...report,
      repaired: await repair(report, { tree, config, paths, state, blobs, ledger, heads }),
    };
  } finally {
    await state.close();
    if (clients && !options.clients) destroyClients(clients);
  }
}

/**
 * Before the state is opened (a repair would record the count) and before any head is read: with
 * a count other than the deployment's, live files would be reported extra and removed.
 */
async function checkShardCount(config: AgentConfig, ledger: LedgerView): Promise<void> {
  checkShardCountAgainstState(config, (await StateStore.peekIdentity(config.stateDir))?.feedShards);
  await checkShardCountAgainstLedger(ledger, config);
}

const byPath = (a: DriftEntry, b: DriftEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * The heads of the target's selection, keyed by their checked (NFC) path; a path the agent
 * would refuse to write is reported as unsafe unless it is deleted anyway.
 */
function selectedHeads(
  allHeads: Map<string, Change>,
  pathPrefix: string | undefined,
): { heads: Map<string, Change>; unsafe: DriftEntry[] } {
  const heads = new Map<string, Change>();
  const unsafe: DriftEntry[] = [];
  for (const [raw, change] of allHeads) {
    if (pathPrefix !== undefined && !raw.startsWith(pathPrefix)) continue;
    try {
      heads.set(checkMirrorPath(raw).path, change);
    } catch (error) {
      if (!(error instanceof RefusedError)) throw error;
      if (!change.deleted) unsafe.push({ path: raw, reason: error.message, version: change.version });
    }
  }
  return { heads, unsafe };
}

/** Compares each live head with the folder, hashing at most `concurrency` files at once. */
async function checkLiveFiles(
  heads: Map<string, Change>,
  tree: LocalTree,
  root: string,
  concurrency: number,
  onProgress: VerifyOptions['onProgress'],
): Promise<{ expected: number; ok: number; missing: DriftEntry[]; wrong: DriftEntry[] }> {
  const symlinkSet = new Set(tree.symlinks);
  const result = { expected: 0, ok: 0, missing: [] as DriftEntry[], wrong: [] as DriftEntry[] };
  const pool = new Semaphore(Math.max(1, concurrency));
  let done = 0;
  const live = [...heads].filter(([, c]) => !c.deleted);
  await Promise.all(
    live.map(([path, head]) =>
      pool.run(async () => {
        result.expected++;
        try {
          const drift = await checkFile(path, head, { tree, symlinkSet, root });
          if (drift === undefined) result.ok++;
          else result[drift.kind].push(drift.entry);
        } finally {
          onProgress?.(++done, live.length);
        }
      }),
    ),
  );
  return result;
}

/** How one live file differs from its head, or undefined when it matches. */
async function checkFile(
  path: string,
  head: Change,
  local: { tree: LocalTree; symlinkSet: Set<string>; root: string },
): Promise<{ kind: 'missing' | 'wrong'; entry: DriftEntry } | undefined> {
  const version = head.version;
  if (local.symlinkSet.has(path))
    return { kind: 'wrong', entry: { path, version, reason: 'is a symlink, not a file' } };
  if (!local.tree.files.has(path)) return { kind: 'missing', entry: { path, version, reason: 'missing' } };
  const found = await hashLocalFile(join(local.root, path));
  if (found.size !== head.size) {
    return {
      kind: 'wrong',
      entry: { path, version, reason: `size ${found.size}, the ledger says ${head.size}` },
    };
  }
  if (found.sha256 !== head.sha256) {
    return { kind: 'wrong', entry: { path, version, reason: 'SHA-256 differs from the ledger' } };
  }
  return undefined;
}

/** A file named as the agent names what it keeps aside, at no live path of the ledger. */
function isKeptAsideFile(file: string, heads: Map<string, Change>): boolean {
  const head = heads.get(file);
  return (head === undefined || head.deleted) && isKeptAsideName(basename(file));
}

/**
 * Files in the folder that the ledger does not have for this target, or has deleted. A file is a
 * path's by its exact name: the agent writes the NFC name, and on Linux a file named in NFD (copied
 * in from a Mac) is another file beside it, which the ledger cannot have (its paths are NFC).
 */
function extraFiles(tree: LocalTree, heads: Map<string, Change>): DriftEntry[] {
  const extra: DriftEntry[] = [];
  for (const file of tree.files) {
    const head = heads.get(file);
    if (!head) extra.push({ path: file, reason: 'not in the ledger for this target' });
    else if (head.deleted) extra.push({ path: file, version: head.version, reason: 'deleted in the ledger' });
  }
  for (const [path, { folder }] of tree.notUtf8) {
    extra.push({
      path,
      reason: `its name is not valid UTF-8 (shown with \\xNN escapes), so no mirror path names it${folder ? '; a folder, not read: remove or rename it by hand' : ''}`,
    });
  }
  return extra;
}

interface RepairContext {
  tree: LocalTree;
  config: AgentConfig;
  paths: SafePaths;
  state: StateStore;
  blobs: BlobSource;
  ledger: LedgerView;
  heads: Map<string, Change>;
}

interface RepairTally {
  fetched: number;
  removed: number;
  temps: number;
  failed: DriftEntry[];
}

/**
 * Removals run before fetches: extras or a temp file in a folder where a file belongs (or a file
 * where a folder of files belongs) would otherwise refuse the fetch, and only a second run would
 * repair it (probe O5).
 */
async function repair(report: VerifyReport, ctx: RepairContext): Promise<RepairTally> {
  const applier = new Applier({
    paths: ctx.paths,
    state: ctx.state,
    blobs: ctx.blobs,
    ledger: ctx.ledger,
    limiter: new BandwidthLimiter(ctx.config.maxBytesPerSecond),
    pathPrefix: ctx.config.pathPrefix,
  });
  const signal = new AbortController().signal;
  const tally: RepairTally = { fetched: 0, removed: 0, temps: 0, failed: [] };
  const fix = async (path: string, head: Change) => {
    try {
      const outcome = await applier.apply(head, { signal, source: 'repair', force: true });
      if (outcome.kind === 'applied') tally.fetched++;
      else if (outcome.kind === 'deleted') tally.removed++;
      // Anything else left the drift where it was: never "all repaired".
      else
        tally.failed.push({
          path,
          version: head.version,
          reason: outcome.kind === 'refused' ? outcome.reason : outcome.kind,
        });
    } catch (error) {
      if (error instanceof MirrorFolderMovedError) throw error;
      tally.failed.push({ path, version: head.version, reason: errorMessage(error) });
    }
  };
  for (const entry of report.extra) {
    const head = ctx.heads.get(entry.path);
    // The applier's delete records the deleted head locally and in the ledger, and prunes too.
    const notUtf8 = ctx.tree.notUtf8.get(entry.path);
    if (head?.deleted) await fix(entry.path, head);
    else if (notUtf8?.folder === true) tally.failed.push(entry);
    else if (await removeFound(entry.path, ctx.paths, tally, notUtf8?.name)) tally.removed++;
  }
  for (const temp of report.staleTemps) {
    if (!(await removeFound(temp, ctx.paths, tally))) continue;
    ctx.state.recordTempDone(temp);
    tally.temps++;
  }
  const pool = new Semaphore(ctx.config.concurrency);
  // Settled, all: the state closes after the last fetch, not while others still run.
  const fetches = await Promise.allSettled(
    [...report.missing, ...report.wrong].map((entry) =>
      pool.run(() => fix(entry.path, ctx.heads.get(entry.path) as Change)),
    ),
  );
  for (const fetched of fetches) if (fetched.status === 'rejected') throw fetched.reason;
  return tally;
}

/**
 * Removes a file the walk found, through real folders only, then the folders that left empty.
 * False (and a `failed` entry) when it could not.
 */
async function removeFound(
  found: string,
  paths: SafePaths,
  tally: RepairTally,
  /** The name's bytes, when they are not valid UTF-8 (`found` then shows them escaped). */
  rawName?: Buffer,
): Promise<boolean> {
  try {
    const parent = await paths.existingParentOf(found);
    // A folder on the way is gone: so is the file.
    if (parent === undefined) return true;
    const file =
      rawName === undefined
        ? join(parent, basename(found))
        : Buffer.concat([Buffer.from(`${parent}${sep}`), rawName]);
    await rm(file, { force: true });
    await paths.pruneEmptyFolders(parent);
    return true;
  } catch (error) {
    // Not one file's failure: nothing more may be written or removed (docs/agent.md).
    if (error instanceof MirrorFolderMovedError) throw error;
    tally.failed.push({ path: found, reason: `could not remove: ${errorMessage(error)}` });
    return false;
  }
}
