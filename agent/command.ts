/**
 * `media-mirror agent` (run the on-premises pull agent) and
 * `media-mirror agent verify` (re-hash the folder against the ledger, optionally repair).
 * The agent owns its command: agent/main.ts runs it alone on a server, and the CLI
 * (cli/program.ts) registers it with `registerAgentCommand(program)`. Failures end as
 * AgentExitError: one line for stderr and the exit code.
 */
import { type Command, Option } from 'commander';
import { terminalText } from '../common/terminal-text.ts';
// The agent and verify load the AWS SDK: imported when their command runs, not for --help.
import type { startAgent } from './agent.ts';
// Configuration is read with zod schemas: loaded when a command runs, not for --help.
import type { AgentFlags } from './config.ts';
import { AgentConfigError, AgentExitError } from './errors.ts';
import { type AgentLog, createJsonLog, createTtyLog } from './log.ts';
import type { VerifyReport } from './verify.ts';

export interface AgentCliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown; isTTY?: boolean; columns?: number };
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /**
   * Takes the process's warnings in place of Node's plain-text print; returns the undo.
   * @default process warnings
   */
  readonly onWarning?: (handler: (warning: Error) => void) => () => void;
  /** Subscribes to SIGTERM/SIGINT/SIGHUP; returns the unsubscribe. @default process signals */
  readonly onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void;
}

const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** The process's own streams, environment and signals. */
export function processIo(): AgentCliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    onWarning: (handler) => {
      const printers = process.listeners('warning');
      process.removeAllListeners('warning');
      process.on('warning', handler);
      return () => {
        process.off('warning', handler);
        for (const printer of printers) process.on('warning', printer);
      };
    },
    onSignal: (handler) => {
      // SIGHUP (a closed ssh session, a supervisor's reload) would otherwise end the process at
      // once: no last heartbeat, temp files left (docs/agent.md).
      for (const signal of STOP_SIGNALS) process.on(signal, handler);
      return () => {
        for (const signal of STOP_SIGNALS) process.off(signal, handler);
      };
    },
  };
}

// Flag values are not parsed here: config.ts checks them with the environment's, so every problem
// is reported at once, naming its flag, and exits 78 (commander's own errors exit otherwise).
const LOG_FORMATS = ['auto', 'json', 'text'];

/** Flags both `agent` and `agent verify` take: where the target, folder and AWS resources are. */
function connectionOptions(command: Command): Command {
  return command
    .option('--dir <folder>', 'the mirror folder (env MIRROR_AGENT_DIR); created if missing')
    .option(
      '--state-dir <folder>',
      'where the agent keeps its state (env MIRROR_AGENT_STATE_DIR; default <dir>/.media-mirror)',
    )
    .option('--table <name>', 'ledger DynamoDB table (env MIRROR_TABLE)')
    .option('--origin-bucket <name>', 'origin S3 bucket holding blobs/<sha256> (env MIRROR_ORIGIN_BUCKET)')
    .option(
      '--region <region>',
      'AWS region of the table, bucket and queue (env AWS_REGION; default us-east-1)',
    )
    .option(
      '--feed-shards <n>',
      'shards of the change feed, 1 to 64 (env MIRROR_FEED_SHARDS; default: endpoints file, then mirror.config.json, then 4)',
    )
    .option(
      '--path-prefix <prefix>',
      "the target's selection, e.g. public/ (env MIRROR_PATH_PREFIX; default: the target's pathPrefix in mirror.config.json)",
    )
    .option(
      '--config <file>',
      'topology file to read feed shards and path prefix from (env MIRROR_CONFIG; default ./mirror.config.json if present)',
    )
    .option(
      '--concurrency <n>',
      'files downloaded (verify: hashed) at the same time, 1 to 64 (env MIRROR_AGENT_CONCURRENCY; default 4)',
    )
    .option(
      '--max-bytes-per-second <rate>',
      'cap on download bandwidth, all files together, e.g. 50MiB (env MIRROR_AGENT_MAX_BYTES_PER_SECOND)',
    )
    .addOption(
      new Option(
        '--s3-force-path-style',
        'address the bucket by path, not host name (S3-compatible stores; env MIRROR_S3_FORCE_PATH_STYLE=true)',
      ),
    );
}

/**
 * Process warnings (the AWS SDK's multi-line NodeVersionSupportWarning on Node 20, emitted with
 * process.emitWarning) go to the log as one line each: Node's own print is plain text, which
 * breaks "JSON lines on stderr" (docs/agent.md).
 */
export function captureProcessWarnings(io: AgentCliIo, log: AgentLog): () => void {
  return (
    io.onWarning?.((warning) =>
      log.log('warn', 'process warning', { name: warning.name, warning: warning.message }),
    ) ?? (() => undefined)
  );
}

function makeLog(
  io: AgentCliIo,
  targetId: string,
  opts: { logFormat?: string; quiet?: boolean; verbose?: boolean; debug?: boolean },
): AgentLog {
  const format = opts.logFormat ?? 'auto';
  const tty = format === 'text' || (format === 'auto' && io.stderr.isTTY === true);
  return tty
    ? createTtyLog(io.stderr, { verbose: opts.verbose === true, debug: opts.debug === true })
    : createJsonLog(io.stderr, {
        quiet: opts.quiet === true,
        debug: opts.debug === true,
        base: { target: targetId },
      });
}

async function config(command: Command, io: AgentCliIo, needQueue: boolean) {
  const flags = command.optsWithGlobals<AgentFlags & { logFormat?: string }>();
  const problems =
    flags.logFormat === undefined || LOG_FORMATS.includes(flags.logFormat)
      ? []
      : [`--log-format: "${flags.logFormat}" is not one of ${LOG_FORMATS.join(', ')}`];
  const { resolveAgentConfig } = await import('./config.ts');
  try {
    return await resolveAgentConfig({
      flags,
      env: io.env,
      cwd: io.cwd,
      needQueue,
      needTarget: needQueue,
      problems,
    });
  } catch (error) {
    if (error instanceof AgentConfigError) throw new AgentExitError(error.message, error.exitCode);
    throw error;
  }
}

function formatVerifyReport(report: VerifyReport, drift: number): string {
  const lines = [
    `verify ${report.targetId} in ${terminalText(report.dir)}: ${report.expected} files in the ledger, ${report.ok} match`,
  ];
  const list = (title: string, entries: readonly { path: string; reason: string; version?: number }[]) => {
    if (entries.length === 0) return;
    lines.push(`${title} (${entries.length}):`);
    for (const e of entries.slice(0, 50)) {
      // Extra files and symlinks are named as found on disk: anything that can write to the
      // folder chooses them, escape sequences included (common/terminal-text.ts).
      const version = e.version === undefined ? '' : ` v${e.version}`;
      lines.push(`  ${terminalText(e.path)}${version}: ${terminalText(e.reason)}`);
    }
    if (entries.length > 50) lines.push(`  ... and ${entries.length - 50} more (use --json for all)`);
  };
  list('missing', report.missing);
  list('wrong bytes', report.wrong);
  list('extra', report.extra);
  list('refused paths (never written)', report.unsafe);
  if (report.keptAside.length > 0)
    lines.push(
      `kept aside by the agent (someone's files, left alone): ${report.keptAside.map(terminalText).join(', ')}`,
    );
  if (report.symlinks.length > 0)
    lines.push(`symlinks (left alone): ${report.symlinks.map(terminalText).join(', ')}`);
  if (report.staleTemps.length > 0) lines.push(`leftover temp files: ${report.staleTemps.length}`);
  if (report.repaired) {
    const r = report.repaired;
    lines.push(`repaired: ${r.fetched} fetched, ${r.removed} removed, ${r.temps} temp files removed`);
    list('could not repair', r.failed);
  } else if (drift === 0) {
    lines.push('no drift');
  } else {
    lines.push('run again with --repair to fix (stop the agent first)');
  }
  return lines.join('\n');
}

export function registerAgentCommand(program: Command, io: AgentCliIo = processIo()): Command {
  const agent = connectionOptions(
    program
      .command('agent')
      .summary('mirror a pull target into a local folder (on-premises agent)')
      .description(
        "Mirror a pull target into a local folder. Long-polls the target's FIFO queue, downloads each " +
          'version from the origin, verifies size and SHA-256 against the message and the ledger, and ' +
          'renames it into place atomically; catches up from the change feed on start, on a gap, and ' +
          'periodically. Outbound HTTPS only; AWS credentials from the standard chain. Stops cleanly on ' +
          'SIGTERM, SIGINT or SIGHUP (exit 0). Exit 78: bad configuration; 73: the mirror folder was moved or ' +
          'replaced while it ran (systemd: RestartPreventExitStatus=78 73).',
      )
      .option('--target <id>', 'the pull target this folder mirrors (env MIRROR_AGENT_TARGET)'),
  )
    .option('--queue-url <url>', "the target's FIFO queue URL (env MIRROR_QUEUE_URL)")
    .option(
      '--visibility-timeout <seconds>',
      'visibility timeout asked for on receive, extended while a file downloads, 10 to 43200 (env MIRROR_AGENT_VISIBILITY_TIMEOUT; default 120)',
    )
    .option(
      '--catch-up-interval <seconds>',
      'how often to read the change feed for anything the queue missed, 5 to 86400 (env MIRROR_AGENT_CATCH_UP_INTERVAL; default 60)',
    )
    .option(
      '--check-interval <seconds>',
      'how often to check the folder for files it lost (removed, or another size) and write them back; 0 turns it off, else 60 to 604800 (env MIRROR_AGENT_CHECK_INTERVAL; default 900)',
    )
    .option(
      '--heartbeat <seconds>',
      "how often to write the agent's heartbeat and cursor to the ledger, 1 to 3600 (env MIRROR_AGENT_HEARTBEAT; default 15)",
    )
    .option(
      '--shutdown-grace <seconds>',
      'on SIGTERM, how long in-flight downloads may finish before being abandoned, 0 to 3600 (env MIRROR_AGENT_SHUTDOWN_GRACE; default 10)',
    )
    .addOption(
      new Option(
        '--log-format <format>',
        'auto, json or text; auto: a status line on a terminal, else JSON lines',
      ).default('auto'),
    )
    .option('--quiet', 'JSON logs: no line per file, only events and problems')
    .option('--verbose', 'terminal: also print a line per file')
    .option('--debug', 'also log heartbeats with full statistics')
    .action((_opts: unknown, command: Command) => runAgent(command, io));

  connectionOptions(
    agent
      .command('verify')
      .summary('re-hash the folder against the ledger; report (and with --repair fix) drift')
      .description(
        "Re-hash the mirror folder against the ledger's heads for this target and report files missing, " +
          'with wrong bytes, or extra. With --repair, fetch the right bytes (verified, atomic) and remove ' +
          'extras and leftover temp files. Exit 0: no drift (or all repaired); 1: drift remains; 73: the folder ' +
          'was moved or replaced while it ran.',
      )
      .option('--target <id>', "the pull target (default: the one recorded in the folder's state)"),
  )
    .option('--repair', 'fix what is found (the agent must not be running on this folder)')
    .option('--json', 'print the report as JSON')
    .action((_opts: unknown, command: Command) => runVerify(command, io));
  return agent;
}

/** `agent`: runs until SIGTERM/SIGINT/SIGHUP; a second signal abandons in-flight downloads. */
async function runAgent(command: Command, io: AgentCliIo): Promise<void> {
  const cfg = await config(command, io, true);
  const log = makeLog(io, cfg.targetId, command.opts());
  const releaseWarnings = captureProcessWarnings(io, log);
  let handle: Awaited<ReturnType<typeof startAgent>>;
  try {
    const agent = await import('./agent.ts');
    handle = await agent.startAgent({ ...cfg, log });
  } catch (error) {
    releaseWarnings();
    log.close();
    if (error instanceof AgentConfigError) throw new AgentExitError(error.message, error.exitCode);
    throw error;
  }
  let signals = 0;
  const unsubscribe = (io.onSignal ?? processIo().onSignal)?.((signal) => {
    signals++;
    if (signals === 1) {
      log.log('info', `${signal}: stopping (send it again to abandon in-flight downloads at once)`);
      void handle.stop();
    } else {
      // Temp files of abandoned downloads are recorded; the next start removes any that remain.
      log.log('warn', `${signal} again: exiting now`);
      log.close();
      process.exit(130);
    }
  });
  await handle.stopped;
  unsubscribe?.();
  releaseWarnings();
  // It stopped by itself: its folder moved (exit 73, logged as it happened).
  if (handle.failure) throw handle.failure;
}

/** The target to verify: `--target`, else the one recorded in the folder's state. */
async function verifyTarget(command: Command, io: AgentCliIo, cfg: { targetId: string; stateDir: string }) {
  if (command.optsWithGlobals<AgentFlags>().target !== undefined || io.env.MIRROR_AGENT_TARGET)
    return cfg.targetId;
  const { StateStore } = await import('./state-store.ts');
  const identity = await StateStore.peekIdentity(cfg.stateDir);
  if (!identity?.targetId)
    throw new AgentExitError(`no agent state in ${cfg.stateDir}: pass --target <id>`, 2);
  return identity.targetId;
}

/** `agent verify`: prints the report; exit 1 while drift remains. */
async function runVerify(command: Command, io: AgentCliIo): Promise<void> {
  const cfg = await config(command, io, false);
  const { repair, json } = command.opts<{ repair?: boolean; json?: boolean }>();
  const targetId = await verifyTarget(command, io, cfg);
  const { driftCount, verifyMirror } = await import('./verify.ts');
  // The report goes to stdout; stderr keeps to JSON lines, as the agent's log.
  const releaseWarnings = captureProcessWarnings(
    io,
    createJsonLog(io.stderr, { base: { target: targetId } }),
  );
  let report: VerifyReport;
  try {
    report = await verifyMirror({ ...cfg, targetId }, { repair: repair === true });
  } catch (error) {
    if (error instanceof AgentConfigError) throw new AgentExitError(error.message, error.exitCode);
    throw error;
  } finally {
    releaseWarnings();
  }
  io.stdout.write(`${json ? JSON.stringify(report) : formatVerifyReport(report, driftCount(report))}\n`);
  const remaining = report.repaired ? report.repaired.failed.length : driftCount(report);
  if (remaining > 0) {
    throw new AgentExitError(
      report.repaired ? `${remaining} file(s) could not be repaired` : `drift found in ${report.dir}`,
      1,
    );
  }
}
