/**
 * The file verbs: `ls` (live files under a prefix), `log` (a path's versions), `rm` (a
 * tombstone, optionally only at a given head), `restore` (an old version's content as the
 * newest) and `get` (the bytes, verified against the
 * SHA-256 the mirror recorded before anything is written at the destination).
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { chmod, chown, lstat, mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createSha256 } from '../common/sha256-node.ts';
import { streamToNewFile } from '../common/stream-to-file.ts';
import type { DeleteResult, FileStatus, FileVersionView, RestoreResult } from '../contracts/api.ts';
import type { FetchLike, MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import { EXIT, MirrorCliError, NotFoundCliError, UsageError } from './errors.ts';
import { listLiveFiles } from './listing.ts';
import { describeStorageError, redactUrl } from './put-file.ts';
import { removeOnExit } from './remove-on-exit.ts';
import { replaceableFile } from './replaceable-file.ts';
import { formatTable } from './status.ts';

// ---------------------------------------------------------------------------------------------
// ls
// ---------------------------------------------------------------------------------------------

export interface ListedFile {
  path: string;
  version: number;
  size: number;
  sha256: string;
  contentType: string | null;
  committedAt: string;
}

/** Every live file under `prefix` (a bare name is a top folder: `photos` lists `photos/`). */
export function listFiles(client: Pick<MirrorApi, 'listFiles'>, prefix: string): Promise<ListedFile[]> {
  return listLiveFiles(client, prefix);
}

/** `aws s3 ls` style: time, size in bytes, then what only this mirror has (version, SHA-256), then the path. */
export function formatListing(files: readonly ListedFile[]): string {
  if (files.length === 0) return 'no files';
  const rows = files.map((f) => [
    `${f.committedAt.slice(0, 19).replace('T', ' ')}Z`,
    String(f.size).padStart(12),
    `v${f.version}`,
    f.sha256,
    f.path,
  ]);
  const total = files.reduce((n, f) => n + f.size, 0);
  return `${formatTable(['COMMITTED', '        SIZE', 'VERSION', 'SHA256', 'PATH'], rows)}\n${files.length} file(s), ${total} bytes`;
}

// ---------------------------------------------------------------------------------------------
// log
// ---------------------------------------------------------------------------------------------

/** Every version of a path, newest first (the API's pages followed to the end). */
export async function listAllVersions(
  client: Pick<MirrorApi, 'listVersions'>,
  path: string,
): Promise<FileVersionView[]> {
  const versions: FileVersionView[] = [];
  let before: number | undefined;
  do {
    const page = await notFoundAs(`no such path: ${path}`, () =>
      client.listVersions(path, { limit: 1000, ...(before === undefined ? {} : { before }) }),
    );
    versions.push(...page.versions);
    before = page.nextBefore;
  } while (before !== undefined);
  return versions;
}

export function formatVersions(path: string, versions: readonly FileVersionView[]): string {
  const rows = versions.map((v) => [
    `v${v.version}`,
    `${v.committedAt.slice(0, 19).replace('T', ' ')}Z`,
    v.deleted ? '-' : String(v.size),
    v.deleted ? '(deleted)' : (v.sha256 ?? ''),
    v.contentType ?? '',
  ]);
  return `${path}\n${formatTable(['VERSION', 'COMMITTED', 'SIZE', 'SHA256', 'TYPE'], rows)}`;
}

// ---------------------------------------------------------------------------------------------
// rm
// ---------------------------------------------------------------------------------------------

export function removeFile(
  client: Pick<MirrorApi, 'deleteFile'>,
  path: string,
  ifVersion: number | undefined,
): Promise<DeleteResult> {
  return notFoundAs(`no such path: ${path}`, () =>
    client.deleteFile(path, ifVersion === undefined ? {} : { ifVersion }),
  );
}

/** Commits version `from`'s content as the newest version; a missing path or version is exit 3. */
export function restoreFile(
  client: Pick<MirrorApi, 'restoreVersion'>,
  path: string,
  from: number,
  ifVersion: number | undefined,
): Promise<RestoreResult> {
  return notFoundAs(`cannot restore ${path} version ${from}`, () =>
    client.restoreVersion(path, from, ifVersion === undefined ? {} : { ifVersion }),
  );
}

// ---------------------------------------------------------------------------------------------
// get
// ---------------------------------------------------------------------------------------------

export interface GetOptions {
  path: string;
  /** A file, or a folder to put the path's last segment in. @default the last segment, in `cwd` */
  dest?: string | undefined;
  /** Read a target's copy instead of the origin's. */
  target?: string | undefined;
  /** An older version's bytes (from the origin). @default the head */
  version?: number | undefined;
  /**
   * How long a download may go without a byte (before the answer, or between reads) before it is
   * cut and tried again. @default 60000, `aws s3 cp`'s read timeout
   */
  readTimeoutMs?: number | undefined;
  cwd: string;
  /**
   * Where the bytes go when `dest` is `-`: only once they are verified, from a private temporary
   * file, so a reader of the pipe never gets bytes that turn out wrong. @default process.stdout
   */
  stdout?: NodeJS.WritableStream | undefined;
}

export interface GetResult {
  path: string;
  version: number;
  sha256: string;
  size: number;
  file: string;
  target: string | null;
}

type GetClient = Pick<MirrorApi, 'getFile' | 'listVersions' | 'contentUrl'>;

/** Storage has no object where the ledger says the copy is (exit 3, as a missing path). */
class MissingCopyError extends NotFoundCliError {}

/** Content that did not match the recorded SHA-256 (exit 5). */
class VerifyFailedError extends MirrorCliError {
  override readonly name = 'VerifyFailedError';
  constructor(message: string) {
    super(message, { exitCode: EXIT.verifyFailed });
  }
}

/**
 * Downloads the file to a temporary name next to the destination while hashing it, and renames
 * it into place only when size and SHA-256 match the version the mirror says it is serving.
 */
export async function getFile(client: GetClient, fetch: FetchLike, options: GetOptions): Promise<GetResult> {
  // The destination first: a bad one is a usage error before anything is asked of the API.
  const { file, temp, tempMode, scratch, keep } = await prepareDestination(options);
  const read = () => expectedVersion(client, options.path, options.target, options.version);
  // A Ctrl-C skips the `finally` below: without this the partial file stayed, hidden, for good.
  const cancelRemoval = removeOnExit(scratch);
  try {
    let expected = await read();
    for (let attempt = 1; ; attempt++) {
      const url = await notFoundAs(`no such path: ${options.path}`, () =>
        client.contentUrl(options.path, {
          ...(options.target === undefined ? {} : { target: options.target }),
          ...(options.version === undefined ? {} : { version: options.version }),
        }),
      );
      // The head (or the target's copy) may have moved on between the two reads: other bytes are
      // then another version's, not corrupt, and no object at all may be a deletion's (the replica's
      // copy goes with it), not a lost copy. Read again before saying either (probe V5).
      const readAgain = async () => {
        const now = options.version === undefined && attempt < GET_ATTEMPTS ? await read() : expected;
        if (now.version === expected.version) return false;
        await rm(temp, { force: true });
        expected = now;
        return true;
      };
      const readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
      const got = await download(fetch, url, temp, tempMode, expected.size, readTimeoutMs).catch(
        async (error: unknown) => {
          if (error instanceof MissingCopyError && (await readAgain())) return undefined;
          if (error instanceof DownloadCutOffError && error.retryable && attempt < GET_ATTEMPTS) {
            await rm(temp, { force: true });
            return undefined;
          }
          throw error;
        },
      );
      if (got === undefined) continue;
      if (!holds(got, expected)) {
        if (await readAgain()) continue;
        expected = await copyAheadOrFail(client, options, expected, got);
      }
      await keep();
      const { version, sha256, size } = expected;
      return { path: options.path, version, sha256, size, file, target: options.target ?? null };
    }
  } finally {
    await rm(scratch, { force: true, recursive: true });
    cancelRemoval();
  }
}

/** Where `get` downloads to (`temp`), what it removes afterwards, and how it keeps verified bytes. */
interface Destination {
  /** The file written, or `-` for stdout. */
  readonly file: string;
  readonly temp: string;
  readonly tempMode: number | undefined;
  readonly scratch: string;
  keep(): Promise<void>;
}

async function prepareDestination(options: GetOptions): Promise<Destination> {
  if (options.dest === '-') {
    const folder = await mkdtemp(join(tmpdir(), 'mm-get-'));
    const temp = join(folder, downloadName());
    const out = options.stdout ?? process.stdout;
    const keep = () => pipeline(createReadStream(temp), out, { end: false });
    return { file: '-', temp, tempMode: 0o600, scratch: folder, keep };
  }
  const file = await destinationFile(options);
  await removeOrphanedDownloads(dirname(file));
  const temp = join(dirname(file), downloadName());
  // Over an existing file, the download is its owner's alone until it is checked and takes that
  // file's permissions: created with the umask's, others could read a private file's new bytes.
  const tempMode = (await lstat(file).catch(() => undefined))?.isFile() ? 0o600 : undefined;
  return { file, temp, tempMode, scratch: temp, keep: () => keepDownload(temp, file) };
}

/** Moves the verified download into place, on disk before it takes the name. */
async function keepDownload(temp: string, file: string): Promise<void> {
  await keepOwnership(temp, file);
  // On disk before it takes the name, and the name on disk before "verified": a power cut
  // after exit 0 would otherwise leave an empty file where the old one was (XFS; ext4 for a
  // new name), as the agent, which fsyncs the same way, never does.
  await fsync(temp);
  await rename(temp, file);
  // A file system that cannot sync a folder (EINVAL: some FUSE and network ones) has the file in place.
  await fsync(dirname(file), constants.O_RDONLY | constants.O_DIRECTORY).catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EINVAL' && error.code !== 'ENOTSUP') throw error;
    },
  );
}

/**
 * Bytes other than the expected version's: exit 5, unless a target's copy is ahead of its row.
 * replicate copies an object before it writes the target's row, so until then the replica serves
 * a newer version's bytes under a row that has not moved, and reading again finds nothing new:
 * bytes that are exactly a newer version's, as the ledger records it, are that version.
 */
async function copyAheadOrFail(
  client: GetClient,
  options: GetOptions,
  expected: Expected,
  got: { size: number; sha256?: string | undefined },
): Promise<Expected> {
  const ahead =
    options.target === undefined ? undefined : await newerVersionHolding(client, options.path, expected, got);
  if (ahead !== undefined) return ahead;
  const sent =
    got.sha256 === undefined
      ? `storage sent more than ${expected.size} bytes (the download stopped there)`
      : `downloaded ${got.size} bytes with SHA-256 ${got.sha256}`;
  throw new VerifyFailedError(
    `${options.path}: ${sent}, but version ` +
      `${expected.version} is ${expected.size} bytes with SHA-256 ${expected.sha256}; nothing written`,
  );
}

type Expected = { version: number; sha256: string; size: number };

const holds = (got: { size: number; sha256?: string | undefined }, version: Expected) =>
  got.sha256 !== undefined && got.size === version.size && got.sha256 === version.sha256;

/** The newest version after `expected` whose content is exactly what was downloaded, if any. */
async function newerVersionHolding(
  client: GetClient,
  path: string,
  expected: Expected,
  got: { size: number; sha256?: string | undefined },
): Promise<Expected | undefined> {
  if (got.sha256 === undefined) return undefined;
  const page = await client.listVersions(path, { limit: 100 });
  const found = page.versions.find(
    (v) =>
      v.version > expected.version &&
      !v.deleted &&
      v.sha256 !== null &&
      holds(got, { ...v, sha256: v.sha256 }),
  );
  return found?.sha256 == null
    ? undefined
    : { version: found.version, sha256: found.sha256, size: found.size };
}

async function fsync(path: string, flags: number = constants.O_RDONLY): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The file `get` replaces keeps its permissions (and, run as root, its owner), as `cp` over it
 * would: the rename puts a new file in its place, which had the process's umask and owner, so a
 * 0600 file came back 0644 (probe V8). Other hard links to the old file keep its bytes (docs/cli.md).
 */
async function keepOwnership(temp: string, file: string): Promise<void> {
  const old = await lstat(file).catch(() => undefined);
  if (!old?.isFile()) return;
  // The owner first: a chown clears set-id bits the chmod then puts back.
  if (process.getuid?.() === 0) await chown(temp, old.uid, old.gid);
  await chmod(temp, old.mode & 0o7777);
}

/**
 * `.mm-get-<host>-<pid>-<random>`: whose download it is, so that one left by a `get` that was
 * killed (SIGKILL, a crash: no handler ran) can be told from one under way. It does not carry the
 * destination's name: a name the path rules admit (255 bytes) plus this suffix was more than a
 * file system takes (ENAMETOOLONG, probe V6).
 */
function downloadName(): string {
  return `.mm-get-${hostTag()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The host as it can sit in a file name: letters, digits, dots and dashes only. */
const hostTag = () => hostname().replace(/[^A-Za-z0-9.-]/g, '_');

// Earlier versions named the temp file `.<name>.mm-get-…`: those orphans are swept too.
const DOWNLOAD_NAME = /^\.(?:.+\.)?mm-get-(.+)-(\d+)-[0-9a-f]{8}$/;

/** A file name `get` gives a download under way (or one a killed `get` left): partial bytes. */
export const isUnfinishedDownload = (name: string): boolean => DOWNLOAD_NAME.test(name);

/**
 * Deletes, in the destination's folder, the partial downloads of `get`s of this host whose process
 * is gone. Another host's (a folder shared over the network) and a live process's are left alone;
 * a process id reused since only keeps an orphan a while longer. Only files are removed, and one
 * that cannot be (another user's, in a sticky folder such as /tmp) is left: sweeping is a courtesy,
 * and anyone who can write the folder can put such a name there.
 */
async function removeOrphanedDownloads(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const host = hostTag();
  for (const entry of entries) {
    const match = DOWNLOAD_NAME.exec(entry.name);
    if (match === null || match[1] !== host || !entry.isFile() || processAlive(Number(match[2]))) continue;
    await rm(join(dir, entry.name), { force: true }).catch(() => undefined);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Downloads of the head (or a target's copy) while it keeps moving on, before giving up. */
const GET_ATTEMPTS = 3;

const DEFAULT_READ_TIMEOUT_MS = 60_000;

/** The version whose bytes the content URL serves: the head, or the target's applied version. */
async function expectedVersion(
  client: GetClient,
  path: string,
  target: string | undefined,
  wanted: number | undefined,
): Promise<{ version: number; sha256: string; size: number }> {
  if (wanted !== undefined) {
    const page = await notFoundAs(`no such path: ${path}`, () =>
      client.listVersions(path, { limit: 1, before: wanted + 1 }),
    );
    const found = page.versions[0];
    if (found?.version !== wanted || found.deleted || found.sha256 === null)
      throw new NotFoundCliError(`${path} has no version ${wanted} with content`);
    return { version: found.version, sha256: found.sha256, size: found.size };
  }
  const status: FileStatus = await notFoundAs(`no such path: ${path}`, () => client.getFile(path));
  let version = status.head;
  if (target !== undefined) {
    const copy = status.targets.find((t) => t.id === target);
    if (copy && copy.appliedVersion !== status.head.version && copy.appliedVersion > 0) {
      const page = await client.listVersions(path, { limit: 1, before: copy.appliedVersion + 1 });
      version = page.versions[0] ?? version;
    }
  }
  if (version.deleted || version.sha256 === null)
    throw new NotFoundCliError(`no such path: ${path} (deleted)`);
  return { version: version.version, sha256: version.sha256, size: version.size };
}

/**
 * The file `get` writes: into the destination when it is a folder; as it, when its folder exists.
 * A name ending in `/` must be a folder that exists (as `cp` has it): never a file named so.
 */
async function destinationFile(options: GetOptions): Promise<string> {
  const name = options.path.split('/').at(-1) ?? options.path;
  // The path's own name is a destination like a named one: a FIFO, a device or a folder there is
  // refused before anything is asked of the API, and a symlink is written through (probe V1).
  if (options.dest === undefined) return replaceableFile(resolve(options.cwd, name), 'the destination');
  const dest = resolve(options.cwd, options.dest);
  const info = await stat(dest).catch(() => undefined);
  if (info?.isDirectory()) return replaceableFile(join(dest, name), 'the destination');
  if (options.dest.endsWith('/') || options.dest.endsWith(sep)) {
    throw new UsageError(
      `the destination ${options.dest} is not a folder: name a folder that exists, or a file`,
    );
  }
  const folder = await stat(dirname(dest)).catch(() => undefined);
  if (!folder?.isDirectory()) {
    throw new UsageError(
      `the destination ${options.dest}: its folder ${dirname(dest)} does not exist (or is not a folder)`,
    );
  }
  return replaceableFile(dest, 'the destination');
}

/** Storage sent more bytes than the version has: they cannot be its, and are not read on. */
class MoreBytesThanExpected extends Error {}

/**
 * The connection failed before or while the bytes came (a reset, a proxy or NAT dropping it, a
 * storage node going away): `get` tries again, as `aws s3 cp` does, since the next try usually goes
 * through, and so is one that went quiet past the read timeout. `retryable` is false for a body
 * that stalled past undici's own limit (5 minutes of no bytes, reached only with a longer read
 * timeout): trying again would make the user wait that long once more.
 */
class DownloadCutOffError extends MirrorCliError {
  override readonly name = 'DownloadCutOffError';
  constructor(
    message: string,
    readonly retryable: boolean,
    cause: unknown,
  ) {
    super(message, { cause });
  }
}

/** What ended a download that went quiet for longer than the read timeout. */
class ReadTimeoutError extends Error {
  override readonly name = 'ReadTimeoutError';
}

/** undici ends a body with TypeError('terminated') and the socket's error as its cause. */
function describeCut(error: unknown, signal: AbortSignal): { detail: string; retryable: boolean } {
  // An abort ends the body with the signal's reason or with an AbortError of its own, by runtime.
  if (signal.aborted && signal.reason instanceof ReadTimeoutError)
    return { detail: signal.reason.message, retryable: true };
  const err = error as Error & { cause?: { message?: unknown; code?: unknown } };
  const cause =
    typeof err.cause?.message === 'string' && err.cause.message !== '' ? `: ${err.cause.message}` : '';
  return { detail: `${err.message}${cause}`, retryable: err.cause?.code !== 'UND_ERR_BODY_TIMEOUT' };
}

/**
 * The bytes at `url` into `file`, hashed on the way; `sha256` undefined when storage sent more than
 * `expectedSize`: the download stops there, so a huge or endless answer (an object replaced out of
 * band, a hostile endpoint) does not fill the disk before it is found wrong.
 */
async function download(
  fetch: FetchLike,
  url: string,
  file: string,
  mode: number | undefined,
  expectedSize: number,
  readTimeoutMs: number,
): Promise<{ size: number; sha256: string | undefined }> {
  // A connection that stays open and sends nothing (a stalled proxy or storage node) ends only at
  // undici's own 5 minutes, and was then not tried again: the read timeout cuts it sooner, as a cut.
  const quiet = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const stillReading = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () => quiet.abort(new ReadTimeoutError(`no bytes for ${readTimeoutMs / 1000} s`)),
      readTimeoutMs,
    );
  };
  stillReading();
  try {
    return await downloadWithin(fetch, url, file, mode, expectedSize, quiet.signal, stillReading);
  } finally {
    clearTimeout(timer);
  }
}

async function downloadWithin(
  fetch: FetchLike,
  url: string,
  file: string,
  mode: number | undefined,
  expectedSize: number,
  signal: AbortSignal,
  stillReading: () => void,
): Promise<{ size: number; sha256: string | undefined }> {
  let response: Response;
  try {
    response = await fetch(url, { method: 'GET', signal });
  } catch (err) {
    const { detail, retryable } = describeCut(err, signal);
    throw new DownloadCutOffError(`cannot download ${redactUrl(url)}: ${detail}`, retryable, err);
  }
  if (response.status === 404) {
    // The ledger says the copy is there; storage has no such object (removed out of band, or a
    // target that has not applied it): not found, as `get` of a missing path. Reconcile re-sends it.
    throw new MissingCopyError(`storage has no object at ${redactUrl(url)} (404): the copy is missing there`);
  }
  if (!response.ok || response.body === null) {
    const body = (await response.text().catch(() => '')).slice(0, 4096);
    const detail = describeStorageError(body, response.statusText);
    throw new MirrorCliError(
      response.status === 403
        ? `storage refused the download from ${redactUrl(url)} (403 ${detail}): the copy may be missing there (S3 answers 403 for a missing key when the URL's signer may not list the bucket), or the deployment's role may not read it`
        : `download from ${redactUrl(url)} answered ${response.status} (${detail})`,
    );
  }
  const announced = Number(response.headers.get('content-length') ?? Number.NaN);
  if (announced > expectedSize) {
    await response.body.cancel().catch(() => undefined);
    return { size: announced, sha256: undefined };
  }
  const hash = createSha256();
  let received = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      stillReading();
      if (received > expectedSize) return done(new MoreBytesThanExpected());
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const body = response.body;
  try {
    await streamToNewFile(file, { mode }, (out) => pipeline(Readable.fromWeb(body as never), tap, out));
  } catch (error) {
    if (error instanceof MoreBytesThanExpected) return { size: received, sha256: undefined };
    // The disk's own failures (ENOSPC, EIO: a system call's) are not the connection's, which fetch
    // reports as TypeError('terminated') with the socket's error as its cause: no try again for them.
    // Told by the error, not by which stream emitted it: pipeline destroys the others with it too.
    if (typeof (error as NodeJS.ErrnoException).syscall === 'string') throw error;
    const { detail, retryable } = describeCut(error, signal);
    throw new DownloadCutOffError(
      `the download from ${redactUrl(url)} stopped after ${received} of ${expectedSize} bytes (${detail})`,
      retryable,
      error,
    );
  }
  return hash.digest();
}

/** Runs `call`; a 404 from the API becomes a NotFoundCliError with `message` (exit 3). */
async function notFoundAs<T>(message: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && err.code !== 'no_route') {
      throw new NotFoundCliError(`${message} (${err.message})`, { cause: err });
    }
    throw err;
  }
}
