/**
 * Applying one version of one path to the mirror folder.
 *
 * Write: the blob streams from the origin into `.<name>.mirror-tmp-<random>` in
 * the file's own folder (same file system, so the rename is atomic), hashed as
 * it is written; size and SHA-256 must match both the message and the ledger's
 * version record. Then fsync the file, rename it over the final name, fsync the
 * folder, record the version locally (fsynced), and report it to the ledger.
 * A crash at any point leaves the final name either at its previous content or
 * at the new, verified one; never half a file, never unverified bytes.
 *
 * Never backwards: a version at or below the one recorded locally is skipped,
 * whatever order queue and feed deliver them in. One path is applied by one
 * worker at a time (a per-path lock), so the check and the write cannot interleave.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, lutimes, open, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { crashPoint } from '../common/crash-points.ts';
import type { Digest } from '../common/sha256.ts';
import { createSha256, hashFile } from '../common/sha256-node.ts';
import type { FileVersion } from '../contracts/model.ts';
import { ancestorsOf, FILE_NAME_MAX_BYTES } from '../contracts/paths.ts';
import type { RefusalCode } from './errors.ts';
import { NotYetError, RefusedError } from './errors.ts';
import type { BlobSource, LedgerView } from './ports.ts';
import { checkMirrorPath, type SafePaths, tempNameFor } from './safe-path.ts';
import type { PathState, StateStore } from './state-store.ts';
import { type BandwidthLimiter, fsyncDir, KeyedLock } from './util.ts';

/** One version, as a queue message or a feed entry carries it. */
export interface VersionInfo {
  readonly path: string;
  readonly version: number;
  readonly sha256: string | null;
  readonly size: number;
  readonly deleted: boolean;
  readonly committedAt: string;
}

export type ApplyOutcome =
  | {
      readonly kind: 'applied';
      readonly bytes: number;
      readonly adopted: boolean;
      /** Where a file the agent never wrote, found at the path with other bytes, was moved to. */
      readonly keptAside?: string;
    }
  | {
      readonly kind: 'deleted';
      /** Where a file the agent never wrote, found at the deleted path, was moved to. */
      readonly keptAside?: string;
    }
  | { readonly kind: 'skipped'; readonly heldVersion: number }
  | { readonly kind: 'not-selected' }
  | { readonly kind: 'refused'; readonly code: RefusalCode; readonly reason: string };

/** Where a version came from; `check`: the periodic folder check found the held file lost. */
export type ApplySource = 'queue' | 'feed' | 'repair' | 'check';

export interface ApplierDeps {
  readonly paths: SafePaths;
  readonly state: StateStore;
  readonly blobs: BlobSource;
  readonly ledger: Pick<LedgerView, 'getVersion' | 'getVersionWithBlob' | 'recordApplied'>;
  readonly limiter: BandwidthLimiter;
  /** The target's selection: paths outside it are not this target's. */
  readonly pathPrefix?: string | undefined;
  readonly now?: () => Date;
  /** Bytes downloaded (for rates), reported as they arrive. */
  readonly onBytes?: (bytes: number) => void;
}

/** The name keepAside gives: `<stem>.mm-conflict-<UTC time>[-<n>]<ext>`. */
const KEPT_ASIDE_NAME = /\.mm-conflict-\d{8}T\d{6}Z(?:-\d+)?(?:\.[^.]*)?$/;

/** Whether a file's name is one the agent gives a file it keeps aside (someone's work it did not overwrite). */
export function isKeptAsideName(name: string): boolean {
  return KEPT_ASIDE_NAME.test(name);
}

/** How far back a file the state does not know is compared with the path's versions (one GetItem each). */
const EARLIER_VERSIONS_CHECKED = 10;

const OPEN_TEMP = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** SHA-256 and size of a local file; a symlink at the file's name is never read through. */
export function hashLocalFile(file: string, signal?: AbortSignal): Promise<Digest> {
  return hashFile(file, { noFollow: true, signal });
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** The state's version and a version record (or change) name the same content. */
function sameContent(
  held: PathState,
  version: { readonly sha256?: string | null; readonly deleted: boolean },
): boolean {
  return (version.sha256 ?? null) === (held.sha256 ?? null) && version.deleted === held.deleted;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

export class Applier {
  private readonly locks = new KeyedLock();
  /** Versions applied locally whose ledger report failed: reported again on the next skip. */
  private readonly unreported = new Map<string, number>();

  constructor(private readonly deps: ApplierDeps) {}

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  selects(path: string): boolean {
    return this.deps.pathPrefix === undefined || path.startsWith(this.deps.pathPrefix);
  }

  /**
   * Applies one version. Refusals come back as an outcome; anything else that goes
   * wrong (disk, network, AWS) is thrown for the caller to retry.
   */
  async apply(
    v: VersionInfo,
    options: { signal: AbortSignal; source: ApplySource; force?: boolean },
  ): Promise<ApplyOutcome> {
    if (!this.selects(v.path)) return { kind: 'not-selected' };
    try {
      return await this.locks.run(v.path, () => this.applyLocked(v, options));
    } catch (error) {
      if (error instanceof RefusedError) return { kind: 'refused', code: error.code, reason: error.message };
      throw error;
    }
  }

  private async applyLocked(
    v: VersionInfo,
    options: { signal: AbortSignal; source: ApplySource; force?: boolean },
  ): Promise<ApplyOutcome> {
    const { state } = this.deps;
    // Lexical checks first: an escaping path is refused before anything is looked up.
    const { path } = checkMirrorPath(v.path);
    if (!Number.isSafeInteger(v.version) || v.version < 1) {
      throw new RefusedError('malformed-message', `version ${String(v.version)} is not a version number`);
    }
    const held = state.get(path);
    // Repair applies the ledger's version whatever this folder's state says; so does a state that
    // holds a version the ledger does not know (kept across a restore of the ledger from a backup):
    // skipping would drop every version below it and report one that does not exist. After such a
    // restore the same version number can name other content: it is applied, not taken as held.
    const keep =
      held !== undefined &&
      !options.force &&
      ((held.version === v.version && sameContent(held, v)) ||
        (held.version > v.version && (await this.ledgerKnows(path, held))));
    if (held && keep) {
      const pending = this.unreported.get(path);
      if (options.source === 'queue' || options.source === 'check' || pending !== undefined) {
        // Reported only if the folder still has it: a file removed or replaced by hand (another
        // size, or one back at a deleted path) is written back first. Same-size edits are left
        // to `agent verify`, which re-hashes.
        if (!(await this.folderStillHolds(path, held))) return this.writeBack(path, held, options.signal);
        await this.report(path, held.version);
      }
      return { kind: 'skipped', heldVersion: held.version };
    }

    const replace = held !== undefined && held.version >= v.version;
    return this.applyRecord(path, await this.confirmWithLedger(v), options.signal, {
      replace,
      repair: options.force === true,
    });
  }

  /** The ledger has the version this folder's state holds for `path`, with the same content. */
  private async ledgerKnows(path: string, held: PathState): Promise<boolean> {
    const record = await this.deps.ledger.getVersion(path, held.version);
    return record !== undefined && sameContent(held, record);
  }

  /** The held version again, from the ledger's record, where the folder lost it. */
  private async writeBack(path: string, held: PathState, signal: AbortSignal): Promise<ApplyOutcome> {
    const record = await this.deps.ledger.getVersion(path, held.version);
    if (!record) {
      throw new RefusedError('unknown-version', `the ledger has no version ${held.version} of "${path}"`);
    }
    return this.applyRecord(path, record, signal);
  }

  /** Puts the ledger's version record in the folder, records it locally, reports it. */
  private async applyRecord(
    path: string,
    record: FileVersion,
    signal: AbortSignal,
    { replace = false, repair = false } = {},
  ): Promise<ApplyOutcome> {
    const { state } = this.deps;
    const { version } = record;
    if (record.deleted || record.sha256 === null) {
      const held = state.get(path);
      // `verify --repair` removes extras at deleted paths, as it removes every other extra: asked for.
      const removeAny = repair || (held !== undefined && !held.deleted);
      const keptAside = await this.remove(path, version, removeAny, signal);
      await state.recordApplied(path, { version, sha256: null, size: 0, deleted: true }, { replace });
      await this.report(path, version);
      return { kind: 'deleted', ...(keptAside === undefined ? {} : { keptAside }) };
    }
    const v = {
      path,
      version,
      sha256: record.sha256,
      size: record.size,
      deleted: false,
      committedAt: record.committedAt,
    };
    // A live file the state holds is the agent's own; any other one at the path is someone's.
    const held = state.get(path);
    const written = await this.write(path, v, signal, held !== undefined && !held.deleted);
    await state.recordApplied(
      path,
      { version, sha256: record.sha256, size: record.size, deleted: false },
      { replace },
    );
    await this.report(path, version);
    return {
      kind: 'applied',
      bytes: written.bytes,
      adopted: written.adopted,
      ...(written.keptAside === undefined ? {} : { keptAside: written.keptAside }),
    };
  }

  /** Whether the folder has what the local state says it holds at `path` (by kind and size). */
  async folderStillHolds(path: string, held: PathState): Promise<boolean> {
    const resolved = await this.deps.paths.resolve(path, { create: false });
    const entry = resolved ? await lstatIfPresent(resolved.file) : undefined;
    if (held.deleted) return entry === undefined;
    return entry?.isFile() === true && entry.size === held.size;
  }

  /** The message is a claim too: the ledger's version record is the truth. */
  private async confirmWithLedger(v: VersionInfo): Promise<FileVersion> {
    const { ledger } = this.deps;
    // With the blob record the download will need, in one request: the claim's sha256 is checked
    // against the record just below, so a record read for another blob is never used.
    const record = ledger.getVersionWithBlob
      ? await ledger.getVersionWithBlob(v.path, v.version, v.deleted ? null : (v.sha256 ?? null))
      : await ledger.getVersion(v.path, v.version);
    if (!record) {
      throw new RefusedError('unknown-version', `the ledger has no version ${v.version} of "${v.path}"`);
    }
    if (
      record.deleted !== v.deleted ||
      (record.sha256 ?? null) !== (v.sha256 ?? null) ||
      (!record.deleted && record.size !== v.size)
    ) {
      throw new RefusedError(
        'ledger-mismatch',
        `version ${v.version} of "${v.path}" disagrees with the ledger (sha256/size/deleted)`,
      );
    }
    return record;
  }

  private async report(path: string, version: number): Promise<void> {
    this.unreported.set(path, version);
    await this.deps.ledger.recordApplied(path, version, this.now().toISOString());
    if (this.unreported.get(path) === version) this.unreported.delete(path);
  }

  /**
   * Removes the file at a deleted path. One the agent never wrote (`ownFile` false) is removed only
   * when it holds one of the path's earlier versions (the mirror's own, where the state lost track
   * of it); anyone else's file is moved aside, as a write would: the mirror's delete empties the
   * path, it does not destroy someone's work.
   */
  private async remove(
    path: string,
    version: number,
    ownFile: boolean,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const resolved = await this.deps.paths.resolve(path, { create: false });
    if (!resolved) return undefined;
    let info: Awaited<ReturnType<typeof lstat>>;
    try {
      info = await lstat(resolved.file);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    // A folder at the path is other paths' (their deletes, in other shards, may not have come yet):
    // the deleted file is not there, so there is nothing to remove, as under a file on its way.
    if (info.isDirectory()) return undefined;
    if (
      info.isFile() &&
      !ownFile &&
      !(await this.holdsEarlierVersion(resolved.file, Number(info.size), path, version + 1, signal))
    ) {
      return this.keepAside(resolved.parent, resolved.name);
    }
    await this.deps.paths.checkRoot();
    await unlink(resolved.file);
    await fsyncDir(resolved.parent);
    await this.deps.paths.pruneEmptyFolders(resolved.parent);
    return undefined;
  }

  private async write(
    path: string,
    v: VersionInfo & { sha256: string },
    signal: AbortSignal,
    ownFile: boolean,
  ): Promise<{ bytes: number; adopted: boolean; keptAside?: string }> {
    const { paths, state } = this.deps;
    const resolved = await paths.resolve(path, { create: true }).catch(async (error: unknown) => {
      if (error instanceof RefusedError && error.code === 'path-conflict')
        await this.waitForFileOnTheWay(path);
      throw error;
    });
    if (!resolved) throw new Error(`could not create the folders of "${path}"`);
    const existing = await lstatIfPresent(resolved.file);
    if (existing?.isDirectory() && !(await removeIfHoldsNoFiles(resolved.file))) {
      await this.waitForFilesInTheFolder(path, resolved.file);
      throw new RefusedError('path-conflict', `"${path}" is a folder here, so it cannot be a file`);
    }
    // The right bytes may be there already (a crash after the rename, a pre-seeded folder): keep them.
    if (existing?.isFile() && (await adopt(resolved.file, Number(existing.size), v, signal, paths)))
      return { bytes: 0, adopted: true };
    // Someone's file (the agent never wrote it) with other bytes: moved aside, never overwritten.
    const keptAside =
      existing?.isFile() &&
      !ownFile &&
      !(await this.holdsEarlierVersion(resolved.file, Number(existing.size), path, v.version, signal))
        ? await this.keepAside(resolved.parent, resolved.name)
        : undefined;

    const tempName = tempNameFor(resolved.name, randomBytes(6).toString('hex'));
    const temp = join(resolved.parent, tempName);
    const relativeTemp = relative(paths.root, temp);
    await state.recordTemp(relativeTemp);
    let handle: FileHandle | undefined;
    let renamed = false;
    try {
      // Adopting or keeping a file aside may have hashed for a while since the walk checked it.
      await paths.checkRoot();
      handle = await open(temp, OPEN_TEMP, 0o644);
      const bytes = await this.download(handle, path, v, signal).catch((error: unknown) => {
        // No retry makes it fit: refused and counted (docs/agent.md), not tried again for good.
        if ((error as NodeJS.ErrnoException).code !== 'EFBIG') throw error;
        throw new RefusedError(
          'too-large-for-filesystem',
          `"${path}" (${v.size ?? '?'} bytes) is larger than the mirror folder's file system takes (EFBIG)`,
        );
      });
      const committed = new Date(v.committedAt);
      if (!Number.isNaN(committed.getTime())) await handle.utimes(committed, committed);
      await handle.sync();
      await handle.close();
      handle = undefined;
      // The tree may have changed during a long download: check the parent chain again.
      const again = await paths.resolve(path, { create: false });
      if (!again || again.parent !== resolved.parent) {
        throw new RefusedError('unsafe-path', `the folders of "${path}" changed during the download`);
      }
      crashPoint('agent.before-rename');
      await rename(temp, resolved.file);
      renamed = true;
      await fsyncDir(resolved.parent);
      return { bytes, adopted: false, ...(keptAside === undefined ? {} : { keptAside }) };
    } finally {
      if (handle) await handle.close().catch(() => undefined);
      await this.forgetTemp(temp, relativeTemp, renamed);
    }
  }

  /**
   * Throws NotYetError when the file in the way of `path`'s folders is one the agent holds and the
   * ledger has a newer version of (`a` held, `a/b` arriving before `a`'s delete from another shard).
   */
  private async waitForFileOnTheWay(path: string): Promise<void> {
    for (const folder of ancestorsOf(path)) {
      if (await this.goingByNewerVersion(folder)) {
        throw new NotYetError(
          `"${folder}" is still a file here, which the ledger has a newer version of: "${path}" waits for it`,
        );
      }
    }
  }

  /**
   * Throws NotYetError when every file in the folder at `path` is one the agent holds and the ledger
   * has a newer version of (`a/b` held, `a` arriving before `a/b`'s delete). A file the agent did not
   * write, or one still live, keeps the refusal.
   */
  private async waitForFilesInTheFolder(path: string, folder: string): Promise<void> {
    const entries = await readdir(folder, { recursive: true, withFileTypes: true });
    const files = entries
      .filter((entry) => !entry.isDirectory())
      .map((entry) =>
        relative(this.deps.paths.root, join(entry.parentPath, entry.name)).split(sep).join('/'),
      );
    for (const file of files) if (!(await this.goingByNewerVersion(file))) return;
    throw new NotYetError(
      `"${path}" is still a folder of files here, which the ledger has newer versions of: it waits for them`,
    );
  }

  /** The agent holds a live file at `path` and the ledger has a newer version of it. */
  private async goingByNewerVersion(path: string): Promise<boolean> {
    const held = this.deps.state.get(path);
    if (held === undefined || held.deleted) return false;
    return (await this.deps.ledger.getVersion(path, held.version + 1)) !== undefined;
  }

  /**
   * Whether `file` holds one of `path`'s last EARLIER_VERSIONS_CHECKED versions before `before`: the
   * mirror's own bytes, left where the state lost track of them (its folder deleted, a crash between
   * the rename and the state's record), not someone's work.
   */
  private async holdsEarlierVersion(
    file: string,
    size: number,
    path: string,
    before: number,
    signal: AbortSignal,
  ): Promise<boolean> {
    let local: Digest | undefined;
    for (let version = before - 1; version >= Math.max(1, before - EARLIER_VERSIONS_CHECKED); version--) {
      const record = await this.deps.ledger.getVersion(path, version);
      if (record === undefined || record.deleted || record.sha256 === null || record.size !== size) continue;
      local ??= await hashLocalFile(file, signal);
      if (local.sha256 === record.sha256 && local.size === record.size) return true;
    }
    return false;
  }

  /**
   * Renames the file at `parent/name` to `<stem>.mm-conflict-<UTC time>[-<n>]<ext>` beside it (as
   * Syncthing keeps a conflicting copy): the mirror's file takes the name, and what was there stays.
   * Returns the new name, relative to the mirror folder.
   */
  private async keepAside(parent: string, name: string): Promise<string> {
    const dot = name.lastIndexOf('.');
    const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
    const stamp = this.now()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z');
    for (let n = 0; ; n++) {
      const mark = `.mm-conflict-${stamp}${n === 0 ? '' : `-${n}`}`;
      // The stem gives way first, down to its first character (the copy must not become a hidden
      // file), then the extension: after the last dot of a 255-byte name there can be more than the
      // mark leaves room for (`第1.` and 80 CJK characters), and a loop that only shortened the stem
      // never ended, the agent's one thread spinning on it for good.
      let [visible, kept] = [stem, ext];
      while (Buffer.byteLength(`${visible}${mark}${kept}`) > FILE_NAME_MAX_BYTES) {
        if (Array.from(visible).length > 1) visible = withoutLastCharacter(visible);
        else kept = withoutLastCharacter(kept);
      }
      const aside = join(parent, `${visible}${mark}${kept}`);
      if ((await lstatIfPresent(aside)) !== undefined) continue;
      await this.deps.paths.checkRoot();
      await rename(join(parent, name), aside);
      await fsyncDir(parent);
      return relative(this.deps.paths.root, aside).split(sep).join('/');
    }
  }

  /**
   * Streams the blob into the temp file, refusing it as soon as it runs past the
   * expected size and at the end unless size and SHA-256 both match. Returns the bytes written.
   */
  private async download(
    handle: FileHandle,
    path: string,
    v: VersionInfo & { sha256: string },
    signal: AbortSignal,
  ): Promise<number> {
    const blob = await this.deps.blobs.open(v.sha256, signal);
    const hash = createSha256();
    let bytes = 0;
    try {
      if (blob.contentLength !== undefined && blob.contentLength !== v.size) {
        throw new RefusedError(
          'content-mismatch',
          `blob ${v.sha256} is ${blob.contentLength} bytes in the origin; "${path}" v${v.version} is ${v.size}`,
        );
      }
      for await (const chunk of blob.body) {
        if (signal.aborted) throw signal.reason;
        bytes += chunk.byteLength;
        if (bytes > v.size) {
          throw new RefusedError(
            'content-mismatch',
            `blob ${v.sha256} has more than the ${v.size} bytes of "${path}" v${v.version}`,
          );
        }
        hash.update(chunk);
        await writeAll(handle, chunk);
        if (bytes === chunk.byteLength) crashPoint('agent.mid-download');
        this.deps.onBytes?.(chunk.byteLength);
        await this.deps.limiter.take(chunk.byteLength, signal);
      }
    } finally {
      blob.close();
    }
    if (signal.aborted) throw signal.reason;
    const { sha256 } = hash.digest();
    if (bytes !== v.size || sha256 !== v.sha256) {
      throw new RefusedError(
        'content-mismatch',
        `blob for "${path}" v${v.version} does not match: got ${bytes} bytes with sha256 ${sha256}, ` +
          `expected ${v.size} bytes with sha256 ${v.sha256}`,
      );
    }
    return bytes;
  }

  /** Removes a temp file that was not renamed into place. */
  private async forgetTemp(temp: string, relativeTemp: string, renamed: boolean): Promise<void> {
    const gone =
      renamed ||
      (await rm(temp, { force: true }).then(
        () => true,
        () => false,
      ));
    // A temp file that could not be removed stays recorded: the next start removes it.
    if (gone) this.deps.state.recordTempDone(relativeTemp);
  }
}

/** `text` less its last character: a whole code point, so that no lone surrogate becomes U+FFFD on disk. */
function withoutLastCharacter(text: string): string {
  return Array.from(text).slice(0, -1).join('');
}

/** The entry at `file`, or undefined when there is none. */
async function lstatIfPresent(file: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(file);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Removes a folder that holds only folders (nothing of the mirror's, nor anyone's); false if it holds more. */
async function removeIfHoldsNoFiles(folder: string): Promise<boolean> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  if (entries.some((entry) => !entry.isDirectory())) return false;
  await rm(folder, { recursive: true });
  return true;
}

/**
 * Keeps a file that already holds `v`'s bytes. Another version of the same bytes (a restore, a new
 * content type) is still that version: its modification time becomes `v`'s committedAt, as a
 * written file's is.
 */
async function adopt(
  file: string,
  size: number,
  v: VersionInfo & { sha256: string },
  signal: AbortSignal,
  paths: SafePaths,
): Promise<boolean> {
  if (size !== v.size) return false;
  const local = await hashLocalFile(file, signal);
  if (local.sha256 !== v.sha256 || local.size !== v.size) return false;
  await paths.checkRoot();
  const committed = new Date(v.committedAt);
  if (!Number.isNaN(committed.getTime())) await lutimes(file, committed, committed);
  return true;
}
