/**
 * The on-premises pull agent: mirrors one pull target into a local folder.
 *
 *   queue (FIFO, long poll) ──┐
 *                             ├─▶ applier (per-path lock, never backwards) ──▶ <dir>/<path>
 *   change feed (catch-up) ───┘         │
 *                                       ├─▶ local state (journal, fsynced)
 *                                       └─▶ ledger: T#<target>#<path> (verified)
 *   heartbeat ──▶ ledger: AGENT#<target> (cursor, counts, backlog, lag)
 *
 * `startAgent` runs it in-process (the local stack does); `media-mirror agent`
 * runs it as a command with signals, a TTY status line or JSON logs.
 */

import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { peakRssBytes } from '../common/peak-rss.ts';
import { isAlive } from '../common/pid-lock.ts';
import { pause } from '../common/retry.ts';
import type { AgentRow } from '../contracts/ledger-keys.ts';
import { encodeCursor } from '../contracts/model.ts';
import { Applier, type ApplyOutcome, type ApplySource, type VersionInfo } from './applier.ts';
import { type AgentClients, destroyClients, makeClients, originBlobSource, SqsQueue } from './aws.ts';
import { FeedFollower, type RoundReport } from './catch-up.ts';
import { Conditions } from './conditions.ts';
import { type AgentConfig, withDefaults } from './config.ts';
import {
  classifyCondition,
  isAbort,
  MirrorFolderMovedError,
  NotYetError,
  type RefusalCode,
} from './errors.ts';
import { checkShardCountAgainstLedger } from './feed-shards.ts';
import { DynamoLedgerView } from './ledger.ts';
import { type AgentLog, createJsonLog } from './log.ts';
import type { BlobSource, LedgerView, QueuePort } from './ports.ts';
import { QueueConsumer, type WorkOutcome } from './queue-consumer.ts';
import { isTempName, SafePaths } from './safe-path.ts';
import { ServerClock } from './server-clock.ts';
import { StateStore } from './state-store.ts';
import { BandwidthLimiter, backoffMs, errorMessage, RateWindow, Semaphore } from './util.ts';

/**
 * The package's version, set by the bundle (cli/bundle.ts): there this module sits in a chunk
 * under dist/chunks/, where ../package.json is not the package's. Undefined through tsx.
 */
declare const MEDIA_MIRROR_VERSION: string | undefined;

/** Who meets a condition while the agent opens its folder and state. */
const START_HOLDER = 'start';

export const AGENT_VERSION: string = (() => {
  if (typeof MEDIA_MIRROR_VERSION === 'string') return MEDIA_MIRROR_VERSION;
  try {
    const pkg = createRequire(import.meta.url)('../package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export interface AgentStats {
  readonly targetId: string;
  readonly dir: string;
  readonly status: 'starting' | 'running' | 'stopping' | 'stopped';
  readonly startedAt: string;
  /** Files written this run (downloaded or adopted in place). */
  readonly applied: number;
  /** Of those, files whose right bytes were already on disk. */
  readonly adopted: number;
  readonly deleted: number;
  /** Versions found already applied (duplicates, older versions). */
  readonly skipped: number;
  readonly refused: number;
  readonly refusedBy: Readonly<Partial<Record<RefusalCode, number>>>;
  /** Versions given up on for now (left for redelivery or the next catch-up round). */
  readonly failed: number;
  /** Files the folder check found lost (removed, or another size than applied) and wrote back. */
  readonly restored: number;
  /**
   * Files the agent never wrote, found where a version goes with other bytes: moved aside to
   * `<stem>.mm-conflict-<UTC time><ext>`, never overwritten (docs/agent.md).
   */
  readonly keptAside: number;
  readonly folderChecks: number;
  readonly bytes: number;
  readonly inFlight: number;
  readonly messagesReceived: number;
  readonly filesPerSecond: number;
  readonly bytesPerSecond: number;
  readonly backlogQueue: number | undefined;
  readonly backlogFeed: number | undefined;
  readonly lagSeconds: number;
  readonly cursor: readonly number[];
  readonly catchingUp: boolean;
  readonly catchUpRounds: number;
  readonly lastCatchUp: RoundReport | undefined;
  readonly conditions: readonly string[];
  /** Paths in the local state (including deleted ones). */
  readonly pathsKnown: number;
  /** Versions applied since the state was created (all runs). */
  readonly appliedTotal: number;
  /** This process's peak resident set (common/peak-rss.ts). */
  readonly maxRssBytes: number;
}

export interface AgentHandle {
  /** Stops receiving, lets in-flight work finish (up to the shutdown grace), then abandons the rest safely. */
  stop(): Promise<void>;
  stats(): AgentStats;
  /** Runs a catch-up round now and resolves with its report. */
  catchUp(reason?: string): Promise<RoundReport>;
  /** Checks the folder now (as `--check-interval` does): files it lost are written back. */
  checkFolder(): Promise<FolderCheckReport>;
  /** Resolves when the agent has stopped. */
  readonly stopped: Promise<void>;
  /**
   * Why the agent stopped by itself, if it did: its mirror folder's path no longer names the
   * folder it started on. `media-mirror agent` exits with its code (73).
   */
  readonly failure: MirrorFolderMovedError | undefined;
}

export interface FolderCheckReport {
  /** Live files of the local state looked at. */
  readonly checked: number;
  /** Of those, missing from the folder or of another size than applied: each was written back. */
  readonly lost: number;
  readonly seconds: number;
}

export type StartAgentOptions = Parameters<typeof withDefaults>[0] & {
  /** Where log lines go. @default JSON lines on stderr */
  readonly log?: AgentLog;
  /** Ready-made SDK clients (otherwise built from `aws`, `region` and the credential chain). */
  readonly clients?: AgentClients;
  /** Replace the AWS ports (tests). */
  readonly ports?: { blobs?: BlobSource; ledger?: LedgerView; queue?: QueuePort };
  /** Called for every settled version (tests, embedding). */
  readonly onOutcome?: (v: VersionInfo, outcome: WorkOutcome, source: ApplySource) => void;
  /** Status line refresh (TTY), in ms. @default 1000 */
  readonly statusIntervalMs?: number;
  /** First retry delay of a failed file; doubles up to a minute. @default 1000 */
  readonly retryBaseMs?: number;
  /** The servers' clock (tests; otherwise the one `clients` read). @default this host's clock */
  readonly serverClock?: ServerClock;
};

/** Starts the agent; resolves once its state is loaded and its loops are running. */
export async function startAgent(options: StartAgentOptions): Promise<AgentHandle> {
  const config = withDefaults(options);
  const log = options.log ?? createJsonLog(process.stderr, { base: { target: config.targetId } });
  const agent = new Agent(config, log, options);
  await agent.start();
  return agent;
}

class Agent implements AgentHandle {
  private readonly conditions: Conditions;
  private readonly pool: Semaphore;
  private readonly limiter: BandwidthLimiter;
  private readonly files = new RateWindow();
  private readonly byteRate = new RateWindow();
  private readonly instanceId = randomUUID();
  private readonly startedAt = new Date().toISOString();
  private readonly shutdown = new AbortController();
  private readonly abandon = new AbortController();
  private clients: AgentClients | undefined;
  /** Times the ledger and the API compare with their own clocks (heartbeat, appliedAt, lag). */
  private clock: ServerClock = ServerClock.thisHost();
  private ownsClients = false;
  private blobs!: BlobSource;
  private ledger!: LedgerView;
  private queue!: QueuePort;
  private state!: StateStore;
  private paths!: SafePaths;
  private applier!: Applier;
  private follower!: FeedFollower;
  private consumer!: QueueConsumer;
  private loops: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  /** The heartbeat being written, if one is: the stop waits for it before its last row. */
  private beating: Promise<void> | undefined;
  private status: AgentStats['status'] = 'starting';
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  readonly stopped: Promise<void>;
  failure: MirrorFolderMovedError | undefined;
  private inFlightCount = 0;
  private lastAppliedCommittedAt: number | undefined;
  private backlogQueue: number | undefined;
  private backlogUnavailableLogged = false;
  private readonly counts = {
    applied: 0,
    adopted: 0,
    deleted: 0,
    skipped: 0,
    refused: 0,
    failed: 0,
    restored: 0,
    keptAside: 0,
    folderChecks: 0,
    bytes: 0,
    refusedBy: {} as Partial<Record<RefusalCode, number>>,
  };

  constructor(
    readonly config: AgentConfig,
    private readonly log: AgentLog,
    private readonly options: StartAgentOptions,
  ) {
    this.conditions = new Conditions(log);
    // Every retry's backoff and every download waits on these for the agent's whole life, each
    // unhooking itself when done (common/retry.ts), and a catch-up round works a whole feed page
    // per shard at once: in a network outage hundreds wait together, and Node's guess of a leak
    // past 10 listeners put a "possible memory leak" warning in the log of every such outage
    // (docs/platform.md, "Node"); test/unit/agent/agent.test.ts checks that they do unhook.
    setMaxListeners(0, this.shutdown.signal, this.abandon.signal);
    this.pool = new Semaphore(config.concurrency);
    this.limiter = new BandwidthLimiter(config.maxBytesPerSecond);
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  /** Retries a start-up step while a condition holds (a folder not writable yet): no crash loop. */
  private async retrying<T>(step: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const value = await step();
        this.conditions.clearLocal(START_HOLDER);
        return value;
      } catch (error) {
        const kind = classifyCondition(error);
        if (!kind || this.shutdown.signal.aborted) throw error;
        this.conditions.raise(kind, error, { during: 'start' }, START_HOLDER);
        await pause(backoffMs(attempt, this.options.retryBaseMs ?? 1000), this.shutdown.signal);
      }
    }
  }

  async start(): Promise<void> {
    const { config, log } = this;
    this.paths = await this.retrying(() => SafePaths.open(config.dir));
    this.makePorts();
    try {
      // Before the state is opened: it would record a count the feed proves too small as the one in use.
      await this.retrying(() => checkShardCountAgainstLedger(this.ledger, config));
      this.state = await this.retrying(() =>
        StateStore.open(
          config.stateDir,
          { targetId: config.targetId, table: config.table, feedShards: config.feedShards },
          { warn: (msg, fields) => log.log('warn', msg, fields), selection: config.pathPrefix ?? '' },
        ),
      );
    } catch (error) {
      if (this.clients && this.ownsClients) destroyClients(this.clients);
      throw error;
    }
    try {
      this.applier = new Applier({
        now: () => this.clock.now(),
        paths: this.paths,
        state: this.state,
        blobs: this.blobs,
        ledger: this.ledger,
        limiter: this.limiter,
        pathPrefix: config.pathPrefix,
        onBytes: (n) => {
          this.counts.bytes += n;
          this.byteRate.add(n);
        },
      });
      await this.removeLeftoverTemps();
      const report = this.state.loadReport;
      log.log('info', 'agent starting', {
        version: AGENT_VERSION,
        dir: this.paths.root,
        stateDir: config.stateDir,
        pathsKnown: this.state.size,
        cursor: this.state.cursor,
        bootstrap: this.state.cursor.every((seq) => seq === 0),
        concurrency: config.concurrency,
        ...(report?.tornTail ? { tornJournalTail: true } : {}),
      });
      void this.warnIfAnotherAgent();

      this.follower = new FeedFollower({
        ledger: this.ledger,
        state: this.state,
        feedShards: config.feedShards,
        pageSize: config.feedPageSize,
        intervalSeconds: config.catchUpIntervalSeconds,
        conditions: this.conditions,
        log,
        // In-flight files finish during the shutdown grace; the round itself stops at once.
        work: (v) => this.work(v, 'feed', this.abandon.signal),
      });
      this.consumer = new QueueConsumer(
        {
          queue: this.queue,
          targetId: config.targetId,
          concurrency: config.concurrency,
          visibilityTimeoutSeconds: config.visibilityTimeoutSeconds,
          waitTimeSeconds: config.waitTimeSeconds,
          conditions: this.conditions,
          log,
          work: (v, signal) => this.work(v, 'queue', signal),
          heldVersion: (path) => this.state.get(path.normalize('NFC'))?.version ?? 0,
          onGap: (path, held, arrived) => {
            log.log('info', 'gap: a message is ahead of the local state; catching up from the feed', {
              path,
              held,
              arrived,
            });
            this.follower.poke('gap');
          },
          onRefused: (code, reason, fields) => this.countRefusal(code as RefusalCode, reason, fields),
        },
        this.abandon.signal,
      );
    } catch (error) {
      await this.state.close().catch(() => undefined);
      if (this.clients && this.ownsClients) destroyClients(this.clients);
      throw error;
    }

    this.status = 'running';
    const first = this.state.cursor.every((seq) => seq === 0) ? 'bootstrap' : 'start';
    this.loops.push(this.follower.run(this.shutdown.signal, first));
    this.loops.push(this.consumer.run());
    this.loops.push(this.checkFolderEvery(this.config.folderCheckIntervalSeconds, this.shutdown.signal));
    this.timers.push(setInterval(() => void this.beat(), this.config.heartbeatSeconds * 1000));
    this.timers.push(setInterval(() => this.log.status(this.view()), this.options.statusIntervalMs ?? 1000));
    for (const timer of this.timers) timer.unref();
    void this.beat();
  }

  private makePorts(): void {
    const { config, options } = this;
    if (!options.ports?.blobs || !options.ports.ledger || !options.ports.queue) {
      this.clients = options.clients ?? makeClients(config);
      this.ownsClients = options.clients === undefined;
    }
    const clients = this.clients;
    this.clock = options.serverClock ?? clients?.clock ?? this.clock;
    // One view for both: the blob record it reads with a version serves that version's download.
    let view: DynamoLedgerView | undefined;
    const sharedView = () =>
      (view ??= new DynamoLedgerView(
        clients?.dynamo as AgentClients['dynamo'],
        config.table,
        config.targetId,
      ));
    this.blobs = options.ports?.blobs ?? originBlobSource(clients as AgentClients, config, sharedView());
    this.ledger = options.ports?.ledger ?? sharedView();
    this.queue = options.ports?.queue ?? new SqsQueue(clients?.sqs as AgentClients['sqs'], config.queueUrl);
  }

  /** Temp files a crash left behind (recorded in the journal before they were created). */
  private async removeLeftoverTemps(): Promise<void> {
    for (const relativeTemp of this.state.leftoverTemps) {
      const file = join(this.paths.root, relativeTemp);
      if (!this.paths.contains(file)) continue;
      // Only the agent's own temp names: a journal entry naming anything else (a tampered or
      // corrupt journal) must not delete a mirrored file.
      if (!isTempName(basename(relativeTemp))) {
        this.state.recordTempDone(relativeTemp);
        this.log.log('warn', 'ignored a journal entry that names no temp file', { file: relativeTemp });
        continue;
      }
      await this.paths.checkRoot();
      try {
        await rm(file, { force: true });
        this.state.recordTempDone(relativeTemp);
        this.log.log('info', 'removed a temp file left by an interrupted download', { file: relativeTemp });
      } catch (error) {
        this.log.log('warn', 'could not remove a leftover temp file', {
          file: relativeTemp,
          error: errorMessage(error),
        });
      }
    }
  }

  private async warnIfAnotherAgent(): Promise<void> {
    try {
      const row = await this.ledger.readAgentRow();
      if (!row || row.status === 'stopped') return;
      const age = this.clock.nowMs() - Date.parse(row.heartbeatAt);
      // Another host, or another live agent on this one (another --dir); not this agent's own
      // previous run, whose process is gone.
      const other = row.host !== hostname() || (row.pid !== process.pid && isAlive(row.pid));
      if (age < this.config.heartbeatSeconds * 3000 && other) {
        this.log.log(
          'warn',
          'another agent reported for this target moments ago: two agents would split its queue',
          {
            otherHost: row.host,
            otherPid: row.pid,
            secondsAgo: Math.round(age / 1000),
          },
        );
      }
    } catch {
      // Not essential: the heartbeat will report access problems.
    }
  }

  /** On the path's target row, for `status` and `sync --wait`; best effort (the log has it too). */
  private recordRefusal(v: VersionInfo, reason: string): void {
    this.ledger
      .recordRefusal(v.path, v.version, reason, this.clock.now().toISOString())
      .catch((error: unknown) => {
        this.log.log('debug', 'could not record a refusal in the ledger', {
          path: v.path,
          error: errorMessage(error),
        });
      });
  }

  private countRefusal(code: RefusalCode, reason: string, fields: Record<string, unknown>): void {
    this.counts.refused++;
    this.counts.refusedBy[code] = (this.counts.refusedBy[code] ?? 0) + 1;
    this.log.log('warn', 'refused', { code, reason, ...fields });
  }

  /** Applies one version with retries: conditions wait with backoff, other errors get a few tries. */
  private async work(v: VersionInfo, source: ApplySource, signal: AbortSignal): Promise<WorkOutcome> {
    let attempt = 0;
    let surprises = 0;
    const stopping = this.shutdown.signal;
    try {
      for (;;) {
        // Once stopping, nothing new starts: only what is already downloading may finish.
        if (signal.aborted || stopping.aborted) return this.settle(v, { kind: 'aborted' }, source);
        const tried = await this.tryOnce(v, source, signal);
        if ('outcome' in tried) return tried.outcome;
        if (!this.raiseCondition(tried.error, v)) {
          surprises++;
          this.logSurprise(tried.error, v, source, surprises);
          if (surprises >= 3) return this.settle(v, { kind: 'failed', error: tried.error }, source);
        }
        await pause(backoffMs(attempt++, this.options.retryBaseMs ?? 1000), stopping);
      }
    } finally {
      // Settled without a write (skipped, refused, failed, aborted): it holds no condition open.
      this.conditions.abandon(v.path);
    }
  }

  /** One attempt: its settled outcome, or the error to retry after. */
  private async tryOnce(
    v: VersionInfo,
    source: ApplySource,
    signal: AbortSignal,
  ): Promise<{ outcome: WorkOutcome } | { error: unknown }> {
    const started = performance.now();
    try {
      const outcome = await this.applyInPool(v, source, signal);
      if (!outcome) return { outcome: this.settle(v, { kind: 'aborted' }, source) };
      this.conditions.clearRemote();
      if (outcome.kind === 'applied' || outcome.kind === 'deleted') this.conditions.clearLocal(v.path);
      return { outcome: this.settle(v, outcome, source, performance.now() - started) };
    } catch (error) {
      if (error instanceof MirrorFolderMovedError) this.halt(error);
      if (isAbort(error, signal) || this.failure)
        return { outcome: this.settle(v, { kind: 'aborted' }, source) };
      return { error };
    }
  }

  /**
   * Stops for good: every path the agent writes is joined onto the mirror folder's path, which now
   * leads somewhere else (docs/agent.md, "Never writing outside `--dir`"). Work under way is
   * abandoned as at a stop (messages handed back, the cursor kept), and each of its writes meets
   * the same check first. One error line, however many files meet it.
   */
  private halt(error: MirrorFolderMovedError): void {
    if (this.failure) return;
    this.failure = error;
    this.log.log('error', error.message, { dir: error.dir, now: error.now, exitCode: error.exitCode });
    void this.stop();
  }

  /** Applies once a download slot is free; undefined when the agent began stopping while it waited. */
  private async applyInPool(
    v: VersionInfo,
    source: ApplySource,
    signal: AbortSignal,
  ): Promise<ApplyOutcome | undefined> {
    const stopping = this.shutdown.signal;
    return this.pool.run(async () => {
      if (signal.aborted || stopping.aborted) return undefined;
      this.inFlightCount++;
      try {
        return await this.applier.apply(v, { signal, source });
      } finally {
        this.inFlightCount--;
      }
    });
  }

  /** A known condition (disk full, throttling, ...) is raised and waited out; true when it was one. */
  private raiseCondition(error: unknown, v: VersionInfo): boolean {
    const kind = classifyCondition(error);
    if (kind) this.conditions.raise(kind, error, { path: v.path, version: v.version }, v.path);
    return kind !== undefined;
  }

  private logSurprise(error: unknown, v: VersionInfo, source: ApplySource, attempt: number): void {
    // Waiting for a delete another shard brings is expected, not an error.
    const waiting = error instanceof NotYetError;
    this.log.log(waiting ? 'info' : 'error', waiting ? 'a version waits' : 'applying a version failed', {
      path: v.path,
      version: v.version,
      source,
      attempt,
      error: errorMessage(error),
    });
  }

  private noteKeptAside(keptAs: string | undefined, fields: Record<string, unknown>): void {
    if (keptAs === undefined) return;
    this.counts.keptAside++;
    this.log.log('warn', 'kept a file the agent did not write beside the mirror’s', { ...fields, keptAs });
  }

  private settle(v: VersionInfo, outcome: WorkOutcome, source: ApplySource, ms?: number): WorkOutcome {
    const fields = { path: v.path, version: v.version, source };
    switch (outcome.kind) {
      case 'applied':
        this.counts.applied++;
        if (outcome.adopted) this.counts.adopted++;
        this.noteKeptAside(outcome.keptAside, fields);
        this.files.add();
        this.noteCommittedAt(v.committedAt);
        this.log.file(outcome.adopted ? 'in place' : 'applied', {
          ...fields,
          bytes: outcome.bytes,
          ms: Math.round(ms ?? 0),
        });
        break;
      case 'deleted':
        this.counts.deleted++;
        this.noteKeptAside(outcome.keptAside, fields);
        this.files.add();
        this.noteCommittedAt(v.committedAt);
        this.log.file('deleted', fields);
        break;
      case 'skipped':
        this.counts.skipped++;
        break;
      case 'refused':
        this.countRefusal(outcome.code, outcome.reason, fields);
        this.recordRefusal(v, outcome.reason);
        break;
      case 'failed':
        this.counts.failed++;
        break;
      default:
        break;
    }
    this.options.onOutcome?.(v, outcome, source);
    return outcome;
  }

  /** A written-back file (folder check) carries no commit time: it says nothing about lag. */
  private noteCommittedAt(committedAt: string): void {
    const at = Date.parse(committedAt);
    if (!Number.isNaN(at)) this.lastAppliedCommittedAt = at;
  }

  private lagSeconds(): number {
    // Rebuilding (a state made from nothing): nothing after the rebuild's frontier is known on disk.
    const since = this.follower?.rebuildingSince();
    const rebuilding = typeof since === 'string' ? (this.clock.nowMs() - Date.parse(since)) / 1000 : 0;
    return Math.max(rebuilding, this.queueLagSeconds());
  }

  private queueLagSeconds(): number {
    const oldest = this.consumer?.oldestHeldCommittedAt();
    if (oldest !== undefined) return Math.max(0, (this.clock.nowMs() - oldest) / 1000);
    const behind = (this.backlogQueue ?? 0) > 0 || (this.follower?.backlog ?? 0) > 0;
    if (behind && this.lastAppliedCommittedAt !== undefined) {
      return Math.max(0, (this.clock.nowMs() - this.lastAppliedCommittedAt) / 1000);
    }
    return 0;
  }

  private view() {
    return {
      targetId: this.config.targetId,
      applied: this.counts.applied + this.counts.deleted,
      filesPerSecond: this.files.perSecond(),
      bytesPerSecond: this.byteRate.perSecond(),
      inFlight: this.inFlightCount,
      backlogQueue: this.backlogQueue,
      backlogFeed: this.follower?.backlog,
      lagSeconds: this.lagSeconds(),
      refused: this.counts.refused,
      catchingUp: this.follower?.catchingUp ?? false,
      conditions: this.conditions.list(),
    };
  }

  private agentRow(status: AgentRow['status']): AgentRow {
    const cursor = this.state.cursor;
    return {
      targetId: this.config.targetId,
      heartbeatAt: this.clock.now().toISOString(),
      cursor: encodeCursor(cursor),
      cursorSeqs: [...cursor],
      appliedCount: this.state.appliedTotal,
      refusedCount: this.counts.refused,
      agentVersion: AGENT_VERSION,
      status,
      host: hostname(),
      pid: process.pid,
      instanceId: this.instanceId,
      startedAt: this.startedAt,
      backlogQueue: this.backlogQueue,
      backlogFeed: this.follower?.backlog,
      lagSeconds: Math.round(this.lagSeconds() * 10) / 10,
      conditions: this.conditions.list(),
      ...this.rebuildingFields(),
    };
  }

  private rebuildingFields(): Pick<AgentRow, 'rebuilding' | 'rebuildingSince'> {
    const since = this.follower?.rebuildingSince();
    if (since === undefined) return {};
    return since === null ? { rebuilding: true } : { rebuilding: true, rebuildingSince: since };
  }

  /** One heartbeat at a time, remembered so that the stop's last row is written after it. */
  private beat(): Promise<void> {
    this.beating ??= this.heartbeat().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async heartbeat(): Promise<void> {
    if (this.status !== 'running') return;
    try {
      this.backlogQueue = await this.queue.backlog();
    } catch (error) {
      this.backlogQueue = undefined;
      if (!this.backlogUnavailableLogged) {
        this.backlogUnavailableLogged = true;
        this.log.log(
          'info',
          'queue backlog unavailable (sqs:GetQueueAttributes); the feed backlog still shows',
          {
            error: errorMessage(error),
          },
        );
      }
    }
    await this.follower.refreshBacklog().catch(() => undefined);
    // An idle agent writes no record: this flush is what makes a removed state folder (and its lock)
    // again within a heartbeat. A failure here shows on the next apply, which meets it too.
    await this.state.flush().catch(() => undefined);
    try {
      // The first heartbeat may come before any answer has told the servers' time: read once first.
      if (!this.clock.observed) await this.ledger.readAgentRow().catch(() => undefined);
      await this.ledger.writeAgentRow(this.agentRow('running'));
    } catch (error) {
      const kind = classifyCondition(error);
      if (kind) this.conditions.raise(kind, error, { during: 'heartbeat' });
      else this.log.log('warn', 'writing the heartbeat failed', { error: errorMessage(error) });
    }
    this.log.log('debug', 'heartbeat', { ...this.stats() });
  }

  catchUp(reason = 'requested'): Promise<RoundReport> {
    return this.follower.round(reason, this.shutdown.signal);
  }

  /**
   * The folder check, every `seconds` (the first a minute after start, at most): a file removed by
   * hand, truncated, or replaced by other-size bytes would otherwise stay reported `verified` until
   * `agent verify`. A stat per file; same-size edits need verify's re-hash.
   */
  private async checkFolderEvery(seconds: number, signal: AbortSignal): Promise<void> {
    if (seconds <= 0) return;
    let wait = Math.min(seconds, 60);
    while (!signal.aborted) {
      await pause(wait * 1000, signal);
      if (signal.aborted) return;
      await this.checkFolder().catch((error: unknown) => {
        if (error instanceof MirrorFolderMovedError) this.halt(error);
        else
          this.log.log('warn', 'the folder check failed; it runs again later', {
            error: errorMessage(error),
          });
      });
      wait = seconds;
    }
  }

  async checkFolder(): Promise<FolderCheckReport> {
    const signal = this.shutdown.signal;
    const started = performance.now();
    let checked = 0;
    let lost = 0;
    // Only live files: a file at a deleted path may be someone's new work; verify reports it as extra.
    for (const [path, held] of this.state.entries()) {
      if (signal.aborted) break;
      if (held.deleted || !this.applier.selects(path)) continue;
      checked++;
      if (await this.applier.folderStillHolds(path, held)) continue;
      lost++;
      this.log.log(
        'warn',
        'a file is missing from the folder or has another size than applied: writing it back',
        {
          path,
          version: held.version,
        },
      );
      const v = { path, version: held.version, sha256: held.sha256, size: held.size, deleted: false };
      await this.work({ ...v, committedAt: '' }, 'check', signal);
    }
    this.counts.restored += lost;
    this.counts.folderChecks++;
    const report = { checked, lost, seconds: Math.round((performance.now() - started) / 10) / 100 };
    this.log.log(lost > 0 ? 'info' : 'debug', 'folder check', { ...report });
    return report;
  }

  stats(): AgentStats {
    const view = this.view();
    return {
      targetId: this.config.targetId,
      dir: this.config.dir,
      status: this.status,
      startedAt: this.startedAt,
      applied: this.counts.applied,
      adopted: this.counts.adopted,
      deleted: this.counts.deleted,
      skipped: this.counts.skipped,
      refused: this.counts.refused,
      refusedBy: { ...this.counts.refusedBy },
      failed: this.counts.failed,
      restored: this.counts.restored,
      keptAside: this.counts.keptAside,
      folderChecks: this.counts.folderChecks,
      bytes: this.counts.bytes,
      inFlight: this.inFlightCount,
      messagesReceived: this.consumer?.received ?? 0,
      filesPerSecond: view.filesPerSecond,
      bytesPerSecond: view.bytesPerSecond,
      backlogQueue: view.backlogQueue,
      backlogFeed: view.backlogFeed,
      lagSeconds: view.lagSeconds,
      cursor: [...this.state.cursor],
      catchingUp: view.catchingUp,
      catchUpRounds: this.follower?.rounds ?? 0,
      lastCatchUp: this.follower?.lastRound,
      conditions: view.conditions,
      pathsKnown: this.state.size,
      appliedTotal: this.state.appliedTotal,
      maxRssBytes: peakRssBytes(),
    };
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.status === 'stopped') return;
    this.status = 'stopping';
    this.log.log('info', 'stopping: no new messages; letting in-flight files finish', {
      graceSeconds: this.config.shutdownGraceSeconds,
      inFlight: this.inFlightCount,
    });
    for (const timer of this.timers) clearInterval(timer);
    // A heartbeat begun before the stop would otherwise land after the last row, saying "running".
    const beating = this.beating;
    this.consumer.stopReceiving();
    this.shutdown.abort(new Error('stopping'));
    const settled = Promise.allSettled([...this.loops, this.consumer.drain()]);
    const grace = new Promise<'timeout'>((resolve) =>
      setTimeout(() => resolve('timeout'), this.config.shutdownGraceSeconds * 1000).unref(),
    );
    if ((await Promise.race([settled, grace])) === 'timeout') {
      this.log.log(
        'warn',
        'abandoning in-flight downloads (their temp files are removed; messages come back)',
        {
          inFlight: this.inFlightCount,
        },
      );
    }
    this.abandon.abort(new Error('abandoned at shutdown'));
    await settled;
    try {
      await this.state.flush();
      // Best effort, and bounded: a dead network must not hold up the stop.
      await Promise.race([
        (async () => {
          await beating?.catch(() => undefined);
          await this.ledger.writeAgentRow(this.agentRow('stopped'));
        })().catch(() => undefined),
        new Promise<void>((resolve) => setTimeout(resolve, 3000).unref()),
      ]);
    } finally {
      await this.state
        .close()
        .catch((error: unknown) =>
          this.log.log('error', 'closing the local state failed', { error: errorMessage(error) }),
        );
      if (this.clients && this.ownsClients) destroyClients(this.clients);
      this.status = 'stopped';
      const stats = this.stats();
      this.log.log('info', 'agent stopped', {
        applied: stats.applied,
        deleted: stats.deleted,
        skipped: stats.skipped,
        refused: stats.refused,
        bytes: stats.bytes,
        maxRssBytes: stats.maxRssBytes,
      });
      this.log.close();
      this.resolveStopped();
    }
  }
}

export type { ApplyOutcome, VersionInfo };
