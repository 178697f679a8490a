/**
 * The `media-mirror` command line: `upload`, `status`, the file verbs (`ls`, `log`, `get`, `rm`,
 * `restore`, `sync`, `limits`), `reconcile`, `redrive` and `agent` (agent/command.ts: the agent
 * owns it). This module declares every verb's arguments and options and nothing else: what a
 * verb does is imported when it runs (cli/file-commands.ts for the API verbs), so `--help` and
 * usage errors load commander alone, not the API client, zod, the hashing code or the AWS SDK
 * (docs/cli.md: start-up time). Everything the commands touch (streams, environment, fetch, PUT,
 * clock) comes in through `CliIo`, so `runCli` runs in-process in tests exactly as `bin/cli.ts`
 * runs it. `reconcile` and `redrive` talk to the ledger and the queues directly
 * (cli/ops-context.ts says where they find them).
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { registerAgentCommand } from '../agent/command.ts';
import { AgentExitError } from '../agent/errors.ts';
import { terminalLines, terminalText } from '../common/terminal-text.ts';
import {
  CONTENT_TYPE_PATTERN,
  CONTENT_TYPE_RULE,
  MAX_CONTENT_TYPE_LENGTH,
} from '../contracts/content-type.ts';
import { checkApiName, checkNewPathName, normalizePath, PathRuleError } from '../contracts/path-rules.ts';
import type { FetchLike, MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import type { ConnectionOptions } from './endpoints.ts';
import { apiExitCode, describeApiError, EXIT, MirrorCliError } from './errors.ts';
import type { OpsFlags } from './ops-context.ts';
import type { ProgressSink, Writable } from './progress.ts';
import type { PutFile } from './put-file.ts';
import type { Clock } from './upload.ts';

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
  /** Where `get -o -` writes the file's bytes. @default process.stdout */
  contentOut?: NodeJS.WritableStream | undefined;
}

export function processIo(): CliIo {
  // A reader that stops early (`media-mirror --help | head -1`, `ls | head`) closes the pipe: the
  // rest of the output has nowhere to go, which is no error of ours. Without a listener, Node threw
  // the EPIPE with a stack trace and exit 1.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      process.exit(process.exitCode ?? 0);
    });
  }
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

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

/** The API's own rule (contracts/api.ts): refused here, before a file is hashed. */
function parseContentType(value: string): string {
  if (value.length > MAX_CONTENT_TYPE_LENGTH || !CONTENT_TYPE_PATTERN.test(value)) {
    throw new InvalidArgumentError(`${CONTENT_TYPE_RULE}, without parameters.`);
  }
  return value.toLowerCase();
}

function parsePositiveInt(value: string): number {
  // Its own message for every bad value: parseNonNegativeInt's ('>= 0') would name 0 as allowed.
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) === 0) {
    throw new InvalidArgumentError('expected a whole number > 0.');
  }
  return Number(value);
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

/** Repeatable `--exclude`; not split at commas, which a glob's braces hold (`*.{tmp,bak}`). */
function collectPattern(value: string, previous: string[] = []): string[] {
  if (value.trim() === '') throw new InvalidArgumentError('expected a pattern, such as *.tmp or cache/.');
  return [...previous, value];
}

function collectPair(value: string, previous: string[] = []): string[] {
  if (!/^[^=]+=.+$/.test(value)) throw new InvalidArgumentError('expected <id>=<value>.');
  return [...previous, value];
}

/** Where reconcile and redrive find the ledger and queues on AWS (locally: the endpoints file). */
function awsOptions(command: Command, which: { buckets?: boolean; queuesOfNoTarget?: boolean }): Command {
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
  if (which.queuesOfNoTarget) {
    command
      .option('--ingest-queue-url <url>', 'AWS: the ingest queue URL (env MIRROR_INGEST_QUEUE_URL)')
      .option(
        '--completion-queue-url <url>',
        'AWS: the multipart completion queue URL (env MIRROR_COMPLETION_QUEUE_URL)',
      );
  }
  return command;
}

/** The path a new upload goes to: also the rule only new paths follow (no `%`, `?` or `#`). */
function parseNewMirrorPath(value: string): string {
  return asArgument(() => {
    const path = parseMirrorPath(value);
    checkNewPathName(path);
    return path;
  });
}

/** The API's path rule (contracts/paths.ts), checked before a file is hashed or anything is sent. */
function parseMirrorPath(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return asArgument(() => {
    const path = normalizePath(value);
    checkApiName(path);
    return path;
  });
}

/** A path rule broken, as commander's argument error (exit 2). */
function asArgument(check: () => string): string {
  try {
    return check();
  } catch (error) {
    if (error instanceof PathRuleError) throw new InvalidArgumentError(`${error.message}.`);
    throw error;
  }
}

/** `ls`-style whole numbers (`--jobs`, `--if-version` of rm/restore). */
function wholeNumber(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d{1,15}$/.test(value) || n < min)
      throw new InvalidArgumentError(`expected a whole number >= ${min}.`);
    return n;
  };
}

/** The seconds `upload` waits for its commit by default (cli/upload.ts has the same default). */
const UPLOAD_TIMEOUT_SECONDS = 120;

function createProgram(io: CliIo): Command {
  const program = new Command();
  program
    .name('media-mirror')
    .description('Write a file once, see it everywhere: upload to Media Mirror and watch it replicate.')
    // The program's version is asked for as the first argument only (runCli): commander reads a
    // program option after the verb too, and `get --version <n>` is the verb's.
    .addHelpText('after', '\nmedia-mirror -V, --version: print the version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // A usage error quotes the argument it refused: a path the rules refuse holds the very
      // characters a terminal must not be handed.
      outputError: (s, write) => write(terminalLines(s.startsWith('error:') ? `media-mirror: ${s}` : s)),
    })
    .option(
      '--endpoints <file>',
      'endpoints file written by npm start (env MIRROR_ENDPOINTS; default: $MIRROR_DATA_DIR/endpoints.json, MIRROR_DATA_DIR=.mirror)',
    )
    .option('--api <url>', 'API base URL, overrides the endpoints file (env: MIRROR_API_URL)')
    .option('--token <token>', 'API bearer token, overrides the endpoints file (env: MIRROR_API_TOKEN)')
    .option(
      '--auth <bearer|iam>',
      'iam: sign each request with SigV4 and your AWS credentials, for an API behind IAM (env: MIRROR_API_AUTH; default bearer)',
    )
    .showSuggestionAfterError(true);

  const verb = verbRunner(io);
  registerUploadCommands(program, verb);
  registerReadCommands(program, verb);
  registerWriteCommands(program, verb);
  registerOpsCommands(program, io);
  registerAgentCommand(program, { stdout: io.stdout, stderr: io.stderr, env: io.env, cwd: io.cwd });
  return program;
}

type Verbs = typeof import('./file-commands.ts');
/** Runs an API verb: loads its implementation and the API client only now. */
type VerbRunner = (
  command: Command,
  run: (verbs: Verbs, api: MirrorApi, io: CliIo) => Promise<void>,
) => Promise<void>;

function verbRunner(io: CliIo): VerbRunner {
  return async (command, run) => {
    const [verbs, api] = await Promise.all([import('./file-commands.ts'), apiClient(command, io)]);
    await run(verbs, api, io);
  };
}

/** The CLI's one API client, from the endpoints file or --api/--token. */
async function apiClient(command: Command, io: CliIo): Promise<MirrorApi> {
  const options = command.optsWithGlobals<ConnectionOptions>();
  const [{ loadConnection }, { MirrorApi }, { apiFetch }] = await Promise.all([
    import('./endpoints.ts'),
    import('../web/client/api.ts'),
    import('./api-transport.ts'),
  ]);
  const connection = await loadConnection(
    { endpoints: options.endpoints, api: options.api, token: options.token, auth: options.auth },
    io.env,
    io.cwd,
  );
  const credentials =
    connection.auth === 'iam'
      ? { sign: await (await import('./iam-auth.ts')).iamSigner(connection.api, io.env) }
      : { token: connection.token };
  return new MirrorApi({
    baseUrl: connection.api,
    ...credentials,
    fetch: io.fetch ?? apiFetch,
    timeoutMs: 30_000,
    retries: 3,
    backoff: { baseMs: 500, maxMs: 4_000 },
  });
}

function registerUploadCommands(program: Command, verb: VerbRunner): void {
  program
    .command('upload')
    .description('hash a file, upload it (unless the same bytes are already stored) and wait for the commit')
    .argument('<file>', 'local file to upload')
    .argument('<path>', 'path in the mirror, e.g. images/2024/cat.jpg', parseNewMirrorPath)
    .option('--content-type <type>', 'content type (default: guessed from the extension)', parseContentType)
    .option('--if-version <n>', 'commit only if the path is at this version now', parseNonNegativeInt)
    .option('--no-wait', 'return once the bytes are sent, without waiting for the commit')
    .option('--timeout <seconds>', 'how long to wait for the commit', parseSeconds, UPLOAD_TIMEOUT_SECONDS)
    .option('--json', 'print the result as one JSON object')
    .action((file: string, path: string, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.upload(io, api, file, path, command.opts())),
    );

  program
    .command('sync')
    .description(
      'upload a folder: only files whose content the mirror does not hold at their path are sent, ' +
        'content it holds elsewhere is committed without its bytes; resumable (a hash cache skips unchanged files)',
    )
    .argument('[dir]', 'local folder (with --from: none, the one argument is the prefix)')
    .argument('[prefix]', 'mirror folder to put it under (default: the root)')
    .option('--from <s3-url>', 'import from a bucket instead of a folder: s3://bucket/prefix')
    .option(
      '--from-endpoint <url>',
      'S3-compatible endpoint for --from, path-style (default: AWS, or $AWS_ENDPOINT_URL_S3)',
    )
    .option('--dry-run', 'list what would be uploaded; send nothing')
    .option('--jobs <n>', 'files hashed and sent at the same time', wholeNumber(1), 8)
    .option('--cache <file>', 'hash cache file (default: under $XDG_CACHE_HOME or ~/.cache/media-mirror)')
    .option('--no-cache', 'hash every file, remember nothing')
    .option(
      '--exclude <pattern>',
      'leave out what matches, by its path under the folder (repeatable): *.tmp in any folder, cache/ under any folder, /cache/ at the top, thumbs/** from the top',
      collectPattern,
    )
    .option(
      '--timeout <seconds>',
      'how long to wait for the commits once every file is sent',
      wholeNumber(1),
      300,
    )
    .option('--wait', 'then wait until every target holds every file (exit 6 if one does not in time)')
    .addOption(
      new Option('--wait-timeout <seconds>', 'how long --wait waits for the targets (implies --wait)')
        .argParser(parseSeconds)
        .default(600)
        .implies({ wait: true }),
    )
    .option('--json', 'print the summary (and every file not unchanged) as JSON')
    .action((dir: string | undefined, prefix: string | undefined, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.sync(io, api, [dir, prefix], command.opts())),
    );
}
function registerReadCommands(program: Command, verb: VerbRunner): void {
  program
    .command('status')
    .description(
      "without a path: the deployment's targets with lag, backlog, agent heartbeat and failures; " +
        "with a path: its head version and each target's copy",
    )
    .argument('[path]', 'path in the mirror')
    .option('--json', 'print the answer as JSON')
    .action((path: string | undefined, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.status(io, api, path, command.opts())),
    );

  program
    .command('ls')
    .description('list the live files under a prefix: commit time, size, version, SHA-256, path')
    .argument('[prefix]', 'only paths starting with this (e.g. photos/2024/)', '')
    .option('--json', 'print {prefix, files: [...]} as JSON')
    .action((prefix: string, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.ls(io, api, prefix, command.opts())),
    );

  program
    .command('log')
    .description("a path's versions, newest first (deletions included)")
    .argument('<path>', 'path in the mirror', parseMirrorPath)
    .option('--json', 'print {path, versions: [...]} as JSON')
    .action((path: string, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.log(io, api, path, command.opts())),
    );

  program
    .command('get')
    .description('download a file; written only once its size and SHA-256 match the version served')
    .argument('<path>', 'path in the mirror', parseMirrorPath)
    .argument('[dest]', 'file or folder to write to (default: the last segment of the path, here)')
    .option('-o, --output <file>', 'file or folder to write to, as [dest]; - for stdout (once verified)')
    .option('--target <id>', "read the target's copy instead of the origin's")
    .option('--version <n>', "an older version's bytes (see log), from the origin", wholeNumber(1))
    .option(
      '--read-timeout <seconds>',
      'cut and try again a download that sends nothing for this long',
      parseSeconds,
      60,
    )
    .option('--json', 'print the result as JSON')
    .action((path: string, given: string | undefined, _opts: unknown, command: Command) => {
      const { output, ...options } = command.opts<{
        output?: string;
        target?: string;
        version?: number;
        readTimeout?: number;
        json?: boolean;
      }>();
      if (given !== undefined && output !== undefined && given !== output) {
        command.error(`error: two destinations given (${given} and -o ${output}): name one`);
      }
      return verb(command, (v, api, io) => v.get(io, api, path, given ?? output, options));
    });

  program
    .command('limits')
    .description(
      'what the deployment accepts: largest upload, multipart threshold, part sizes, content types',
    )
    .option('--json', 'print the API answer as JSON')
    .action((_opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.limits(io, api, command.opts())),
    );
}

function registerWriteCommands(program: Command, verb: VerbRunner): void {
  program
    .command('rm')
    .description(
      'delete a file: commits a tombstone as its newest version (older versions stay readable in log)',
    )
    .argument('<path>', 'path in the mirror', parseMirrorPath)
    .option('--if-version <n>', 'delete only if the head is this version (exit 4 otherwise)', wholeNumber(1))
    .option('--json', 'print the result as JSON')
    .action((path: string, _opts: unknown, command: Command) =>
      verb(command, (v, api, io) => v.rm(io, api, path, command.opts())),
    );

  program
    .command('restore')
    .description(
      "commit an older version's content as the newest version (no bytes sent; a deleted path comes back)",
    )
    .argument('<path>', 'path in the mirror', parseMirrorPath)
    .argument('[version]', 'the version to restore (see log); or --version', wholeNumber(1))
    // Also `--version N`, as `get` takes it: either form, not two that differ.
    .option('--version <n>', 'the version to restore (see log)', wholeNumber(1))
    .option('--if-version <n>', 'only if the head is this version (exit 4 otherwise)', wholeNumber(0))
    .option('--json', 'print the result as JSON')
    .action((path: string, given: number | undefined, _opts: unknown, command: Command) => {
      const { version: flag, ...options } = command.opts<{
        version?: number;
        ifVersion?: number;
        json?: boolean;
      }>();
      if (given === undefined && flag === undefined) {
        command.error('error: restore needs a version: <version> or --version <n>');
      }
      if (given !== undefined && flag !== undefined && given !== flag) {
        command.error(`error: two versions given (${given} and --version ${flag}): name one`);
      }
      const version = (given ?? flag) as number;
      return verb(command, (v, api, io) => v.restore(io, api, path, version, options));
    });
}

/** `reconcile` and `redrive` load the AWS SDK, only when they run. */
function registerOpsCommands(program: Command, io: CliIo): void {
  awsOptions(
    program
      .command('reconcile')
      .description(
        "compare the ledger's heads with what each target holds (S3: the objects' metadata, paced; pull: " +
          'what its agent reported) and re-send what is missing, outdated or altered; prints counts per target',
      )
      .option('--target <id>', 'only this target (repeatable; default every target)', collect)
      .option('--dry-run', 'count and report what would be re-sent; change nothing')
      .option(
        '--rate <n>',
        'object checks per second, all replica buckets together (one pace for the whole run)',
        parsePositiveInt,
        50,
      )
      .option('--json', 'print the report as JSON'),
    { buckets: true },
  ).action(async (_opts: unknown, command: Command) => {
    const opts = command.optsWithGlobals<
      OpsFlags & { target?: string[]; dryRun?: boolean; rate: number; json?: boolean }
    >();
    const { makeOpsClients, resolveOpsContext, unreachableStack } = await import('./ops-context.ts');
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
    } catch (err) {
      throw unreachableStack(ctx, err);
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
      .option('--completion', "redrive the multipart completion queue's DLQ instead")
      .option('--dry-run', 'count the messages that would move; move nothing')
      .option('--wait', 'AWS: wait for the move task to finish and print its counts')
      .option('--json', 'print the result as JSON'),
    { queuesOfNoTarget: true },
  ).action(async (_opts: unknown, command: Command) => {
    const opts = command.optsWithGlobals<
      OpsFlags & {
        target?: string;
        ingest?: boolean;
        completion?: boolean;
        dryRun?: boolean;
        wait?: boolean;
        json?: boolean;
      }
    >();
    const { makeOpsClients, resolveOpsContext, unreachableStack } = await import('./ops-context.ts');
    const { formatRedriveResult, redriveFailed, runRedrive } = await import('./redrive.ts');
    const ctx = await resolveOpsContext(opts, io.env, io.cwd);
    const clients = makeOpsClients(ctx);
    let result: Awaited<ReturnType<typeof runRedrive>>;
    try {
      result = await runRedrive(ctx, clients.sqs, {
        targetId: opts.target,
        ingest: opts.ingest,
        completion: opts.completion,
        dryRun: opts.dryRun === true,
        wait: opts.wait,
      });
    } catch (err) {
      throw unreachableStack(ctx, err);
    } finally {
      clients.destroy();
    }
    io.stdout.write(`${opts.json ? JSON.stringify(result) : formatRedriveResult(result)}\n`);
    const failure = redriveFailed(result);
    if (failure) throw failure;
  });
}

/** The program options that take a value (they may come before `-V`/`--version`). */
const PROGRAM_OPTIONS_WITH_VALUE = new Set(['--endpoints', '--api', '--token', '--auth']);

/** `-V` or `--version` before any verb: after one, `--version` is the verb's (`get --version <n>`). */
function asksForVersion(argv: readonly string[]): boolean {
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-V' || arg === '--version') return true;
    if (PROGRAM_OPTIONS_WITH_VALUE.has(arg)) i++;
    else if (!/^--(endpoints|api|token|auth)=/.test(arg)) return false;
  }
  return false;
}

/**
 * Parses `argv` (as in process.argv) and runs the command; returns the exit code:
 * 0 ok, 1 failure, 2 usage. Prints errors as one line on stderr.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  if (asksForVersion(argv)) {
    io.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  // A command that printed its JSON answer before failing (sync's summary) has said it all.
  let printed = false;
  const program = createProgram({
    ...io,
    stdout: {
      write: (s: string) => {
        printed = true;
        return io.stdout.write(s);
      },
    },
  });
  const json = asksForJson(argv);
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its message (or the help/version) already.
      if (err.exitCode === 0) return 0;
      if (json && !printed) writeJsonError(io, { code: 'usage', message: err.message, exitCode: EXIT.usage });
      return EXIT.usage;
    }
    const exitCode = reportError(err, io);
    if (json && !printed) writeJsonError(io, describeFailure(err, exitCode));
    return exitCode;
  }
}

/** `--json` before any `--`: the caller parses stdout, so a failure is JSON there too. */
function asksForJson(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

/** The code a script branches on when no API answer names one: one per exit code (docs/cli.md). */
const FAILURE_CODES: Record<number, string> = {
  [EXIT.failure]: 'failed',
  [EXIT.usage]: 'usage',
  [EXIT.notFound]: 'not_found',
  [EXIT.conflict]: 'version_conflict',
  [EXIT.verifyFailed]: 'verify_failed',
  [EXIT.timeout]: 'timeout',
};

interface JsonFailure {
  readonly code: string;
  readonly message: string;
  readonly exitCode: number;
  readonly status?: number;
  readonly field?: string;
}

/** The failure as JSON: the API's code, status and field when an API answer caused it. */
function describeFailure(err: unknown, exitCode: number): JsonFailure {
  const message = err instanceof Error ? err.message : String(err);
  let cause: unknown = err;
  while (cause instanceof Error && !(cause instanceof ApiError)) cause = cause.cause;
  if (cause instanceof ApiError && cause.status > 0) {
    return {
      code: cause.code,
      message,
      exitCode,
      status: cause.status,
      ...(cause.field === undefined ? {} : { field: cause.field }),
    };
  }
  return { code: FAILURE_CODES[exitCode] ?? 'failed', message, exitCode };
}

function writeJsonError(io: CliIo, failure: JsonFailure): void {
  io.stdout.write(`${JSON.stringify({ error: failure })}\n`);
}

/** One line on stderr for a failure; the exit code it ends with. */
function reportError(err: unknown, io: CliIo): number {
  // Messages name paths and quote the server: one line, whatever characters they hold.
  const say = (message: string) => io.stderr.write(`media-mirror: ${terminalText(message)}\n`);
  if (err instanceof AgentExitError) {
    // The agent's own report (a bad configuration lists each problem on its line), its values escaped.
    io.stderr.write(`media-mirror: ${terminalLines(err.message)}\n`);
    return err.exitCode;
  }
  if (err instanceof MirrorCliError) {
    say(err.message);
    return err.exitCode;
  }
  if (err instanceof ApiError) {
    say(describeApiError(err));
    return apiExitCode(err);
  }
  say(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
  if (io.env.MIRROR_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  return 1;
}
