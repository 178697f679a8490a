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
 * `--repair` fetches the right bytes through the same verified, atomic path the
 * agent uses, removes extras and leftover temp files, and records what it did in
 * the local state and the ledger. It takes the state lock, so it refuses to run
 * while the agent runs on the same folder.
 */
import type { Dirent } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Change } from '../contracts/model.ts';
import { Applier, hashLocalFile } from './applier.ts';
import { type AgentClients, destroyClients, makeClients, originBlobSource } from './aws.ts';
import type { AgentConfig } from './config.ts';
import { RefusedError } from './errors.ts';
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
}

async function walk(root: string, stateDir: string): Promise<LocalTree> {
  const tree: LocalTree = { files: new Set(), symlinks: [], temps: [] };
  const visit = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const full = join(dir, entry.name);
      if (full === stateDir || (dir === root && entry.name === STATE_DIR_NAME)) continue;
      const rel = relative(root, full).split(sep).join('/');
      if (entry.isSymbolicLink()) tree.symlinks.push(rel);
      else if (entry.isDirectory()) await visit(full);
      else if (isTempName(entry.name)) tree.temps.push(rel);
      else if (entry.isFile()) tree.files.add(rel);
    }
  };
  await visit(root);
  return tree;
}

export async function verifyMirror(config: AgentConfig, options: VerifyOptions): Promise<VerifyReport> {
  const paths = await SafePaths.open(config.dir);
  const needClients = !options.ports?.blobs || !options.ports.ledger;
  const clients = needClients ? (options.clients ?? makeClients(config)) : undefined;
  const ledger =
    options.ports?.ledger ??
    new DynamoLedgerView(clients?.dynamo as AgentClients['dynamo'], config.table, config.targetId);
  const blobs = options.ports?.blobs ?? originBlobSource(clients as AgentClients, config);
  const state = await StateStore.open(
    config.stateDir,
    { targetId: config.targetId, table: config.table, feedShards: config.feedShards },
    { readOnly: !options.repair },
  );
  try {
    const selects = (path: string) => config.pathPrefix === undefined || path.startsWith(config.pathPrefix);
    const allHeads = await readHeads(ledger, config.feedShards, 1000);
    const heads = new Map<string, Change>();
    const unsafe: DriftEntry[] = [];
    for (const [raw, change] of allHeads) {
      if (!selects(raw)) continue;
      try {
        heads.set(checkMirrorPath(raw).path, change);
      } catch (error) {
        if (!(error instanceof RefusedError)) throw error;
        if (!change.deleted) unsafe.push({ path: raw, reason: error.message, version: change.version });
      }
    }
    const tree = await walk(paths.root, config.stateDir);
    const symlinkSet = new Set(tree.symlinks);
    const missing: DriftEntry[] = [];
    const wrong: DriftEntry[] = [];
    const extra: DriftEntry[] = [];
    let ok = 0;
    let expected = 0;
    const pool = new Semaphore(Math.max(1, config.concurrency));
    let done = 0;
    const live = [...heads].filter(([, c]) => !c.deleted);
    await Promise.all(
      live.map(([path, head]) =>
        pool.run(async () => {
          expected++;
          try {
            if (symlinkSet.has(path)) {
              wrong.push({ path, version: head.version, reason: 'is a symlink, not a file' });
            } else if (!tree.files.has(path)) {
              missing.push({ path, version: head.version, reason: 'missing' });
            } else {
              const local = await hashLocalFile(join(paths.root, path));
              if (local.size !== head.size) {
                wrong.push({
                  path,
                  version: head.version,
                  reason: `size ${local.size}, the ledger says ${head.size}`,
                });
              } else if (local.sha256 !== head.sha256) {
                wrong.push({ path, version: head.version, reason: 'SHA-256 differs from the ledger' });
              } else ok++;
            }
          } finally {
            options.onProgress?.(++done, live.length);
          }
        }),
      ),
    );
    for (const file of tree.files) {
      const head = heads.get(file.normalize('NFC'));
      if (!head) extra.push({ path: file, reason: 'not in the ledger for this target' });
      else if (head.deleted)
        extra.push({ path: file, version: head.version, reason: 'deleted in the ledger' });
    }
    const byPath = (a: DriftEntry, b: DriftEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    missing.sort(byPath);
    wrong.sort(byPath);
    extra.sort(byPath);
    const report: VerifyReport = {
      targetId: config.targetId,
      dir: paths.root,
      expected,
      ok,
      missing,
      wrong,
      extra,
      unsafe,
      symlinks: tree.symlinks.sort(),
      staleTemps: tree.temps.sort(),
    };
    if (!options.repair) return report;
    return { ...report, repaired: await repair(report, { config, paths, state, blobs, ledger, heads }) };
  } finally {
    await state.close();
    if (clients && !options.clients) destroyClients(clients);
  }
}

async function repair(
  report: VerifyReport,
  ctx: {
    config: AgentConfig;
    paths: SafePaths;
    state: StateStore;
    blobs: BlobSource;
    ledger: LedgerView;
    heads: Map<string, Change>;
  },
) {
  const applier = new Applier({
    paths: ctx.paths,
    state: ctx.state,
    blobs: ctx.blobs,
    ledger: ctx.ledger,
    limiter: new BandwidthLimiter(ctx.config.maxBytesPerSecond),
    pathPrefix: ctx.config.pathPrefix,
  });
  const signal = new AbortController().signal;
  const failed: DriftEntry[] = [];
  let fetched = 0;
  let removed = 0;
  let temps = 0;
  const pool = new Semaphore(ctx.config.concurrency);
  const fix = async (path: string, head: Change) => {
    try {
      const outcome = await applier.apply(head, { signal, source: 'repair', force: true });
      if (outcome.kind === 'applied') fetched++;
      else if (outcome.kind === 'deleted') removed++;
      else if (outcome.kind === 'refused')
        failed.push({ path, version: head.version, reason: outcome.reason });
    } catch (error) {
      failed.push({ path, version: head.version, reason: errorMessage(error) });
    }
  };
  await Promise.all(
    [...report.missing, ...report.wrong].map((entry) =>
      pool.run(() => fix(entry.path, ctx.heads.get(entry.path) as Change)),
    ),
  );
  for (const entry of report.extra) {
    const head = ctx.heads.get(entry.path.normalize('NFC'));
    if (head?.deleted) {
      await fix(entry.path, head);
      continue;
    }
    try {
      const file = join(ctx.paths.root, entry.path);
      if (!ctx.paths.contains(file)) throw new Error('outside the mirror folder');
      await rm(file, { force: true });
      removed++;
    } catch (error) {
      failed.push({ path: entry.path, reason: `could not remove: ${errorMessage(error)}` });
    }
  }
  for (const temp of report.staleTemps) {
    await rm(join(ctx.paths.root, temp), { force: true });
    ctx.state.recordTempDone(temp);
    temps++;
  }
  return { fetched, removed, temps, failed };
}
