/**
 * Where `sync` reads a library from: a local folder, or a bucket (`--from s3://bucket/prefix`).
 * Each file has a stamp that changes when its content may have: on disk its modification and
 * change times with its inode (diskStamp), in a bucket its ETag. The hash cache keeps a SHA-256 per path, size and stamp, so a re-run reads nothing
 * that is unchanged. A bucket's object is streamed once to a temporary file while it is hashed
 * (memory stays flat whatever its size; at most `--jobs` objects are on disk at a time), and the
 * upload, when one is needed, sends that file: one GET per object, none for an object the cache
 * and the mirror already agree on. The temporary folder goes at the run's end, and on Ctrl-C or
 * SIGTERM too (cli/remove-on-exit.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { type FileHandle, lstat, mkdtemp, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { decodeName, escapeNonUtf8 } from '../common/file-names.ts';
import { realPathSoFar } from '../common/real-path.ts';
import type { Digest } from '../common/sha256.ts';
import { createSha256 } from '../common/sha256-node.ts';
import { streamToNewFile } from '../common/stream-to-file.ts';
import { AGENT_STATE_DIR, isAgentTempName } from '../contracts/paths.ts';
import { storedContentType } from './content-type.ts';
import { EXIT, MirrorCliError } from './errors.ts';
import { isUnfinishedDownload } from './files.ts';
import { hashFile } from './hash-file.ts';
import { removeOnExit } from './remove-on-exit.ts';
import { isCacheFile } from './sync-cache.ts';

export interface SourceEntry {
  /** Relative to the source's root, '/'-separated: the mirror path's tail and the cache's key. */
  readonly rel: string;
  /** What to call it in reports: a local file's path, or `s3://bucket/key`. */
  readonly name: string;
}

export interface SourceStat {
  readonly size: number;
  /** Changes when the content may have: diskStamp on disk, the ETag in a bucket. */
  readonly stamp: string;
  /** Why the entry is not sent (a link, a FIFO): it is reported skipped with this reason. */
  readonly notSent?: string;
  /**
   * Changed so lately that a write in the same tick of the file system's clock would leave the
   * stamp as it is: its digest is not kept in the hash cache (git's "racily clean" files).
   */
  readonly recent?: boolean;
}

/**
 * How long after a change the stamp may still not tell the next one: the coarsest clock a file
 * system here may tick by (FAT's 2 s; a jiffy on Linux before 6.13's fine-grained timestamps), and
 * a little more. The change time alone counts: no one sets it, a modification time can be anything.
 */
const RECENT_CHANGE_MS = 3_000;

/**
 * What no write and no rename keeps, as git's index does: the modification time alone can be put
 * back (`cp -p`, `exiftool -P`, an archive's times) and two files of one size and time can swap
 * names, and the cache would keep the old bytes' SHA-256 for good. The change time moves on every
 * write, rename and time change, and a file that took another's name has another inode.
 */
export function diskStamp(info: { mtimeMs: number; ctimeMs: number; dev: number; ino: number }): string {
  return `${info.mtimeMs}:${info.ctimeMs}:${info.dev}:${info.ino}`;
}

/** What hashing an entry tells: its digest, and the content type its source stores with it, if any. */
export type SourceDigest = Digest & { readonly contentType?: string | undefined };

/** A local file holding the entry's bytes; `digest` when they were hashed on the way. */
export interface SourceFile {
  readonly file: string;
  readonly digest?: SourceDigest | undefined;
}

export interface SyncSource {
  /** The folder or `s3://bucket/prefix`: the summary's `dir` and the hash cache's identity. */
  readonly label: string;
  list(): Promise<SourceEntry[]>;
  stat(entry: SourceEntry): Promise<SourceStat>;
  hash(entry: SourceEntry, onBytes: (done: number) => void): Promise<SourceDigest>;
  /**
   * Whether entries carry a content type of their own (a bucket's objects): the type is then known
   * once hashed (SourceDigest), and judged there rather than from the name alone.
   */
  readonly storesTypes: boolean;
  /** The bytes as a local file, to send (after `hash`, the same bytes). */
  file(entry: SourceEntry, onBytes: (done: number) => void): Promise<SourceFile>;
  /** Done with the entry: drops what `hash` or `file` kept of it. */
  release(entry: SourceEntry): Promise<void>;
  /** Done with the run. */
  close(): Promise<void>;
}

const byRel = (a: SourceEntry, b: SourceEntry) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// A local folder
// ---------------------------------------------------------------------------------------------

/**
 * Every entry under `dir`, sorted, but the cache file. Symbolic links are not followed, and neither
 * they nor FIFOs, sockets or devices are read: each is an entry whose `stat` says why it is not sent.
 * A subfolder that cannot be read is an entry of its own whose `stat` fails with the reason: the
 * run reports it and goes on with the rest.
 */
export function folderSource(dir: string, cacheFile: string | null): SyncSource {
  const root = resolve(dir);
  // What the folder's files must still be under when read: the folder's own path may be a link.
  let realRoot: Promise<string> | undefined;
  const unreadable = new Map<string, string>();
  const notSent = new Map<string, string>();
  return {
    label: root,
    storesTypes: false,
    async list() {
      let entries: Dirent<Buffer>[];
      try {
        entries = await readNames(root);
      } catch (err) {
        throw new MirrorCliError(`cannot read folder ${root}: ${(err as Error).message}`, { cause: err });
      }
      // The cache (and its temporary files) may live in the folder when --cache puts it there, named
      // as the walk names it or through a link (to the folder, or the folder's own name a link).
      const cache = cacheFile === null ? undefined : resolve(cacheFile);
      const cacheInFolder = cache === undefined ? undefined : await asNamedUnder(root, cache);
      const isCache = (file: string) =>
        cache !== undefined &&
        (isCacheFile(cache, file) || (cacheInFolder !== undefined && isCacheFile(cacheInFolder, file)));
      const files: SourceEntry[] = [];
      const add = (name: string) => files.push({ name, rel: relative(root, name).split(sep).join('/') });
      await walkFolder(root, entries, true, {
        file: (name) => {
          if (!isCache(name)) add(name);
        },
        notSent: (name, reason) => {
          notSent.set(name, reason);
          add(name);
        },
        unreadable: (name, err) => {
          unreadable.set(name, `cannot read folder ${name}: ${err.message}`);
          add(name);
        },
      });
      return files.sort(byRel);
    },
    async stat(entry) {
      const problem = unreadable.get(entry.name);
      if (problem !== undefined) throw new Error(problem);
      const reason = notSent.get(entry.name);
      if (reason !== undefined) return { size: 0, stamp: '', notSent: reason };
      // A file replaced since it was listed (by a link to a file its owner cannot read, say) is
      // judged as it is now: lstat, not stat, which reads through a link.
      const info = await lstat(entry.name);
      if (!info.isFile())
        return { size: 0, stamp: '', notSent: `${notSentBecause(info)} (since it was listed)` };
      return {
        size: info.size,
        stamp: diskStamp(info),
        recent: Date.now() - info.ctimeMs < RECENT_CHANGE_MS,
      };
    },
    hash: async (entry, onBytes) => {
      realRoot ??= realpath(root);
      const expected = join(await realRoot, ...entry.rel.split('/'));
      return hashFile(entry.name, {
        onBytes,
        noFollow: true,
        opened: (file) => stillInside(file, entry, expected),
      });
    },
    file: async (entry) => ({ file: entry.name }),
    release: async () => {},
    close: async () => {},
  };
}

/** `file` as named under `root` by the walk, when it lies in that folder by its real path. */
async function asNamedUnder(root: string, file: string): Promise<string | undefined> {
  const [realRoot, realFile] = await Promise.all([realPathSoFar(root), realPathSoFar(file)]);
  const inside = relative(realRoot, realFile);
  if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside))
    return undefined;
  return join(root, inside);
}

/**
 * A folder's entries with their names as bytes: decoded as UTF-8, a name that is not valid UTF-8
 * (Linux allows any bytes but '/' and NUL) reads as U+FFFD in its place, which names no file (or
 * another one, spelled so), and two such names read as one.
 */
const readNames = (folder: string) => readdir(folder, { withFileTypes: true, encoding: 'buffer' });

const NOT_UTF8 =
  'its name is not valid UTF-8 (shown with \\x escapes), and a mirror path is UTF-8: rename it';

/**
 * The file opened is the one at `expected` under the folder, not one a folder on its way, replaced
 * by a link since the listing, leads to: only the open file's own path tells (Linux: /proc/self/fd),
 * since any check of the path before the open can be raced. Elsewhere the path is resolved again
 * after the open, which narrows that race without closing it.
 */
async function stillInside(file: FileHandle, entry: SourceEntry, expected: string): Promise<void> {
  const where = await readlink(`/proc/self/fd/${file.fd}`).catch(() => realpath(entry.name));
  if (where !== expected)
    throw new MirrorCliError(
      `${entry.name} is not inside the folder any more: a folder on its way was replaced by a symbolic link ` +
        'since it was listed (sync does not follow links); nothing read',
    );
}

type EntryKind = Pick<
  Dirent,
  'isSymbolicLink' | 'isFIFO' | 'isSocket' | 'isBlockDevice' | 'isCharacterDevice' | 'isDirectory'
>;

/** Why an entry that is neither a file nor a folder is not sent. */
function notSentBecause(entry: EntryKind): string {
  if (entry.isSymbolicLink()) return 'a symbolic link: sync does not follow links';
  const kind = entry.isFIFO()
    ? 'a FIFO'
    : entry.isSocket()
      ? 'a socket'
      : entry.isBlockDevice() || entry.isCharacterDevice()
        ? 'a device'
        : entry.isDirectory()
          ? 'a folder'
          : 'of an unknown kind';
  return `not a regular file (${kind})`;
}

/**
 * Why an entry is the mirror's own, not the library's: partial bytes of a download in flight or
 * left by a killed `get` or agent, or an agent's state folder (a folder an agent mirrors into,
 * synced to seed another mirror). Sent, each would become a file at every target.
 */
function ownFileOf(name: string, top: boolean, entry: Dirent<Buffer>): string | undefined {
  if (top && name === AGENT_STATE_DIR && entry.isDirectory())
    return "the on-prem agent's state (its files are not read)";
  if (!entry.isFile()) return undefined;
  if (isUnfinishedDownload(name)) return 'a download `get` left unfinished (or one under way): partial bytes';
  if (isAgentTempName(name)) return "an on-prem agent's download in flight (or one it left): partial bytes";
  return undefined;
}

/**
 * Walks the folders under `dir` (its entries read already), several at a time, without following
 * symbolic links. One recursive readdir would give up on the whole tree at the first folder it
 * cannot read.
 */
async function walkFolder(
  dir: string,
  entries: readonly Dirent<Buffer>[],
  top: boolean,
  found: {
    file(name: string): void;
    notSent(name: string, reason: string): void;
    unreadable(name: string, err: Error): void;
  },
): Promise<void> {
  const folders: string[] = [];
  for (const entry of entries) {
    const text = decodeName(entry.name);
    if (text === undefined) {
      // One entry, a folder too: what it holds could only be named through the same bytes.
      const what = entry.isDirectory() ? `a folder: ${NOT_UTF8}; its files are not read` : NOT_UTF8;
      found.notSent(join(dir, escapeNonUtf8(entry.name)), what);
      continue;
    }
    const name = join(dir, text);
    const own = ownFileOf(text, top, entry);
    if (own !== undefined) found.notSent(name, own);
    else if (entry.isFile()) found.file(name);
    else if (entry.isDirectory()) folders.push(name);
    // Counted, so that the summary accounts for every entry: a linked folder of photos is not
    // left out in silence (the link itself is one skipped entry, what it holds is not read).
    else found.notSent(name, notSentBecause(entry));
  }
  await Promise.all(
    folders.map(async (folder) => {
      let inner: Dirent<Buffer>[];
      try {
        inner = await readNames(folder);
      } catch (err) {
        found.unreadable(folder, err as Error);
        return;
      }
      await walkFolder(folder, inner, false, found);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// A bucket
// ---------------------------------------------------------------------------------------------

export interface S3Location {
  readonly bucket: string;
  /** '' or ending in '/'. */
  readonly prefix: string;
}

/** `s3://bucket/some/prefix` → bucket and `some/prefix/`. */
function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (match === null)
    throw new MirrorCliError(
      `--from must be s3://<bucket>[/<prefix>] (a bucket name as S3 allows), not ${url}`,
      {
        exitCode: EXIT.usage,
      },
    );
  const rest = (match[2] ?? '').replace(/^\/+/, '');
  return { bucket: match[1] as string, prefix: rest === '' || rest.endsWith('/') ? rest : `${rest}/` };
}

interface ListedObject extends SourceEntry, SourceStat {
  readonly key: string;
}

/** The objects under `s3://bucket/prefix` (folder markers, keys ending in '/', left out). */
export function bucketSource(s3: S3Client, url: string): SyncSource {
  const where = parseS3Url(url);
  const label = `s3://${where.bucket}/${where.prefix}`;
  const objects = new Map<string, ListedObject>();
  const spooled = new Map<string, SourceFile>();
  let spool: Promise<string> | undefined;
  let cancelRemoval: (() => void) | undefined;
  const spoolDir = () => {
    spool ??= mkdtemp(join(tmpdir(), 'media-mirror-sync-')).then((dir) => {
      cancelRemoval = removeOnExit(dir);
      return dir;
    });
    return spool;
  };
  const objectOf = (entry: SourceEntry) => {
    const object = objects.get(entry.rel);
    if (object === undefined) throw new Error(`${entry.name} was not listed`);
    return object;
  };
  const download = async (entry: SourceEntry, onBytes: (done: number) => void): Promise<SourceFile> => {
    const known = spooled.get(entry.rel);
    if (known !== undefined) return known;
    const object = objectOf(entry);
    const file = join(await spoolDir(), randomBytes(8).toString('hex'));
    const digest = await getToFile(s3, where.bucket, object, file, onBytes);
    const got = { file, digest };
    spooled.set(entry.rel, got);
    return got;
  };
  return {
    label,
    storesTypes: true,
    async list() {
      for (const object of await listObjects(s3, where)) objects.set(object.rel, object);
      return [...objects.values()].sort(byRel);
    },
    stat: async (entry) => {
      const { size, stamp } = objectOf(entry);
      return { size, stamp };
    },
    hash: async (entry, onBytes) => (await download(entry, onBytes)).digest as SourceDigest,
    file: download,
    async release(entry) {
      const got = spooled.get(entry.rel);
      spooled.delete(entry.rel);
      if (got !== undefined) await rm(got.file, { force: true });
    },
    async close() {
      if (spool === undefined) return;
      await rm(await spool, { recursive: true, force: true });
      cancelRemoval?.();
    },
  };
}

async function listObjects(s3: S3Client, where: S3Location): Promise<ListedObject[]> {
  const { paginateListObjectsV2 } = await import('@aws-sdk/client-s3');
  const found: ListedObject[] = [];
  try {
    const pages = paginateListObjectsV2(
      { client: s3, pageSize: 1000 },
      { Bucket: where.bucket, ...(where.prefix === '' ? {} : { Prefix: where.prefix }) },
    );
    for await (const page of pages) {
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || o.Key.endsWith('/')) continue;
        found.push({
          key: o.Key,
          rel: o.Key.slice(where.prefix.length),
          name: `s3://${where.bucket}/${o.Key}`,
          size: o.Size ?? 0,
          stamp: o.ETag ?? '',
        });
      }
    }
  } catch (err) {
    throw new MirrorCliError(`cannot list s3://${where.bucket}/${where.prefix}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return found;
}

/**
 * Streams the object (the version listed: `IfMatch` its ETag) to `file` through SHA-256; fails
 * if the object changed since it was listed or its length is not the one listed.
 */
async function getToFile(
  s3: S3Client,
  bucket: string,
  object: ListedObject,
  file: string,
  onBytes: (done: number) => void,
): Promise<SourceDigest> {
  const { GetObjectCommand } = await import('@aws-sdk/client-s3');
  const hash = createSha256();
  let done = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      done += chunk.length;
      // A store that sends on past the listed size (broken, or hostile) would fill the spool's disk.
      if (done > object.size)
        return next(new Error(`the store sent more than the ${object.size} bytes listed; not read on`));
      hash.update(chunk);
      onBytes(done);
      next(null, chunk);
    },
  });
  let contentType: string | undefined;
  try {
    const out = await s3.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: object.key,
        ...(typeof object.stamp === 'string' && object.stamp !== '' ? { IfMatch: object.stamp } : {}),
      }),
    );
    contentType = storedContentType(out.ContentType);
    await streamToNewFile(file, {}, (into) => pipeline(out.Body as Readable, tap, into));
  } catch (err) {
    await rm(file, { force: true });
    throw new MirrorCliError(`cannot read ${object.name}: ${(err as Error).message}`, { cause: err });
  }
  const digest = hash.digest();
  if (digest.size !== object.size) {
    // The caller never learns this file's name, so no release() removes it: it stayed in the spool,
    // its bytes on disk, until the run ended.
    await rm(file, { force: true });
    throw new MirrorCliError(
      `${object.name} changed while it was read (${object.size} bytes listed, ${digest.size} read); try again`,
    );
  }
  return contentType === undefined ? digest : { ...digest, contentType };
}
