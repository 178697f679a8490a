/**
 * The verbs people expect from rclone or `aws s3`: `ls`, `log`, `get`, `rm`, `sync`, and
 * `limits`. Each prints a table or a line for people, or with `--json` one JSON document on
 * stdout; errors are one line on stderr with the exit codes of cli/errors.ts (docs/cli.md).
 */
import { type Command, InvalidArgumentError } from 'commander';
import { formatBytes } from '../common/format-bytes.ts';
import type { Limits } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';
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
import { createPutFile } from './put-file.ts';
import { formatSyncSummary, syncFolder } from './sync.ts';
import { defaultCacheFile } from './sync-cache.ts';
import { createJsonLinesSyncProgress, createTtySyncProgress } from './sync-progress.ts';
import { systemClock } from './upload.ts';

export type ClientOf = (command: Command) => Promise<MirrorApi>;

const json = (io: CliIo, value: unknown) => io.stdout.write(`${JSON.stringify(value)}\n`);
const line = (io: CliIo, text: string) => io.stdout.write(`${text}\n`);

function wholeNumber(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d{1,15}$/.test(value) || n < min)
      throw new InvalidArgumentError(`expected a whole number >= ${min}.`);
    return n;
  };
}

function mirrorPath(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return value;
}

export function registerFileCommands(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('ls')
    .description('list the live files under a prefix: commit time, size, version, SHA-256, path')
    .argument('[prefix]', 'only paths starting with this (e.g. photos/2024/)', '')
    .option('--json', 'print {prefix, files: [...]} as JSON')
    .action(async (prefix: string, _opts: unknown, command: Command) => {
      const { json: asJson } = command.opts<{ json?: boolean }>();
      const files = await listFiles(await client(command), prefix);
      if (asJson) json(io, { prefix, files });
      else line(io, formatListing(files));
    });

  program
    .command('log')
    .description("a path's versions, newest first (deletions included)")
    .argument('<path>', 'path in the mirror', mirrorPath)
    .option('--json', 'print {path, versions: [...]} as JSON')
    .action(async (path: string, _opts: unknown, command: Command) => {
      const { json: asJson } = command.opts<{ json?: boolean }>();
      const versions = await listAllVersions(await client(command), path);
      if (asJson) json(io, { path, versions });
      else line(io, formatVersions(path, versions));
    });

  registerGet(program, io, client);
  registerRm(program, io, client);
  registerRestore(program, io, client);
  registerSync(program, io, client);
  registerLimits(program, io, client);
}

function registerGet(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('get')
    .description('download a file; written only once its size and SHA-256 match the version served')
    .argument('<path>', 'path in the mirror', mirrorPath)
    .argument('[dest]', 'file or folder to write to (default: the last segment of the path, here)')
    .option('--target <id>', "read the target's copy instead of the origin's")
    .option('--json', 'print the result as JSON')
    .action(async (path: string, dest: string | undefined, _opts: unknown, command: Command) => {
      const opts = command.opts<{ target?: string; json?: boolean }>();
      const api = await client(command);
      const fetch = io.fetch ?? ((input, init) => globalThis.fetch(input, init));
      const got = await getFile(api, fetch, { path, dest, target: opts.target, cwd: io.cwd });
      if (opts.json) json(io, got);
      else
        line(io, `${got.file}: ${path} version ${got.version}, ${formatBytes(got.size)}, SHA-256 verified`);
    });
}

function registerRm(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('rm')
    .description(
      'delete a file: commits a tombstone as its newest version (older versions stay readable in log)',
    )
    .argument('<path>', 'path in the mirror', mirrorPath)
    .option('--if-version <n>', 'delete only if the head is this version (exit 4 otherwise)', wholeNumber(1))
    .option('--json', 'print the result as JSON')
    .action(async (path: string, _opts: unknown, command: Command) => {
      const opts = command.opts<{ ifVersion?: number; json?: boolean }>();
      const result = await removeFile(await client(command), path, opts.ifVersion);
      if (opts.json) json(io, result);
      else line(io, `deleted ${result.path} (version ${result.version} is the tombstone)`);
    });
}

function registerRestore(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('restore')
    .description(
      "commit an older version's content as the newest version (no bytes sent; a deleted path comes back)",
    )
    .argument('<path>', 'path in the mirror', mirrorPath)
    .argument('<version>', 'the version to restore (see log)', wholeNumber(1))
    .option('--if-version <n>', 'only if the head is this version (exit 4 otherwise)', wholeNumber(0))
    .option('--json', 'print the result as JSON')
    .action(async (path: string, version: number, _opts: unknown, command: Command) => {
      const opts = command.opts<{ ifVersion?: number; json?: boolean }>();
      const result = await restoreFile(await client(command), path, version, opts.ifVersion);
      if (opts.json) json(io, result);
      else line(io, `restored ${result.path} version ${result.restoredFrom} as version ${result.version}`);
    });
}

function registerSync(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('sync')
    .description(
      'upload a folder: only files whose content the mirror does not hold at their path are sent, ' +
        'content it holds elsewhere is committed without its bytes; resumable (a hash cache skips unchanged files)',
    )
    .argument('<dir>', 'local folder')
    .argument('[prefix]', 'mirror folder to put it under (default: the root)', '')
    .option('--dry-run', 'list what would be uploaded; send nothing')
    .option('--jobs <n>', 'files hashed and sent at the same time', wholeNumber(1), 8)
    .option('--cache <file>', 'hash cache file (default: under $XDG_CACHE_HOME or ~/.cache/media-mirror)')
    .option('--no-cache', 'hash every file, remember nothing')
    .option(
      '--timeout <seconds>',
      'how long to wait for the commits once every file is sent',
      wholeNumber(1),
      300,
    )
    .option('--json', 'print the summary (and every file not unchanged) as JSON')
    .action(async (dir: string, prefix: string, _opts: unknown, command: Command) => {
      const opts = command.opts<{
        dryRun?: boolean;
        jobs: number;
        cache: string | boolean;
        timeout: number;
        json?: boolean;
      }>();
      const api = await client(command);
      const progress =
        io.stderr.isTTY === true
          ? createTtySyncProgress(io.stderr as NodeJS.WritableStream)
          : createJsonLinesSyncProgress(io.stderr);
      const cacheFile =
        opts.cache === false
          ? null
          : typeof opts.cache === 'string'
            ? opts.cache
            : defaultCacheFile(dir, io.env);
      let summary: Awaited<ReturnType<typeof syncFolder>>;
      try {
        summary = await syncFolder(
          {
            client: api,
            putFile: io.putFile ?? createPutFile(),
            sendParts: createPartSender(api, io.fetch),
            clock: io.clock ?? systemClock,
            progress,
          },
          {
            dir,
            prefix,
            dryRun: opts.dryRun === true,
            jobs: opts.jobs,
            cacheFile,
            timeoutSeconds: opts.timeout,
          },
        );
      } finally {
        progress.stop();
      }
      if (opts.json) json(io, summary);
      else line(io, formatSyncSummary(summary));
      if (summary.failed > 0)
        throw new MirrorCliError(`${summary.failed} file(s) failed`, { exitCode: EXIT.failure });
    });
}

function registerLimits(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('limits')
    .description(
      'what the deployment accepts: largest upload, multipart threshold, part sizes, content types',
    )
    .option('--json', 'print the API answer as JSON')
    .action(async (_opts: unknown, command: Command) => {
      const limits = await (await client(command)).limits();
      if (command.opts<{ json?: boolean }>().json) json(io, limits);
      else line(io, formatLimits(limits));
    });
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
