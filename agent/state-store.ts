/**
 * The agent's local state: which version of each path is applied, the feed
 * cursor, and the temp files it may have left behind. It must survive `kill -9`
 * (and, as far as the disk keeps its promises, power loss) at any instant.
 *
 * Layout, in the state folder (`<dir>/.media-mirror/` by default):
 *
 *   state.snapshot   a complete state, JSON lines: a header, one line per path, an end marker
 *   state.journal    records appended since the snapshot, one JSON object per line
 *   agent.lock       the pid of the agent using this folder
 *   agent.lock.takeover-<hash>   for a moment, while a stale lock is taken over (common/pid-lock.ts)
 *
 * Why a snapshot plus a journal, not one JSON file rewritten on every change:
 * rewriting a file that lists every path costs O(paths) per applied file, so a
 * bootstrap of a million files would write ~10^12 bytes. An append is O(1); many
 * appliers share one fsync (group commit). The snapshot is written on start and
 * whenever the journal grows past the number of paths, so start-up replays at
 * most about one journal's worth.
 *
 * Crash safety:
 * - The snapshot is replaced atomically: written to `state.snapshot.tmp-<pid>`,
 *   fsynced, renamed over the old one, and the folder fsynced. A crash before the
 *   rename leaves the old snapshot (the temp file is removed on the next start);
 *   after it, the new one. Only then is the journal truncated.
 * - Every journal record is idempotent under "keep the highest": a path's record
 *   only raises its version, a cursor record only raises each shard's seq. The
 *   exceptions (`r: 1`: a ledger restored from a backup) set the value outright,
 *   and the records after them raise it again, so the journal's last word stands
 *   whatever it is replayed over. So replaying a journal over a snapshot that
 *   already contains it (a crash between the rename and the truncation) changes nothing.
 * - An apply record is fsynced before the apply returns, so a path's recorded
 *   version is never behind the previous file the agent renamed into place; a
 *   torn last line (a crash mid-append) is ignored, and its apply is redone.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { crashPoint } from '../common/crash-points.ts';
import { foreignness } from '../common/own-file.ts';
import { createOrTakeOver, lockContent, readHolder } from '../common/pid-lock.ts';
import { AgentConfigError } from './errors.ts';
import { makeConfiguredFolder } from './safe-path.ts';
import { fsyncDir } from './util.ts';

export interface PathState {
  readonly version: number;
  /** null for a tombstone. */
  readonly sha256: string | null;
  readonly size: number;
  readonly deleted: boolean;
}

export interface StateIdentity {
  readonly targetId: string;
  /** The ledger table: a state from another deployment must not be reused. */
  readonly table: string;
  readonly feedShards: number;
}

export interface StateStoreOptions {
  /** Compact when the journal has more records than this and than paths. @default 50_000 */
  readonly compactAfter?: number;
  /** Load only: no lock, no compaction, no writes (verify without --repair). */
  readonly readOnly?: boolean;
  /**
   * What the agent selects: its path prefix, '' for every path. The cursor passed the changes it did
   * not select, so a selection the recorded one does not contain (the prefix taken off, widened or
   * moved) reads the whole feed again. Absent (verify): the recorded one is kept.
   */
  readonly selection?: string | undefined;
  /** Fault injection for tests: runs between the snapshot's fsync and its rename. */
  readonly beforeSnapshotRename?: () => Promise<void> | void;
  /** Called with a warning (a corrupt journal line, a stale temp snapshot). */
  readonly warn?: (message: string, fields?: Record<string, unknown>) => void;
}

const SNAPSHOT = 'state.snapshot';
const JOURNAL = 'state.journal';
const LOCK = 'agent.lock';
const FORMAT = 1;

type JournalRecord =
  /** `r: 1`: replaces a higher version held (recordApplied's `replace`). */
  | { a: [string, number, string | null, number, 0 | 1]; r?: 1 }
  /**
   * Each shard's seq and the mark of the entry there (`m`, null when unknown); keep the highest,
   * unless `r: 1`: the shard's feed was rewritten (a ledger restored from a backup) and it starts over.
   */
  | { c: number[]; m?: (string | null)[]; r?: 1 }
  | { t: string }
  | { u: string }
  /** A state made from nothing has caught up with the whole feed (StateStore.rebuilding). */
  | { b: 0 };

interface Pending {
  readonly line: string;
  readonly durable: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

export interface LoadReport {
  readonly snapshotPaths: number;
  readonly journalRecords: number;
  readonly tornTail: boolean;
  readonly corruptLines: number;
  readonly cursorReset: boolean;
}

/** Why a loaded cursor is not used: the feed's shard count, or the target's selection, changed. */
type CursorReset =
  | { readonly kind: 'shards'; readonly was: unknown }
  | { readonly kind: 'selection'; readonly was: string };

/** Device and inode of the folder at `path` (through symlinks), or undefined when there is none. */
async function folderIdentity(path: string): Promise<{ dev: bigint; ino: bigint } | undefined> {
  try {
    const { dev, ino } = await stat(path, { bigint: true });
    return { dev, ino };
  } catch {
    return undefined;
  }
}

/**
 * One agent per state folder: a second one would split the queue and race on the journal. The
 * lock is created whole in one step (a link) and a stale one is taken over by one process only:
 * before, two agents started together, or over a lock left by a process that is gone, could both
 * take it. Only a live process that is the lock's writer holds it: a pid handed on by a reboot or
 * a container restart is not an agent, and exit 78 would keep the unit down for good (docs/agent.md).
 * Its own process may take it again (a state reopened in one process, as tests do).
 */
async function lockStateDir(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK);
  const content = lockContent();
  await createOrTakeOver(
    file,
    content,
    (holder) =>
      new AgentConfigError(
        `the state folder ${dir} is in use by another agent (pid ${holder.pid}): stop it first, or use another --state-dir`,
      ),
  );
  return async () => {
    // Only our own: another agent may hold the folder now (ours was removed and taken over).
    if ((await readHolder(file).catch(() => undefined))?.text === content)
      await unlink(file).catch(() => undefined);
  };
}

/**
 * The state says which version of each path the agent holds and where its cursor stands, and the
 * agent acts on it (an equal or older version is skipped; a file it holds is replaced): whoever may
 * write the folder decides that, and a lock written there keeps the agent from starting. The agent
 * makes it 0700; one made otherwise (by hand, in a shared place, by another user first) was used as
 * it was.
 */
async function refuseForeignFolder(dir: string): Promise<void> {
  const problem = foreignness(await stat(dir));
  if (problem === undefined) return;
  throw new AgentConfigError(
    `the state folder ${dir} is not to be trusted: ${problem}: ` +
      'whoever may write it decides what the agent believes it holds; chmod 700 it if it is yours',
  );
}

export class StateStore {
  private readonly paths = new Map<string, PathState>();
  private cursorSeqs: number[];
  /** The mark of the feed entry at each shard's cursor (catch-up checks it is still there); null when unknown. */
  private cursorMarkList: (string | null)[];
  private readonly temps = new Set<string>();
  private appliedTotalCount = 0;
  /**
   * A state made from nothing (a new server, an empty disk, a removed state folder) until a
   * catch-up round has read the whole feed: what the ledger says this target holds was written
   * by a previous run, and the disk may lack any of it (docs/agent.md, "Reports centrally").
   */
  private rebuildingState = false;
  private journal: FileHandle | undefined;
  private journalRecords = 0;
  private journalBytes = 0;
  private readonly pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private unlock: (() => Promise<void>) | undefined;
  /** The folder `dir` named when opened for writing. */
  private dirIdentity: { readonly dev: bigint; readonly ino: bigint } | undefined;
  /** The folder holding `dir` when opened: a removed state folder is made again only in it. */
  private parentIdentity: { readonly dev: bigint; readonly ino: bigint } | undefined;
  private closed = false;
  /** The selection the cursor was read for (StateStoreOptions.selection), as the snapshot records it. */
  private selection: string | undefined;
  /** Temp files a previous run recorded and may have left behind. */
  readonly leftoverTemps: readonly string[];
  loadReport: LoadReport | undefined;

  private constructor(
    readonly dir: string,
    readonly identity: StateIdentity,
    private readonly options: StateStoreOptions,
  ) {
    this.cursorSeqs = Array.from({ length: identity.feedShards }, () => 0);
    this.cursorMarkList = this.cursorSeqs.map(() => null);
    this.leftoverTemps = [];
    this.selection = options.selection;
  }

  /**
   * Loads the state of `dir` (creating an empty one), checks it belongs to `identity`
   * (a target id of '' accepts any), takes the lock and compacts.
   */
  static async open(
    dir: string,
    identity: StateIdentity,
    options: StateStoreOptions = {},
  ): Promise<StateStore> {
    const store = new StateStore(dir, identity, options);
    if (!options.readOnly) {
      await makeConfiguredFolder(dir, 'the state folder', 0o700);
      await refuseForeignFolder(dir);
      const { dev, ino } = await stat(dir, { bigint: true });
      store.dirIdentity = { dev, ino };
      store.parentIdentity = await folderIdentity(dirname(dir));
      store.unlock = await lockStateDir(dir);
    }
    try {
      await store.load();
      if (!options.readOnly) {
        await store.compact();
        store.journal = await open(join(dir, JOURNAL), 'a', 0o600);
      }
    } catch (error) {
      await store.unlock?.();
      throw error;
    }
    return store;
  }

  /** Reads the identity recorded in a state folder, if any (verify finds its target this way). */
  static async peekIdentity(dir: string): Promise<Partial<StateIdentity> | undefined> {
    try {
      const text = await readFile(join(dir, SNAPSHOT), 'utf8');
      const header = JSON.parse(text.slice(0, text.indexOf('\n'))) as Partial<StateIdentity>;
      return header;
    } catch {
      return undefined;
    }
  }

  // Reading

  get(path: string): PathState | undefined {
    return this.paths.get(path);
  }

  get size(): number {
    return this.paths.size;
  }

  entries(): IterableIterator<[string, PathState]> {
    return this.paths.entries();
  }

  get cursor(): readonly number[] {
    return this.cursorSeqs;
  }

  /** The mark recorded with a shard's cursor: which entry it stands on (null when not known). */
  cursorMark(shard: number): string | null {
    return this.cursorMarkList[shard] ?? null;
  }

  get appliedTotal(): number {
    return this.appliedTotalCount;
  }

  /** Made from nothing, and no catch-up round has read the whole feed since (kept across restarts). */
  get rebuilding(): boolean {
    return this.rebuildingState;
  }

  get targetId(): string {
    return this.identity.targetId;
  }

  // Writing

  /** Records that `path` now holds `state` (durable when the promise resolves). Never lowers a version. */
  /**
   * Records what the folder holds at `path`; a lower version than the one held only with `replace`
   * (the ledger's version over a state it does not know: one restored from a backup, or a repair),
   * journalled as such, so a replay puts it back in the same order.
   */
  async recordApplied(path: string, state: PathState, options: { replace?: boolean } = {}): Promise<void> {
    const held = this.paths.get(path);
    const replace =
      options.replace === true &&
      held !== undefined &&
      (held.version > state.version || (held.version === state.version && held.sha256 !== state.sha256));
    if (held && held.version >= state.version && !replace) return;
    const fields: [string, number, string | null, number, 0 | 1] = [
      path,
      state.version,
      state.sha256,
      state.size,
      state.deleted ? 1 : 0,
    ];
    await this.append(replace ? { a: fields, r: 1 } : { a: fields }, true);
    const now = this.paths.get(path);
    if (replace || !now || now.version < state.version) this.paths.set(path, state);
    this.appliedTotalCount++;
  }

  /**
   * Raises the cursor (per shard, never down), each raised shard with the mark of the entry it now
   * stands on. Written, not fsynced: losing it only means re-reading.
   */
  async recordCursor(cursor: readonly number[], marks: readonly (string | null)[] = []): Promise<void> {
    if (!this.raiseCursor(cursor, marks)) return;
    await this.append({ c: this.cursorSeqs, m: this.cursorMarkList }, false);
  }

  /**
   * Starts a shard's cursor over from 0: its feed no longer holds the entry the cursor stood on
   * (the ledger was restored from a backup), so every entry is read again. Fsynced: a lost reset
   * would leave the cursor past entries it never read.
   */
  async resetCursor(shard: number): Promise<void> {
    if (shard < 0 || shard >= this.cursorSeqs.length) return;
    this.cursorSeqs = this.cursorSeqs.map((seq, i) => (i === shard ? 0 : seq));
    this.cursorMarkList = this.cursorMarkList.map((mark, i) => (i === shard ? null : mark));
    await this.append({ c: this.cursorSeqs, m: this.cursorMarkList, r: 1 }, true);
  }

  /** Keep the highest per shard, with the mark that came with it; true when a shard moved. */
  private raiseCursor(cursor: readonly unknown[], marks: readonly unknown[]): boolean {
    let moved = false;
    this.cursorSeqs = this.cursorSeqs.map((seq, shard) => {
      const next = Number(cursor[shard]) || 0;
      if (next <= seq) return seq;
      moved = true;
      const mark = marks[shard];
      this.cursorMarkList[shard] = typeof mark === 'string' ? mark : null;
      return next;
    });
    return moved;
  }

  /** A temp file is about to be created (relative to the mirror folder): written before it exists. */
  /** A catch-up round read the whole feed with every entry settled: the disk holds what it lists. */
  async recordRebuilt(): Promise<void> {
    if (!this.rebuildingState) return;
    this.rebuildingState = false;
    await this.append({ b: 0 }, true);
  }

  async recordTemp(relative: string): Promise<void> {
    this.temps.add(relative);
    await this.append({ t: relative }, false);
  }

  /** The temp file was renamed or removed. */
  recordTempDone(relative: string): void {
    if (!this.temps.delete(relative)) return;
    this.append({ u: relative }, false).catch(() => undefined);
  }

  /** Waits for every record appended so far to be written and fsynced. */
  async flush(): Promise<void> {
    if (this.options.readOnly) return;
    await this.append(null, true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    let moved = false;
    try {
      if (this.journal) {
        await this.flush();
        while (this.flushing) await this.flushing;
        this.closed = true;
        moved = !(await this.stillAtItsPath());
        if (moved) {
          this.options.warn?.(
            'the state folder is no longer at its path: its snapshot and lock are left as they are (the journal holds every record)',
            { stateDir: this.dir },
          );
        } else {
          await this.compact();
        }
      }
    } finally {
      this.closed = true;
      await this.journal?.close().catch(() => undefined);
      this.journal = undefined;
      if (!moved) await this.unlock?.();
    }
  }

  /**
   * Whether `dir` still names the folder opened: the journal is written through its handle, the
   * snapshot and the lock by path. With the mirror folder moved and a symlink in its place
   * (docs/agent.md, "Never writing outside `--dir`"), the default `<dir>/.media-mirror` leads into
   * the link's target, where a snapshot or the removal of a lock must not go. Followed through
   * symlinks: `--state-dir` may be reached through one.
   */
  private async stillAtItsPath(): Promise<boolean> {
    if (this.dirIdentity === undefined) return true;
    try {
      const { dev, ino } = await stat(this.dir, { bigint: true });
      return dev === this.dirIdentity.dev && ino === this.dirIdentity.ino;
    } catch (error) {
      if (['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return false;
      throw error;
    }
  }

  // Journal (group commit)

  private append(record: JournalRecord | null, durable: boolean): Promise<void> {
    if (this.options.readOnly) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the state store is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line: record ? `${JSON.stringify(record)}\n` : '', durable, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.flushLoop().finally(() => {
      this.flushing = undefined;
      if (this.pending.length > 0) this.kick();
    });
  }

  private async flushLoop(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      try {
        await this.recreateIfRemoved();
        await this.writeBatch(batch);
        for (const p of batch) p.resolve();
      } catch (error) {
        for (const p of batch) p.reject(error);
      }
      await this.compactIfDue();
    }
  }

  /**
   * A state folder removed while the agent runs (a cleanup of hidden folders, an rsync --delete
   * into the mirror folder) would take the lock with it, so a second agent could start on the same
   * folder, and the journal would go on into a deleted file, every record lost at the next start.
   * Made again from what the store holds: lock, snapshot, a new journal. Only when nothing is at
   * its path and its parent is still there: a folder moved away (a symlink or another folder in its
   * place) is left to stillAtItsPath, and a mirror folder gone is the agent's check of its root.
   */
  private async recreateIfRemoved(): Promise<void> {
    if (this.dirIdentity === undefined || this.closed) return;
    try {
      await lstat(this.dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return;
    }
    // Followed through symlinks: with the mirror folder swapped for a link, `<dir>/.media-mirror`
    // leads into the link's target, where nothing of the agent's may be written.
    const parent = await folderIdentity(dirname(this.dir));
    if (parent?.dev !== this.parentIdentity?.dev || parent?.ino !== this.parentIdentity?.ino) return;
    try {
      await mkdir(this.dir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const { dev, ino } = await stat(this.dir, { bigint: true });
    this.dirIdentity = { dev, ino };
    this.unlock = await lockStateDir(this.dir);
    const removed = this.journal;
    this.journal = await open(join(this.dir, JOURNAL), 'a', 0o600);
    await removed?.close().catch(() => undefined);
    await this.compact();
    this.options.warn?.('the state folder was removed while the agent ran: written again from its memory', {
      stateDir: this.dir,
    });
  }

  /** Appends a batch's lines in one write, and syncs once if any of them asked to be durable. */
  private async writeBatch(batch: readonly { line: string; durable: boolean }[]): Promise<void> {
    const text = batch.map((p) => p.line).join('');
    const journal = this.journal;
    if (!journal) throw new Error('the state store is not open for writing');
    if (text.length > 0) {
      try {
        await journal.appendFile(text);
      } catch (error) {
        // A short write (disk full) must not leave half a line for the next record to glue onto.
        await journal.truncate(this.journalBytes).catch(() => undefined);
        throw error;
      }
      this.journalBytes += Buffer.byteLength(text);
      this.journalRecords += batch.filter((p) => p.line !== '').length;
    }
    if (batch.some((p) => p.durable)) await journal.datasync();
  }

  /** The journal is folded into a snapshot once it holds more records than the snapshot would. */
  private async compactIfDue(): Promise<void> {
    const threshold = Math.max(this.options.compactAfter ?? 50_000, this.paths.size);
    if (this.journalRecords <= threshold) return;
    await this.compact().catch((error: unknown) =>
      this.options.warn?.('could not compact the state journal; will retry', {
        error: (error as Error).message,
      }),
    );
  }

  // Snapshot

  private snapshotLines(): Iterable<string> {
    const header = {
      format: FORMAT,
      targetId: this.identity.targetId,
      table: this.identity.table,
      feedShards: this.identity.feedShards,
      ...(this.selection === undefined ? {} : { selection: this.selection }),
      cursor: this.cursorSeqs,
      cursorMarks: this.cursorMarkList,
      appliedTotal: this.appliedTotalCount,
      ...(this.rebuildingState ? { rebuilding: true } : {}),
      temps: [...this.temps],
      savedAt: new Date().toISOString(),
    };
    const paths = this.paths;
    return (function* () {
      yield `${JSON.stringify(header)}\n`;
      let chunk = '';
      for (const [path, s] of paths) {
        chunk += `${JSON.stringify([path, s.version, s.sha256, s.size, s.deleted ? 1 : 0])}\n`;
        if (chunk.length > 1 << 20) {
          yield chunk;
          chunk = '';
        }
      }
      yield `${chunk}${JSON.stringify({ end: paths.size })}\n`;
    })();
  }

  /** Writes a new snapshot atomically, then empties the journal. */
  private async compact(): Promise<void> {
    if (!(await this.stillAtItsPath()))
      throw new Error(`the state folder ${this.dir} is no longer at its path: no snapshot written there`);
    crashPoint('agent.before-snapshot');
    const target = join(this.dir, SNAPSHOT);
    const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      for (const piece of this.snapshotLines()) await handle.appendFile(piece);
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw error;
    }
    await handle.close();
    if (this.options.beforeSnapshotRename) {
      await this.options.beforeSnapshotRename();
    }
    await rename(temp, target);
    await fsyncDir(this.dir);
    if (this.journal) {
      await this.journal.truncate(0);
      await this.journal.sync();
    } else {
      await rm(join(this.dir, JOURNAL), { force: true });
      await fsyncDir(this.dir);
    }
    this.journalRecords = 0;
    this.journalBytes = 0;
  }

  // Loading

  private checkIdentity(header: Record<string, unknown>): boolean {
    const { targetId, table } = this.identity;
    if (header.format !== FORMAT) {
      throw new AgentConfigError(
        `the state in ${this.dir} has format ${String(header.format)}; this agent reads format ${FORMAT}`,
      );
    }
    if (targetId !== '' && header.targetId !== targetId) {
      throw new AgentConfigError(
        `the state in ${this.dir} belongs to target "${String(header.targetId)}", not "${targetId}": ` +
          'use another --dir or --state-dir, or remove that folder to start over',
      );
    }
    if (table !== '' && header.table !== table) {
      throw new AgentConfigError(
        `the state in ${this.dir} was built from ledger table "${String(header.table)}", not "${table}": ` +
          'remove that folder to bootstrap against the new ledger',
      );
    }
    if (this.identity.targetId === '' && typeof header.targetId === 'string') {
      (this as { identity: StateIdentity }).identity = {
        ...this.identity,
        targetId: header.targetId,
        table: typeof header.table === 'string' ? header.table : this.identity.table,
      };
    }
    return header.feedShards === this.identity.feedShards;
  }

  private applyRecord(record: unknown): boolean {
    if (record === null || typeof record !== 'object') return false;
    const r = record as Record<string, unknown>;
    if (Array.isArray(r.a)) return this.applyAppliedRecord(r.a as unknown[], r.r === 1);
    if (Array.isArray(r.c)) {
      if (r.c.length === this.cursorSeqs.length) {
        const marks = Array.isArray(r.m) ? (r.m as unknown[]) : [];
        if (r.r === 1) {
          this.cursorSeqs = this.cursorSeqs.map(() => 0);
          this.cursorMarkList = this.cursorMarkList.map(() => null);
        }
        this.raiseCursor(r.c as unknown[], marks);
      }
      return true;
    }
    if (typeof r.t === 'string') {
      this.temps.add(r.t);
      return true;
    }
    if (typeof r.u === 'string') {
      this.temps.delete(r.u);
      return true;
    }
    if (r.b === 0) {
      this.rebuildingState = false;
      return true;
    }
    return false;
  }

  /** A journal's applied record; an older version replaces a newer one only if the record says so. */
  private applyAppliedRecord(fields: unknown[], replace: boolean): boolean {
    const entry = pathEntryOf(fields);
    if (!entry) return false;
    const held = this.paths.get(entry.path);
    if (replace || !held || held.version < entry.state.version) this.paths.set(entry.path, entry.state);
    this.appliedTotalCount++;
    return true;
  }

  private async load(): Promise<void> {
    // Snapshot temp files from a crash mid-compaction: the old snapshot is still whole.
    if (!this.options.readOnly) await this.removeUnfinishedSnapshots();
    const { snapshotPaths, cursorReset, fresh } = await this.loadSnapshot();
    // Before the journal: a journal without a snapshot (removed by hand) still says if it was done.
    if (fresh) this.rebuildingState = true;
    const { journalRecords, corruptLines, tornTail } = await this.loadJournal();
    if (cursorReset) this.startCursorOver(cursorReset);
    // Kept in `temps` (and so in every snapshot) until the agent has removed each and called recordTempDone.
    (this as { leftoverTemps: readonly string[] }).leftoverTemps = [...this.temps];
    this.loadReport = {
      snapshotPaths,
      journalRecords,
      tornTail,
      corruptLines,
      cursorReset: cursorReset !== undefined,
    };
  }

  /** Starts every shard's cursor over (after the journal's records, which may have raised it). */
  private startCursorOver(reset: CursorReset): void {
    this.cursorSeqs = Array.from({ length: this.identity.feedShards }, () => 0);
    this.cursorMarkList = this.cursorSeqs.map(() => null);
    if (reset.kind === 'shards') {
      this.options.warn?.(
        'the feed shard count changed: reading the whole feed again (files already in place are kept)',
        { feedShards: this.identity.feedShards, was: reset.was },
      );
    } else {
      this.options.warn?.(
        'the path prefix changed to select paths it did not: reading the whole feed again (files already in place are kept)',
        { pathPrefix: this.selection || null, was: reset.was || null },
      );
    }
  }

  private async removeUnfinishedSnapshots(): Promise<void> {
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith(`${SNAPSHOT}.tmp-`)) {
        this.options.warn?.('removing an unfinished state snapshot (a crash during compaction)', { name });
        await rm(join(this.dir, name), { force: true });
      }
    }
  }

  /** Reads the snapshot, if any: its header line, one line per path, and an end line proving it whole. */
  private async loadSnapshot(): Promise<{
    snapshotPaths: number;
    cursorReset: CursorReset | undefined;
    fresh: boolean;
  }> {
    const snapshotFile = join(this.dir, SNAPSHOT);
    let snapshotPaths = 0;
    let cursorReset: CursorReset | undefined;
    let headerSeen = false;
    let ended = false;
    const input = createReadStream(snapshotFile);
    try {
      const lines = createInterface({ input, crlfDelay: Infinity });
      for await (const line of lines) {
        if (!headerSeen) {
          cursorReset = this.readSnapshotHeader(JSON.parse(line) as Record<string, unknown>);
          headerSeen = true;
          continue;
        }
        const kind = this.readSnapshotLine(JSON.parse(line) as unknown);
        if (kind === 'path') snapshotPaths++;
        else if (kind === 'end') ended = true;
      }
    } catch (error) {
      // No snapshot yet is a fresh start; anything else needs the operator.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw unreadableSnapshot(error, snapshotFile);
    } finally {
      input.destroy();
    }
    if (headerSeen && !ended) {
      throw new AgentConfigError(
        `the state snapshot ${snapshotFile} is incomplete: move it away to bootstrap again from the feed`,
      );
    }
    return { snapshotPaths, cursorReset, fresh: !headerSeen };
  }

  /** Takes the cursor, totals and temps from the header; says why the cursor must be reset, if it must. */
  private readSnapshotHeader(header: Record<string, unknown>): CursorReset | undefined {
    const sameShards = this.checkIdentity(header);
    const widened = this.widenedFrom(header.selection);
    if (sameShards && Array.isArray(header.cursor)) {
      this.cursorSeqs = this.cursorSeqs.map(() => 0);
      this.raiseCursor(
        header.cursor as unknown[],
        Array.isArray(header.cursorMarks) ? header.cursorMarks : [],
      );
    }
    this.appliedTotalCount = typeof header.appliedTotal === 'number' ? header.appliedTotal : 0;
    // A snapshot saved before this was recorded belongs to an agent that had run: not rebuilding.
    this.rebuildingState = header.rebuilding === true;
    for (const t of Array.isArray(header.temps) ? header.temps : []) {
      if (typeof t === 'string') this.temps.add(t);
    }
    if (!sameShards) return { kind: 'shards', was: header.feedShards };
    return widened === undefined ? undefined : { kind: 'selection', was: widened };
  }

  /**
   * The recorded selection when this run's selects paths it did not; undefined otherwise. A state
   * saved before selections were recorded keeps its cursor; verify (no selection) keeps the record.
   */
  private widenedFrom(recorded: unknown): string | undefined {
    if (typeof recorded !== 'string') return undefined;
    if (this.selection === undefined) {
      this.selection = recorded;
      return undefined;
    }
    return this.selection.startsWith(recorded) ? undefined : recorded;
  }

  private readSnapshotLine(parsed: unknown): 'path' | 'end' | undefined {
    if (Array.isArray(parsed)) {
      const entry = pathEntryOf(parsed);
      if (!entry) return undefined;
      this.paths.set(entry.path, entry.state);
      return 'path';
    }
    if (parsed && typeof parsed === 'object' && 'end' in parsed) return 'end';
    return undefined;
  }

  /** Replays the journal over the snapshot, skipping (and counting) lines that do not parse. */
  private async loadJournal(): Promise<{ journalRecords: number; corruptLines: number; tornTail: boolean }> {
    let journalRecords = 0;
    let corruptLines = 0;
    let text = '';
    try {
      text = await readFile(join(this.dir, JOURNAL), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const lines = text.split('\n');
    // A file that does not end in a newline ends in a torn append: drop that piece.
    const last = lines.pop();
    const tornTail = last !== undefined && last !== '';
    lines.forEach((line, i) => {
      if (line === '') return;
      if (this.applyJournalLine(line)) journalRecords++;
      else {
        corruptLines++;
        this.options.warn?.('skipping a corrupt line in the state journal', { line: i + 1 });
      }
    });
    return { journalRecords, corruptLines, tornTail };
  }

  private applyJournalLine(line: string): boolean {
    try {
      return this.applyRecord(JSON.parse(line));
    } catch {
      return false;
    }
  }
}

/** `[path, version, sha256, size, deleted]` as the snapshot and the journal write it. */
function pathEntryOf(fields: unknown[]): { path: string; state: PathState } | undefined {
  const [path, version, sha256, size, deleted] = fields;
  if (typeof path !== 'string' || typeof version !== 'number') return undefined;
  return {
    path,
    state: {
      version,
      sha256: typeof sha256 === 'string' ? sha256 : null,
      size: typeof size === 'number' ? size : 0,
      deleted: deleted === 1,
    },
  };
}

function unreadableSnapshot(error: unknown, file: string): AgentConfigError {
  if (error instanceof AgentConfigError) return error;
  return new AgentConfigError(
    `the state snapshot ${file} is unreadable (${(error as Error).message}): ` +
      'move it away to bootstrap again from the feed (files already in place are kept)',
  );
}
