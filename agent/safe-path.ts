/**
 * Never write outside `--dir`. A path from a message or the feed becomes a file
 * under the mirror folder only if:
 *
 * 1-2. it passes the path policy for a pull target (contracts/paths.ts, the
 *    same rules the API admits paths by): relative, no `.`/`..`/empty segments, no
 *    backslashes or control characters, NFC, no name the agent reserves (its state
 *    folder `.media-mirror` at the top, the `.<name>.mirror-tmp-<random>` names of
 *    its temp files), no segment longer than the 255 bytes a Linux file name allows;
 * 3. walking its parent chain from the (real) mirror folder, every existing
 *    segment is a real directory: never a symlink, even one pointing inside the
 *    folder (two paths would then name one file, and a delete of one would remove
 *    the other; one pointing into `.media-mirror` would let a path rewrite the
 *    agent's state).
 *
 * Check 3 runs right before the temp file is created and again right before the
 * rename. Someone with write access to the folder could still swap a directory for
 * a symlink between that check and the rename; the folder belongs to the agent's
 * user alone (docs/agent.md), so that is out of scope.
 *
 * 4. The mirror folder's own path still names the folder opened at start (checkRoot): its
 *    parent may be writable by others, who could put a symlink in its place. Every walk
 *    starts with it, so it runs before each write, rename and removal.
 */
import { lstat, mkdir, realpath, rmdir } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { makeFolders } from '../common/make-folders.ts';
import {
  AGENT_STATE_DIR,
  AGENT_TEMP_MARKER,
  FILE_NAME_MAX_BYTES,
  isAgentTempName,
  PathPolicy,
  PathRuleError,
} from '../contracts/paths.ts';
import { AgentConfigError, MirrorFolderMovedError, RefusedError } from './errors.ts';

/** The agent's state folder inside the mirror folder: never a mirrored path. */
export const STATE_DIR_NAME = AGENT_STATE_DIR;
export const isTempName = isAgentTempName;

export function tempNameFor(name: string, random: string): string {
  // The temp name must fit NAME_MAX too: shorten the visible part, keep the marker and the random tail.
  const tail = `${AGENT_TEMP_MARKER}${random}`;
  let visible = name;
  while (Buffer.byteLength(`.${visible}${tail}`) > FILE_NAME_MAX_BYTES) visible = visible.slice(0, -1);
  return `.${visible}${tail}`;
}

/** The API admits only what a pull target can hold; the agent checks the same policy again. */
const pullPolicy = new PathPolicy([{ id: 'this-agent', kind: 'pull' }]);

export interface CheckedPath {
  /** NFC-normalised logical path, the name of the file under the mirror folder. */
  readonly path: string;
  readonly segments: readonly string[];
}

/** The lexical checks (1 and 2): no file system access. Throws RefusedError('unsafe-path'). */
export function checkMirrorPath(raw: unknown): CheckedPath {
  try {
    const path = pullPolicy.check(raw);
    return { path, segments: path.split('/') };
  } catch (error) {
    if (error instanceof PathRuleError) throw new RefusedError('unsafe-path', error.message);
    throw error;
  }
}

export interface ResolvedPath extends CheckedPath {
  /** The real directory the file goes into (inside the mirror folder). */
  readonly parent: string;
  /** The last segment: the file's name in `parent`. */
  readonly name: string;
  /** `parent/name`. */
  readonly file: string;
}

function isInside(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/**
 * Creates a configured folder (and its parents) if missing. A file at its path or on its way, or
 * a folder the file system will not make (no permission, read-only, `/proc`), is a bad
 * configuration (exit 78): retrying cannot fix it, and an unexpected error (exit 1) would have
 * systemd restart the agent forever.
 */
export async function makeConfiguredFolder(dir: string, what: string, mode?: number): Promise<void> {
  try {
    await makeFolders(dir, mode);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new AgentConfigError(
        `${what} ${dir} cannot be a folder: a file (or a dangling symlink) is at its path or on its way (${code})`,
      );
    }
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new AgentConfigError(`${what} ${dir} cannot be made: ${(error as Error).message}`);
    }
    throw error;
  }
}

export class SafePaths {
  private constructor(
    /** The mirror folder, real path (symlinks in `--dir` itself resolved once at start). */
    readonly root: string,
    /** The folder `root` named at start. */
    private readonly identity: { readonly dev: bigint; readonly ino: bigint },
  ) {}

  /** Creates the folder if needed and resolves its real path. */
  static async open(dir: string): Promise<SafePaths> {
    await makeConfiguredFolder(dir, 'the mirror folder');
    const root = await realpath(dir);
    const { dev, ino } = await lstat(root, { bigint: true });
    return new SafePaths(root, { dev, ino });
  }

  /**
   * Throws MirrorFolderMovedError unless `root` still names the folder opened at start: someone
   * who can write its parent could have moved it and put a symlink (or another folder) in its
   * place, and every path below is joined onto `root`. Node has no openat() to work relative to a
   * folder handle, so this is a check by path, right before each write, rename and removal: a swap
   * in the microseconds between it and the operation still goes through. Being a realpath, `root`
   * has no symlink on its way, so a swap of any folder above it shows too (another dev/ino).
   */
  async checkRoot(): Promise<void> {
    let now: string | undefined;
    try {
      const info = await lstat(this.root, { bigint: true });
      if (info.isSymbolicLink()) now = 'a symlink';
      else if (!info.isDirectory()) now = 'not a folder';
      else if (info.dev !== this.identity.dev || info.ino !== this.identity.ino) now = 'another folder';
    } catch (error) {
      if (!['ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '')) throw error;
      now = 'gone';
    }
    if (now !== undefined) throw new MirrorFolderMovedError(this.root, now);
  }

  contains(candidate: string): boolean {
    return isInside(this.root, candidate);
  }

  /**
   * Full check (1-3). With `create`, missing parent folders are made (one at a
   * time, each checked), and a file where a folder goes is a conflict; without it
   * (a delete, a lookup), a missing parent or a file in its place gives `undefined`:
   * nothing can be there. A symlink is refused either way.
   */
  async resolve(raw: unknown, options: { create: boolean }): Promise<ResolvedPath | undefined> {
    const checked = checkMirrorPath(raw);
    const parent = await this.parentOf(checked, options.create);
    if (parent === undefined) return undefined;
    const name = checked.segments[checked.segments.length - 1] as string;
    return { ...checked, parent, name, file: join(parent, name) };
  }

  /**
   * The real folder that holds `found` (a path as `verify` found it on disk, `/`-separated), or
   * undefined when a folder on the way is gone or a file. No path policy: the files verify removes
   * are the ones the ledger never named, under any name. A symlink on the way is refused, so a
   * removal never goes through a link (the folder may have changed since the walk).
   */
  async existingParentOf(found: string): Promise<string | undefined> {
    await this.checkRoot();
    let current = this.root;
    const folders = found.split('/').slice(0, -1);
    for (let i = 0; i < folders.length; i++) {
      const segment = folders[i] as string;
      if (segment === '' || segment === '.' || segment === '..') return undefined;
      const next = join(current, segment);
      const info = await lstatOrCreateFolder(next, false);
      if (info === undefined || info.isFile()) return undefined;
      current = this.stepInto(next, info, folders.slice(0, i + 1).join('/'), found);
    }
    return this.contains(current) ? current : undefined;
  }

  /**
   * Removes the folders a removal left empty, innermost first, up to (never including) the mirror
   * folder: a folder is only ever the mirror's by holding files, and an empty one left behind would
   * refuse a later file of its name for good. A folder that still holds anything (a symlink, an
   * empty subfolder) stays; rmdir never follows a link.
   */
  async pruneEmptyFolders(folder: string): Promise<void> {
    for (let dir = folder; dir !== this.root && this.contains(dir); dir = dirname(dir)) {
      await this.checkRoot();
      try {
        await rmdir(dir);
      } catch (error) {
        if (['ENOTEMPTY', 'EEXIST', 'ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '')) return;
        throw error;
      }
    }
  }

  private async parentOf(checked: CheckedPath, create: boolean): Promise<string | undefined> {
    await this.checkRoot();
    let current = this.root;
    const folders = checked.segments.slice(0, -1);
    for (let i = 0; i < folders.length; i++) {
      const next = join(current, folders[i] as string);
      const info = await lstatOrCreateFolder(next, create);
      if (info === undefined || (!create && info.isFile())) return undefined;
      current = this.stepInto(next, info, folders.slice(0, i + 1).join('/'), checked.path);
    }
    return current;
  }

  /** The folder to continue from: `next` itself, a real folder. `shown` is the path checked so far. */
  private stepInto(
    next: string,
    info: Awaited<ReturnType<typeof lstat>>,
    shown: string,
    path: string,
  ): string {
    if (info.isDirectory()) return next;
    if (info.isSymbolicLink()) {
      throw new RefusedError(
        'unsafe-path',
        `"${shown}" is a symlink: the agent writes through real folders only (a link would give one file two paths)`,
      );
    }
    throw new RefusedError('path-conflict', `"${shown}" is a file, so "${path}" cannot be a file under it`);
  }
}

/** The entry at `next`; a missing folder is made when `create` (a racing mkdir is fine), else undefined. */
async function lstatOrCreateFolder(
  next: string,
  create: boolean,
): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(next);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  if (!create) return undefined;
  try {
    await mkdir(next, { mode: 0o755 });
  } catch (mkdirError) {
    if (errnoCode(mkdirError) !== 'EEXIST') throw mkdirError;
  }
  return lstat(next);
}
