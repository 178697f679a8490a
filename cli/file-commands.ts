/**
 * What the API verbs do once parsed: `upload`, `status`, `ls`, `log`, `get`, `rm`, `restore`,
 * `sync` and `limits`. cli/program.ts declares their arguments and options and loads this module
 * only when one of them runs, so `--help` does not load the API client, zod or the hashing code.
 * Each prints a table or a line for people, or with `--json` one JSON document on stdout; errors
 * are one line on stderr with the exit codes of cli/errors.ts (docs/cli.md).
 */
import { formatBytes } from '../common/format-bytes.ts';
import { terminalLines, terminalText } from '../common/terminal-text.ts';
import type { Limits } from '../contracts/api.ts';
import { normalizePath, PathRuleError } from '../contracts/path-rules.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { refusePathBeforeHashing } from '../web/client/upload/claim.ts';
import { envCredentials } from './aws-credentials.ts';
import { EXIT, MirrorCliError } from './errors.ts';
import {
  formatListing,
  formatVersions,
  getFile,
  listAllVersions,
  listFiles,
  removeFile,
  restoreFile,
} from './files.ts';
import { createPartSender } from './multipart.ts';
import type { CliIo } from './program.ts';
import { createJsonLinesProgress, createTtyProgress } from './progress.ts';
import { createPutFile } from './put-file.ts';
import {
  agentConditionsFor,
  apiNow,
  formatFileStatus,
  formatTargetsOverview,
  getPathStatus,
  getTargetsOverview,
} from './status.ts';
import { formatSyncSummary, type SyncSummary, syncFolder } from './sync.ts';
import { defaultCacheFile } from './sync-cache.ts';
import { createJsonLinesSyncProgress, createTtySyncProgress } from './sync-progress.ts';
import { bucketSource, type SyncSource } from './sync-source.ts';
import { waitTimeoutMessage } from './sync-wait.ts';
import { systemClock, type UploadResult, uploadFile } from './upload.ts';

const json = (io: CliIo, value: unknown) => io.stdout.write(`${JSON.stringify(value)}\n`);
// Every verb's answer for people passes here: names and the server's words in it are escaped.
const line = (io: CliIo, text: string) => io.stdout.write(`${terminalLines(text)}\n`);

export interface UploadFlags {
  contentType?: string;
  ifVersion?: number;
  wait: boolean;
  timeout: number;
  json?: boolean;
}

export async function upload(io: CliIo, api: MirrorApi, file: string, path: string, opts: UploadFlags) {
  const progress =
    io.progress ??
    (io.stderr.isTTY === true
      ? createTtyProgress(io.stderr as NodeJS.WritableStream)
      : createJsonLinesProgress(io.stderr));
  let result: UploadResult;
  try {
    result = await uploadFile(
      {
        client: api,
        putFile: io.putFile ?? createPutFile(),
        sendParts: createPartSender(api, io.fetch),
        clock: io.clock ?? systemClock,
        progress,
        checkPath: (mirrorPath) => refusePathBeforeHashing(api, mirrorPath),
      },
      {
        file,
        path,
        contentType: opts.contentType,
        ifVersion: opts.ifVersion,
        wait: opts.wait,
        timeoutSeconds: opts.timeout,
      },
    );
  } finally {
    progress.stop();
  }
  if (opts.json) json(io, uploadJson(result));
  else line(io, uploadLine(result));
}

function uploadJson(r: UploadResult): Record<string, unknown> {
  return {
    path: r.path,
    version: r.version,
    uploadId: r.uploadId,
    deduplicated: r.deduplicated,
    sha256: r.sha256,
    size: r.size,
    seconds: r.seconds,
    status: r.status,
    contentType: r.contentType,
    fellBackFrom: r.fellBackFrom,
  };
}

function uploadLine(r: UploadResult): string {
  const line = committedLine(r);
  return r.fellBackFrom === undefined
    ? line
    : `${line}; as ${r.contentType}: ${r.fellBackFrom} is not accepted`;
}

function committedLine(r: UploadResult): string {
  if (r.deduplicated) {
    return `committed ${r.path} version ${r.version} (deduplicated: no bytes sent)`;
  }
  if (r.status === 'pending') {
    return `sent ${r.path} (${formatBytes(r.size)}, upload ${r.uploadId}); not waiting for the commit: media-mirror status ${r.path}`;
  }
  return `committed ${r.path} version ${r.version} (${formatBytes(r.size)} in ${r.seconds.toFixed(1)} s, upload ${r.uploadId})`;
}

export async function status(io: CliIo, api: MirrorApi, path: string | undefined, opts: { json?: boolean }) {
  const now = io.now ?? (() => new Date());
  if (path === undefined) {
    const overview = await getTargetsOverview(api);
    line(io, opts.json ? JSON.stringify(overview) : formatTargetsOverview(overview));
  } else {
    const [fileStatus, health] = await Promise.all([
      getPathStatus(api, path),
      opts.json ? undefined : api.health({ retry: false }).catch(() => undefined),
    ]);
    if (opts.json) line(io, JSON.stringify(fileStatus));
    else {
      const at = new Date(apiNow(health, now().getTime()));
      line(io, formatFileStatus(fileStatus, at, await agentConditionsFor(api, fileStatus)));
    }
  }
}

export async function ls(io: CliIo, api: MirrorApi, prefix: string, opts: { json?: boolean }) {
  const files = await listFiles(api, checkedPrefix(prefix));
  if (opts.json) json(io, { prefix, files });
  else line(io, formatListing(files));
}

export async function log(io: CliIo, api: MirrorApi, path: string, opts: { json?: boolean }) {
  const versions = await listAllVersions(api, path);
  if (opts.json) json(io, { path, versions });
  else line(io, formatVersions(path, versions));
}

export async function get(
  io: CliIo,
  api: MirrorApi,
  path: string,
  dest: string | undefined,
  opts: { target?: string; version?: number; readTimeout?: number; json?: boolean },
) {
  const fetch = io.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const got = await getFile(api, fetch, {
    path,
    dest,
    target: opts.target,
    version: opts.version,
    readTimeoutMs: opts.readTimeout === undefined ? undefined : opts.readTimeout * 1000,
    cwd: io.cwd,
    stdout: io.contentOut,
  });
  // With `-o -` stdout holds the file: what is said about it goes to stderr.
  const said = dest === '-' ? { ...io, stdout: io.stderr } : io;
  if (opts.json) json(said, got);
  else line(said, `${got.file}: ${path} version ${got.version}, ${formatBytes(got.size)}, SHA-256 verified`);
}

export async function rm(
  io: CliIo,
  api: MirrorApi,
  path: string,
  opts: { ifVersion?: number; json?: boolean },
) {
  const result = await removeFile(api, path, opts.ifVersion);
  if (opts.json) json(io, result);
  else line(io, `deleted ${result.path} (version ${result.version} is the tombstone)`);
}

export async function restore(
  io: CliIo,
  api: MirrorApi,
  path: string,
  version: number,
  opts: { ifVersion?: number; json?: boolean },
) {
  const result = await restoreFile(api, path, version, opts.ifVersion);
  if (opts.json) json(io, result);
  else line(io, `restored ${result.path} version ${result.restoredFrom} as version ${result.version}`);
}

export interface SyncFlags {
  from?: string;
  fromEndpoint?: string;
  dryRun?: boolean;
  jobs: number;
  cache: string | boolean;
  timeout: number;
  wait?: boolean;
  waitTimeout: number;
  exclude?: string[];
  json?: boolean;
}

const usage = { exitCode: EXIT.usage };

/** `sync <dir> [prefix]`, or `sync --from s3://bucket/prefix [prefix]`: the folder or bucket, and the mirror prefix. */
function syncArguments(
  args: readonly (string | undefined)[],
  opts: SyncFlags,
): { dir: string; prefix: string } {
  const [first, second] = args;
  if (opts.from === undefined) {
    if (first === undefined)
      throw new MirrorCliError('sync needs a folder (or --from s3://bucket/prefix)', usage);
    return { dir: first, prefix: checkedPrefix(second ?? '') };
  }
  if (second !== undefined)
    throw new MirrorCliError('with --from, sync takes one argument: the mirror prefix', usage);
  return { dir: opts.from, prefix: checkedPrefix(first ?? '') };
}

/**
 * The prefix is the command's own argument: a path rule it breaks (`..`, `//`, a control
 * character) is a usage error before anything is read, as a path given to `upload` is, and not
 * every file "skipped" with exit 0 (probe V7).
 */
function checkedPrefix(prefix: string): string {
  const folder = prefix.replace(/^\/+/, '').replace(/\/$/, '');
  if (folder === '') return prefix;
  try {
    normalizePath(folder);
  } catch (error) {
    if (error instanceof PathRuleError)
      throw new MirrorCliError(`the prefix ${terminalText(prefix)}: ${error.message}`, usage);
    throw error;
  }
  return prefix;
}

/** The S3 client `--from` reads with: the default credential chain, or the keys in the environment. */
async function sourceOf(io: CliIo, opts: SyncFlags): Promise<SyncSource | undefined> {
  if (opts.from === undefined) return undefined;
  const { S3Client } = await import('@aws-sdk/client-s3');
  const env = io.env;
  const endpoint = opts.fromEndpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const credentials = envCredentials(env);
  const keys = credentials === undefined ? {} : { credentials };
  const s3 = new S3Client({
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...keys,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return bucketSource(s3, opts.from);
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export async function sync(
  io: CliIo,
  api: MirrorApi,
  args: readonly (string | undefined)[],
  opts: SyncFlags,
) {
  const { dir, prefix } = syncArguments(args, opts);
  const clock = io.clock ?? systemClock;
  // The run's own clock paces the lines, so a test's clock decides when one is due.
  const now = () => clock.now();
  const progress =
    io.stderr.isTTY === true
      ? createTtySyncProgress(io.stderr as NodeJS.WritableStream, now)
      : createJsonLinesSyncProgress(io.stderr, now);
  const cacheFile =
    opts.cache === false ? null : typeof opts.cache === 'string' ? opts.cache : defaultCacheFile(dir, io.env);
  let summary: Awaited<ReturnType<typeof syncFolder>>;
  // Ctrl-C or SIGTERM: the summary of the run as it stands (JSON with --json), then the signal ends
  // the process as it would have (exit status 130 or 143). A script reading --json learns what was
  // sent; a next run sends only what the mirror does not hold.
  let snapshot: (() => SyncSummary) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    unlisten();
    progress.stop();
    const partial = snapshot?.();
    if (partial !== undefined) {
      if (opts.json) json(io, partial);
      else line(io, formatSyncSummary(partial));
    }
    // Another handler (a `--from` spool's, cli/remove-on-exit.ts) ends the process after its own work.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const unlisten = () => {
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  try {
    summary = await syncFolder(
      {
        client: api,
        putFile: io.putFile ?? createPutFile(),
        sendParts: createPartSender(api, io.fetch),
        clock,
        progress,
        onSnapshot: (take) => {
          snapshot = take;
        },
      },
      {
        dir,
        source: await sourceOf(io, opts),
        prefix,
        dryRun: opts.dryRun === true,
        jobs: opts.jobs,
        cacheFile,
        timeoutSeconds: opts.timeout,
        wait: opts.wait === true ? { timeoutSeconds: opts.waitTimeout } : undefined,
        exclude: opts.exclude,
      },
    );
  } finally {
    unlisten();
    progress.stop();
  }
  if (opts.json) json(io, summary);
  else line(io, formatSyncSummary(summary));
  if (summary.cacheError !== undefined) {
    io.stderr.write(
      `media-mirror: warning: the hash cache could not be saved (${terminalText(summary.cacheError)}): the next sync hashes these files again\n`,
    );
  }
  if (summary.failed > 0)
    throw new MirrorCliError(`${summary.failed} file(s) failed`, { exitCode: EXIT.failure });
  if (summary.waitError !== undefined)
    throw new MirrorCliError(`waiting for the targets stopped: ${summary.waitError}`, {
      exitCode: EXIT.failure,
    });
  if (summary.wait?.timedOut)
    throw new MirrorCliError(waitTimeoutMessage(summary.wait), { exitCode: EXIT.timeout });
}

export async function limits(io: CliIo, api: MirrorApi, opts: { json?: boolean }) {
  const answer = await api.limits();
  if (opts.json) json(io, answer);
  else line(io, formatLimits(answer));
}

function formatLimits(l: Limits): string {
  return [
    `largest upload        ${formatBytes(l.maxUploadBytes)} (${l.maxUploadBytes} bytes)`,
    `multipart above       ${formatBytes(l.multipartThresholdBytes)}, parts of ${formatBytes(l.partBytes)} (${formatBytes(l.minPartBytes)} to ${formatBytes(l.maxPartBytes)}, at most ${l.maxParts})`,
    `content types         ${l.contentTypes.join(', ')}`,
    `presigned URLs valid  ${l.presignTtlSeconds} s`,
    `longest path          ${l.maxPathBytes} bytes (UTF-8)`,
    `page size             ${l.defaultPageSize} (at most ${l.maxPageSize})`,
  ].join('\n');
}
