/**
 * The `media-mirror` command line: `upload`, `status`, the file verbs (`ls`, `log`, `get`, `rm`,
 * `sync`, `limits`: cli/file-commands.ts), `reconcile`, `redrive` and `agent` (agent/command.ts:
 * the agent owns it). Everything the commands touch (streams, environment,
 * fetch, PUT, clock) comes in through `CliIo`, so `runCli` runs in-process in tests
 * exactly as `bin/cli.ts` runs it. `reconcile` and `redrive` talk to the ledger and the
 * queues directly (cli/ops-context.ts says where they find them).
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { registerAgentCommand } from '../agent/command.ts';
import { AgentExitError } from '../agent/errors.ts';
import { formatBytes } from '../common/format-bytes.ts';
import { type FetchLike, MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import { isValidContentType } from './content-type.ts';
import { type ConnectionOptions, loadConnection } from './endpoints.ts';
import { apiExitCode, describeApiError, MirrorCliError } from './errors.ts';
import { registerFileCommands } from './file-commands.ts';
import { createPartSender } from './multipart.ts';
// reconcile and redrive load the AWS SDK: imported when they run, not for every command.
import type { OpsFlags } from './ops-context.ts';
import { createJsonLinesProgress, createTtyProgress, type ProgressSink, type Writable } from './progress.ts';
import { createPutFile, type PutFile } from './put-file.ts';
import { formatFileStatus, formatTargetsOverview, getPathStatus, getTargetsOverview } from './status.ts';
import { type Clock, DEFAULT_TIMEOUT_SECONDS, systemClock, type UploadResult, uploadFile } from './upload.ts';

export interface CliIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** @default globalThis.fetch */
  fetch?: FetchLike | undefined;
  /** @default createPutFile() (node:http streaming PUT) */
  putFile?: PutFile | undefined;
  /** @default systemClock */
  clock?: Clock | undefined;
  /** @default a TTY bar when stderr is a TTY, else JSON lines on stderr */
  progress?: ProgressSink | undefined;
  /** Wall clock for "5m ago" in status. @default () => new Date() */
  now?: (() => Date) | undefined;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

const USAGE_EXIT = 2;

function packageVersion(): string {
  try {
    const pkg = createRequire(import.meta.url)('../package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('expected a whole number >= 0.');
  }
  return Number(value);
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 86_400) {
    throw new InvalidArgumentError('expected seconds, a number > 0 and <= 86400.');
  }
  return n;
}

function parseContentType(value: string): string {
  if (!isValidContentType(value)) throw new InvalidArgumentError('expected type/subtype, e.g. image/jpeg.');
  return value;
}

function parsePositiveInt(value: string): number {
  const n = parseNonNegativeInt(value);
  if (n === 0) throw new InvalidArgumentError('expected a whole number > 0.');
  return n;
}

/** Repeatable flags (`--target a --target b`); commas split too (`--target a,b`). */
function collect(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== ''),
  ];
}

function collectPair(value: string, previous: string[] = []): string[] {
  if (!/^[^=]+=.+$/.test(value)) throw new InvalidArgumentError('expected <id>=<value>.');
  return [...previous, value];
}

/** Where reconcile and redrive find the ledger and queues on AWS (locally: the endpoints file). */
function awsOptions(command: Command, which: { buckets?: boolean; ingest?: boolean }): Command {
  command
    .option('--table <name>', 'AWS: the ledger table; selects AWS over the endpoints file (env MIRROR_TABLE)')
    .option('--region <region>', "AWS: home region (env AWS_REGION; default the topology's homeRegion)")
    .option(
      '--config <file>',
      'AWS: the topology naming the targets (env MIRROR_CONFIG; default ./mirror.config.json)',
    )
    .option(
      '--queue-url <id=url>',
      "AWS: a target's queue URL (repeatable; or MIRROR_TARGETS as the functions have it)",
      collectPair,
    );
  if (which.buckets) {
    command
      .option('--origin-bucket <name>', 'AWS: the origin bucket (env MIRROR_ORIGIN_BUCKET)')
      .option(
        '--bucket <id=name>',
        "AWS: an S3 target's bucket, to check its objects (repeatable; default the topology's bucketName)",
        collectPair,
      );
  }
  if (which.ingest) {
    command.option('--ingest-queue-url <url>', 'AWS: the ingest queue URL (env MIRROR_INGEST_QUEUE_URL)');
  }
  return command;
}

function parseMirrorPath(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return value;
}

function createProgram(io: CliIo): Command {
  const program = new Command();
  program
    .name('media-mirror')
    .description('Write a file once, see it everywhere: upload to Media Mirror and watch it replicate.')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(s.startsWith('error:') ? `media-mirror: ${s}` : s),
    })
    .option(
      '--endpoints <file>',
      'endpoints file written by npm start (default: $MIRROR_DATA_DIR/endpoints.json, MIRROR_DATA_DIR=.mirror)',
    )
    .option('--api <url>', 'API base URL, overrides the endpoints file (env: MIRROR_API_URL)')
    .option('--token <token>', 'API bearer token, overrides the endpoints file (env: MIRROR_API_TOKEN)')
    .showSuggestionAfterError(true);

  const client = (command: Command) => apiClient(command, io);
  registerUploadCommand(program, io, client);
  registerStatusCommand(program, io, client);
  registerFileCommands(program, io, client);

  awsOptions(
    program
      .command('reconcile')
      .description(
        "compare the ledger's heads with what each target holds (S3: the objects' metadata, paced; pull: " +
          'what its agent reported) and re-send what is missing, outdated or altered; prints counts per target',
      )
      .option('--target <id>', 'only this target (repeatable; default every target)', collect)
      .option('--dry-run', 'count and report what would be re-sent; change nothing')
      .option('--rate <n>', 'object checks per second against each replica bucket', parsePositiveInt, 50)
      .option('--json', 'print the report as JSON'),
    { buckets: true },
  ).action(async (_opts: unknown, command: Command) => {
    const opts = command.optsWithGlobals<
      OpsFlags & { target?: string[]; dryRun?: boolean; rate: number; json?: boolean }
    >();
    const { makeOpsClients, resolveOpsContext } = await import('./ops-context.ts');
    const { formatReconcileResult, runReconcile } = await import('./reconcile.ts');
    const ctx = await resolveOpsContext(opts, io.env, io.cwd);
    const clients = makeOpsClients(ctx);
    try {
      const result = await runReconcile(ctx, clients, {
        targetIds: opts.target,
        dryRun: opts.dryRun === true,
        checksPerSecond: opts.rate,
      });
      io.stdout.write(`${opts.json ? JSON.stringify(result) : formatReconcileResult(result)}\n`);
    } finally {
      clients.destroy();
    }
  });

  awsOptions(
    program
      .command('redrive')
      .description(
        "move a queue's dead-letter messages back to it once the cause is fixed: StartMessageMoveTask on AWS; " +
          'against the local emulators the same by hand (new deduplication ids, delete only after the send)',
      )
      .option('--target <id>', 'the target whose DLQ to redrive')
      .option('--ingest', "redrive the ingest queue's DLQ instead")
      .option('--dry-run', 'count the messages that would move; move nothing')
      .option('--wait', 'AWS: wait for the move task to finish and print its counts')
      .option('--json', 'print the result as JSON'),
    { ingest: true },
  ).action(async (_opts: unknown, command: Command) => {
    const opts = command.optsWithGlobals<
      OpsFlags & { target?: string; ingest?: boolean; dryRun?: boolean; wait?: boolean; json?: boolean }
    >();
    const { makeOpsClients, resolveOpsContext } = await import('./ops-context.ts');
    const { formatRedriveResult, redriveFailed, runRedrive } = await import('./redrive.ts');
    const ctx = await resolveOpsContext(opts, io.env, io.cwd);
    const clients = makeOpsClients(ctx);
    try {
      const result = await runRedrive(ctx, clients.sqs, {
        targetId: opts.target,
        ingest: opts.ingest,
        dryRun: opts.dryRun === true,
        wait: opts.wait,
      });
      io.stdout.write(`${opts.json ? JSON.stringify(result) : formatRedriveResult(result)}\n`);
      const failure = redriveFailed(result);
      if (failure) throw failure;
    } finally {
      clients.destroy();
    }
  });

  registerAgentCommand(program, { stdout: io.stdout, stderr: io.stderr, env: io.env, cwd: io.cwd });

  return program;
}

/** The CLI's one API client, from the endpoints file or --api/--token. */
async function apiClient(command: Command, io: CliIo): Promise<MirrorApi> {
  const options = command.optsWithGlobals<ConnectionOptions>();
  const connection = await loadConnection(
    { endpoints: options.endpoints, api: options.api, token: options.token },
    io.env,
    io.cwd,
  );
  return new MirrorApi({
    baseUrl: connection.api,
    token: connection.token,
    fetch: io.fetch,
    timeoutMs: 30_000,
    retries: 3,
    backoff: { baseMs: 500, maxMs: 4_000 },
  });
}

type ClientOf = (command: Command) => Promise<MirrorApi>;

function registerUploadCommand(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('upload')
    .description('hash a file, upload it (unless the same bytes are already stored) and wait for the commit')
    .argument('<file>', 'local file to upload')
    .argument('<path>', 'path in the mirror, e.g. images/2024/cat.jpg', parseMirrorPath)
    .option('--content-type <type>', 'content type (default: guessed from the extension)', parseContentType)
    .option('--if-version <n>', 'commit only if the path is at this version now', parseNonNegativeInt)
    .option('--no-wait', 'return once the bytes are sent, without waiting for the commit')
    .option('--timeout <seconds>', 'how long to wait for the commit', parseSeconds, DEFAULT_TIMEOUT_SECONDS)
    .option('--json', 'print the result as one JSON object')
    .action(async (file: string, path: string, _opts: unknown, command: Command) => {
      const opts = command.opts<{
        contentType?: string;
        ifVersion?: number;
        wait: boolean;
        timeout: number;
        json?: boolean;
      }>();
      const api = await client(command);
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
      io.stdout.write(`${opts.json ? JSON.stringify(uploadJson(result)) : uploadLine(result)}\n`);
    });
}

function registerStatusCommand(program: Command, io: CliIo, client: ClientOf): void {
  program
    .command('status')
    .description(
      "without a path: the deployment's targets with lag, backlog, agent heartbeat and failures; " +
        "with a path: its head version and each target's copy",
    )
    .argument('[path]', 'path in the mirror')
    .option('--json', 'print the answer as JSON')
    .action(async (path: string | undefined, _opts: unknown, command: Command) => {
      const { json } = command.opts<{ json?: boolean }>();
      const api = await client(command);
      const now = io.now ?? (() => new Date());
      if (path === undefined) {
        const overview = await getTargetsOverview(api);
        io.stdout.write(`${json ? JSON.stringify(overview) : formatTargetsOverview(overview)}\n`);
      } else {
        const status = await getPathStatus(api, path);
        io.stdout.write(`${json ? JSON.stringify(status) : formatFileStatus(status, now())}\n`);
      }
    });
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
  };
}

function uploadLine(r: UploadResult): string {
  if (r.deduplicated) {
    return `committed ${r.path} version ${r.version} (deduplicated: no bytes sent)`;
  }
  if (r.status === 'pending') {
    return `sent ${r.path} (${formatBytes(r.size)}, upload ${r.uploadId}); not waiting for the commit: media-mirror status ${r.path}`;
  }
  return `committed ${r.path} version ${r.version} (${formatBytes(r.size)} in ${r.seconds.toFixed(1)} s, upload ${r.uploadId})`;
}

/**
 * Parses `argv` (as in process.argv) and runs the command; returns the exit code:
 * 0 ok, 1 failure, 2 usage. Prints errors as one line on stderr.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its message (or the help/version) already.
      return err.exitCode === 0 ? 0 : USAGE_EXIT;
    }
    return reportError(err, io);
  }
}

/** One line on stderr for a failure; the exit code it ends with. */
function reportError(err: unknown, io: CliIo): number {
  if (err instanceof MirrorCliError || err instanceof AgentExitError) {
    io.stderr.write(`media-mirror: ${err.message}\n`);
    return err.exitCode;
  }
  if (err instanceof ApiError) {
    io.stderr.write(`media-mirror: ${describeApiError(err)}\n`);
    return apiExitCode(err);
  }
  const message = err instanceof Error ? err.message : String(err);
  io.stderr.write(`media-mirror: unexpected error: ${message}\n`);
  if (io.env.MIRROR_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  return 1;
}
