/**
 * `sync`'s hash cache: a file whose size and stamp (on disk its modification and change times and
 * inode, cli/sync-source.ts diskStamp; a bucket's object: its ETag) are unchanged since it was
 * hashed keeps its SHA-256, so a re-run (or a run resumed after Ctrl-C or a crash) reads only
 * what changed. Saved atomically (a temporary file renamed over the old one) and now and then
 * during a run, so a crash loses at most a few seconds of hashing. Outside the library by
 * default: a sync never writes into the folder it reads.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { makeFolders } from '../common/make-folders.ts';
import { replaceableFile } from './replaceable-file.ts';
import type { SourceDigest } from './sync-source.ts';

/**
 * One file's size, stamp (diskStamp on disk, ETag in a bucket) and SHA-256 when last hashed, with
 * the content type its source stores with it (a bucket's object), if any.
 */
type Entry = readonly [size: number, stamp: string, sha256: string, contentType?: string];

interface CacheFile {
  readonly v: 1;
  readonly dir: string;
  readonly entries: Record<string, Entry>;
}

/** What a save writes before renaming it over the cache: `<cache>.<8 hex>.tmp`. */
const tempFileOf = (cache: string) => `${cache}.${randomBytes(4).toString('hex')}.tmp`;
const TEMP_SUFFIX = /^\.[0-9a-f]{8}\.tmp$/;

/**
 * Whether `file` is the cache `cache` or one of its saves' temporary files: a `--cache` inside the
 * folder is not synced, and a file whose name merely starts with the cache's is.
 */
export function isCacheFile(cache: string, file: string): boolean {
  return file === cache || (file.startsWith(cache) && TEMP_SUFFIX.test(file.slice(cache.length)));
}

/** A folder's absolute path; a bucket's `s3://` URL as it is. */
const sourceIdentity = (dir: string) => (dir.startsWith('s3://') ? dir : resolve(dir));

/** Where a source's cache lives: `$XDG_CACHE_HOME/media-mirror/sync-<hash of the folder or s3:// URL>.json`. */
export function defaultCacheFile(dir: string, env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  const key = createHash('sha256').update(sourceIdentity(dir)).digest('hex').slice(0, 16);
  return join(base, 'media-mirror', `sync-${key}.json`);
}

export class HashCache {
  #file: string | null;
  readonly #dir: string;
  #entries: Record<string, Entry> = {};
  #dirty = false;
  #saveError: string | undefined;

  /** `file` null: a cache that remembers nothing past this run. */
  constructor(file: string | null, dir: string) {
    this.#file = file;
    this.#dir = sourceIdentity(dir);
  }

  /** Reads the cache; a missing, unreadable or foreign one starts empty (it is only a cache). */
  async load(): Promise<void> {
    if (this.#file === null) return;
    // Refused before any work: the save renames a file over it (through a symlink, its target).
    // A path that cannot be looked at (a file where a folder should be, say) is left to the save,
    // whose failure is a warning: only a device, a FIFO or a folder in its place refuses the run.
    this.#file = await replaceableFile(this.#file, 'the hash cache').catch((error: NodeJS.ErrnoException) => {
      if (typeof error.code !== 'string') throw error;
      return this.#file as string;
    });
    try {
      const parsed = JSON.parse(await readFile(this.#file, 'utf8')) as Partial<CacheFile>;
      if (parsed.v === 1 && parsed.dir === this.#dir && typeof parsed.entries === 'object') {
        this.#entries = parsed.entries ?? {};
      }
    } catch {
      this.#entries = {};
    }
  }

  /** The digest of `rel` if its size and stamp are those it was hashed at. */
  lookup(rel: string, size: number, stamp: string): SourceDigest | undefined {
    const entry = Object.hasOwn(this.#entries, rel) ? this.#entries[rel] : undefined;
    if (entry === undefined || entry[0] !== size || entry[1] !== stamp) return undefined;
    return typeof entry[3] === 'string'
      ? { sha256: entry[2], size, contentType: entry[3] }
      : { sha256: entry[2], size };
  }

  remember(rel: string, stamp: string, digest: SourceDigest): void {
    this.#entries[rel] =
      digest.contentType === undefined
        ? [digest.size, stamp, digest.sha256]
        : [digest.size, stamp, digest.sha256, digest.contentType];
    this.#dirty = true;
  }

  /**
   * Writes the cache if anything changed since the last save. A save that fails (its disk full,
   * say) fails nothing else: the files were sent all the same, and the next run hashes them again.
   * The failure is kept for the summary (`saveError`); the next save tries again.
   */
  async save(): Promise<void> {
    if (this.#file === null || !this.#dirty) return;
    this.#dirty = false;
    const body: CacheFile = { v: 1, dir: this.#dir, entries: this.#entries };
    const temp = tempFileOf(this.#file);
    try {
      // It lists the names, sizes and SHA-256 of every file of the folder: its owner's alone.
      await makeFolders(dirname(this.#file), 0o700);
      await writeFile(temp, JSON.stringify(body), { mode: 0o600 });
      await rename(temp, this.#file);
      this.#saveError = undefined;
    } catch (err) {
      this.#dirty = true;
      await rm(temp, { force: true }).catch(() => undefined);
      this.#saveError = `${this.#file}: ${(err as Error).message}`;
    }
  }

  /** Why the last save failed, if it did. */
  get saveError(): string | undefined {
    return this.#saveError;
  }
}
