/**
 * The whole system on loopback, like Architect's sandbox: emulators, resources, the
 * handlers in worker threads with their own environments, S3 notifications, SQS
 * event-source mappings, the API front (with `/metrics`), schedules (lag monitor,
 * reconcile) and one agent per pull target. Start in order; stop in reverse; a failed
 * start stops whatever had started. After start it converges: pending uploads' S3
 * notifications are sent again and every target is reconciled (SQS does not survive
 * a restart; the ledger and the buckets do).
 */

import { randomUUID } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand, ListObjectVersionsCommand, S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { stop as stopEsbuild } from 'esbuild';
import type { SandboxEndpointsLike } from '../agent/index.ts';
import { EVENT_SOURCE_BATCH_SIZE, visibilityTimeoutFor } from '../contracts/event-sources.ts';
import { parseTopology, type Topology } from '../contracts/topology.ts';
import { DynamoLedger } from '../functions/adapters/dynamo-ledger.ts';
import type { TargetLag } from '../functions/core/lag.ts';
import type { PendingSweepReport } from '../functions/core/pending-sweep.ts';
import type { ReconcileReport } from '../functions/core/reconcile.ts';
import type { HandlerName } from '../lib/paths.ts';
import { buildWeb } from '../web/build.ts';
import { createSandboxAgent, type SandboxAgent, type SandboxAgentTuning } from './agents.ts';
import { startApiFront } from './api-front.ts';
import { type RenotifyReport, renotifyPendingUploads, type StoredVersion } from './convergence.ts';
import {
  loadOrCreateToken,
  lockDataDir,
  removeEndpointsFile,
  resolveDataDir,
  writeEndpointsFile,
} from './data-dir.ts';
import { type DeliveryFaultRates, DeliveryFaults, restartable } from './delivery-faults.ts';
import { LOCAL_CREDENTIALS, PORT_ROLES, startDynamo, startS3, startSqs } from './emulators.ts';
import { type MappingStats, SqsEventSourceMapping } from './event-source-mapping.ts';
import {
  consoleLogSink,
  type FunctionSpec,
  type InvocationReport,
  LocalFunction,
  type LogSink,
} from './functions.ts';
import { type HandlerBundles, handlerBundles } from './handler-bundles.ts';
import { LocalMetrics } from './metrics.ts';
import { portFromEnv } from './net.ts';
import { CallLog, type ObservedCall } from './observed-calls.ts';
import {
  ensureResources,
  putBucketCors,
  type QueueTuning,
  type Resources,
  type TargetResources,
} from './resources.ts';
import { createS3Notifier, type S3Notifier } from './s3-notifier.ts';
import { LocalScheduler, type ScheduleStats } from './scheduler.ts';
import { localSizing } from './sizing.ts';
import { StopDeadline, settledWithin } from './stop-grace.ts';

export type { SandboxAgent, SandboxAgentTuning } from './agents.ts';

export const DEFAULT_PORTS = Object.freeze({ api: 8787, sqs: 4566, dynamodb: 4567, s3: 4568 });
/** Whether startSandbox runs the pull targets' agents unless told (bin/local.ts always does). */
export const DEFAULT_AGENTS = false;
/** Seconds between scheduled runs, unless MIRROR_LAG_INTERVAL_SECONDS / MIRROR_RECONCILE_INTERVAL_SECONDS / MIRROR_SWEEP_INTERVAL_SECONDS say. */
export const DEFAULT_INTERVALS = Object.freeze({ lag: 5, reconcile: 300, sweep: 30 });
/**
 * Seconds after which the lost-notification sweep takes a stored object's event for lost, unless
 * MIRROR_SWEEP_GRACE_SECONDS says: local notifications take milliseconds (on AWS: 10 minutes).
 */
export const DEFAULT_SWEEP_GRACE_SECONDS = 15;

/**
 * Seconds the queue-fed functions (ingest, complete-multipart, replicate) may run locally, unless
 * their queue's visibility timeout is shorter (deployed: 15, 5 and 15 minutes). Their queues hide
 * a message for visibilityTimeoutFor(this), as deployed: the deadline starts after a cold start or
 * a wait for an environment, so a visibility timeout equal to it let a message come back while
 * its first invocation still ran.
 */
export const QUEUE_FUNCTION_TIMEOUT_SECONDS = 30;

const LAG_RULE = 'lag-monitor-schedule';
const RECONCILE_RULE = 'reconcile-schedule';
const SWEEP_RULE = 'pending-sweep-schedule';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface SandboxOptions {
  /** State folder. @default $MIRROR_DATA_DIR, else `.mirror` (relative to `cwd`) */
  readonly dataDir?: string;
  /** API front port; 0 picks a free one. @default $PORT, else 8787 */
  readonly port?: number;
  /** @default $MIRROR_S3_PORT, else 4568 */
  readonly s3Port?: number;
  /** @default $MIRROR_SQS_PORT, else 4566 */
  readonly sqsPort?: number;
  /** @default $MIRROR_DYNAMODB_PORT, else 4567 */
  readonly dynamodbPort?: number;
  /** @default parseTopology(<cwd>/mirror.config.json) */
  readonly topology?: Topology;
  /** @default $MIRROR_API_TOKEN, else one generated once and kept in the data folder */
  readonly apiToken?: string;
  /** Where relative paths resolve. @default process.cwd() */
  readonly cwd?: string;
  /** Where PORT, MIRROR_* defaults are read. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Handler modules in place of functions/handlers/<name>.ts (tests). */
  readonly handlers?: Partial<Record<HandlerName, string>>;
  /** Extra variables for every function's environment (tests). */
  readonly functionEnv?: Readonly<Record<string, string>>;
  /**
   * Queue settings. A visibility timeout shorter than QUEUE_FUNCTION_TIMEOUT_SECONDS (tests) shortens
   * the timeout of the function its queue feeds to it: Lambda refuses a shorter one.
   */
  readonly queues?: {
    /** The ingest's and the completion's queue. @default visibilityTimeoutFor(QUEUE_FUNCTION_TIMEOUT_SECONDS), as deployed */
    readonly ingestVisibilityTimeout?: number;
    /** Every target's queue. @default visibilityTimeoutFor(QUEUE_FUNCTION_TIMEOUT_SECONDS), as deployed */
    readonly targetVisibilityTimeout?: number;
    /** Receives before the DLQ, on every queue. @default as deployed: REPLICA_MAX_RECEIVES for an S3 target's queue, 5 for the others */
    readonly maxReceiveCount?: number;
  };
  /** Event-source mapping tuning. */
  readonly polling?: {
    /** Records per invocation, on every mapping. @default each mapping's deployed size (EVENT_SOURCE_BATCH_SIZE) */
    readonly batchSize?: number;
    /** @default 2 */
    readonly waitTimeSeconds?: number;
  };
  /**
   * The local EventBridge schedules and the start-up convergence; `false` runs none of them
   * (the functions are still there: `sandbox.measureLag()`, `sandbox.reconcile()`).
   */
  readonly schedules?: false | SandboxSchedules;
  /**
   * One in-process agent per pull target, mirroring into `<data>/onprem/<target>/`: `true` or
   * tuning to run them, `false` for none. `npm start` (bin/local.ts) runs them.
   * @default DEFAULT_AGENTS (false: suites that count targets' copies or start their own agents
   * expect none)
   */
  readonly agents?: boolean | SandboxAgentTuning;
  /** Folder served at `/`; `null` serves nothing. @default <project>/web */
  readonly webDir?: string | null;
  /** Sandbox messages (errors of the local plumbing). @default console.error */
  readonly log?: (message: string) => void;
  /** Function output. @default prefixed lines on stdout/stderr */
  readonly functionLog?: LogSink;
  /** Called after every function invocation. */
  readonly onInvocation?: (report: InvocationReport) => void;
  /**
   * Delivery faults from the start (docs/chaos.md): S3 notifications to the ingest queue, and
   * the event-source mappings' deliveries to the functions. `sandbox.faults` changes them later.
   */
  readonly faults?: { readonly notifications?: DeliveryFaultRates; readonly deliveries?: DeliveryFaultRates };
  /**
   * Record which AWS action each function asks of the emulators, on which resource
   * (`sandbox.observedCalls()`, local/observed-calls.ts). It parses every DynamoDB and SQS body.
   * @default false
   */
  readonly observeCalls?: boolean;
}

export interface SandboxSchedules {
  /** Seconds between lag-monitor runs; 0 never runs it. @default $MIRROR_LAG_INTERVAL_SECONDS, else 5 */
  readonly lagIntervalSeconds?: number;
  /**
   * Seconds between reconcile runs; 0 runs it at start only.
   * @default $MIRROR_RECONCILE_INTERVAL_SECONDS, else 300
   */
  readonly reconcileIntervalSeconds?: number;
  /** Reconcile once right after start. @default true */
  readonly reconcileAtStart?: boolean;
  /** Re-send the S3 notification of pending uploads whose blob is stored. @default true */
  readonly renotifyAtStart?: boolean;
  /**
   * Seconds between runs of the lost-notification sweep; 0 never runs it on its own.
   * @default $MIRROR_SWEEP_INTERVAL_SECONDS, else 30
   */
  readonly sweepIntervalSeconds?: number;
  /** @default $MIRROR_SWEEP_GRACE_SECONDS, else DEFAULT_SWEEP_GRACE_SECONDS */
  readonly sweepGraceSeconds?: number;
}

export interface SandboxTarget {
  readonly kind: 's3' | 'pull';
  readonly bucket?: string;
  /** S3 targets: the replica's (nominal) region and key prefix. */
  readonly region?: string;
  readonly keyPrefix?: string;
  /** Only paths under it go to the target. */
  readonly pathPrefix?: string;
  readonly dryRun?: true;
  /** Queue URL. */
  readonly queue: string;
  readonly dlq: string;
}

/** What `endpoints.json` holds. */
export interface SandboxEndpoints extends SandboxEndpointsLike {
  readonly api: string;
  readonly token: string;
  /** `<api>/metrics`: Prometheus text, no token. */
  readonly metrics: string;
  readonly feedShards: number;
  readonly ingest: { readonly queue: string; readonly dlq: string };
  readonly completion: { readonly queue: string; readonly dlq: string };
  readonly targets: Readonly<Record<string, SandboxTarget>>;
}

export interface Sandbox {
  readonly endpoints: SandboxEndpoints;
  readonly dataDir: string;
  readonly endpointsFile: string;
  readonly topology: Topology;
  /** Milliseconds the start took. */
  readonly startMs: number;
  /** Counters of each event-source mapping, by function name. */
  stats(): Record<string, MappingStats>;
  /** Counters of each schedule, by rule name. */
  scheduleStats(): Record<string, ScheduleStats>;
  /** The agent of each pull target (empty unless `agents` is set): stop and start them at will. */
  readonly agents: ReadonlyMap<string, SandboxAgent>;
  /** What `/metrics` serves. */
  readonly metrics: LocalMetrics;
  /** Settles once the start-up convergence (re-sent notifications, first reconcile) is done. */
  readonly converged: Promise<ConvergenceReport>;
  /** Runs the lag-monitor function now (as its schedule does) and returns its report. */
  measureLag(): Promise<TargetLag[]>;
  /** Runs the reconcile function now, optionally narrowed, and returns its report. */
  reconcile(request?: { targetIds?: string[]; dryRun?: boolean }): Promise<ReconcileReport>;
  /** Runs the lost-notification sweep function now (as its schedule does) and returns its report. */
  sweepPending(): Promise<PendingSweepReport>;
  /** Delivery faults in force (none unless `faults` was given): `.set({})` stops them, `.counts` says what they did. */
  readonly faults: { readonly notifications: DeliveryFaults; readonly deliveries: DeliveryFaults };
  /**
   * Stops the SQS emulator and starts it again on its port, as an outage would: every queued and
   * in-flight message is lost; the queues are created again.
   */
  restartSqs(): Promise<void>;
  /** Sends the S3 notification of every pending upload's stored blob again (what the start does). */
  renotifyPending(): Promise<RenotifyReport>;
  /**
   * Each distinct AWS call a function (or an agent) made so far, as IAM names it, once the
   * emulators' reports have stopped arriving; only with `observeCalls` (rejects otherwise).
   */
  observedCalls(): Promise<readonly ObservedCall[]>;
  /** Requests accepted so far by `<caller> <operation>`; only with `observeCalls` (rejects otherwise). */
  observedRequests(): Promise<Record<string, number>>;
  /** Stops everything, in reverse start order. Idempotent. */
  stop(): Promise<void>;
}

export interface ConvergenceReport {
  readonly renotify: RenotifyReport | undefined;
  /** The start-up reconcile's report; undefined when it did not run (disabled, or an empty ledger). */
  readonly reconcile: ReconcileReport | undefined;
  /** Steps that failed (also logged). */
  readonly errors: readonly string[];
}

async function loadTopology(cwd: string): Promise<Topology> {
  const file = resolve(cwd, 'mirror.config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the topology ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseTopology(JSON.parse(text));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Host variables a function may see (Lambda has a PATH and a locale; it has no HOME of the user's). */
function hostBasics(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['PATH', 'LANG', 'TMPDIR', 'NODE_ENV']) {
    const v = env[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** A whole number of seconds >= 0 from the environment. */
function secondsFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}="${raw}" is not a number of seconds (>= 0)`);
  return n;
}

function runtimeTargets(targets: readonly TargetResources[]): string {
  return JSON.stringify(
    targets.map((t) => ({
      id: t.id,
      kind: t.kind,
      queueUrl: t.queue.url,
      ...(t.pathPrefix === undefined ? {} : { pathPrefix: t.pathPrefix }),
      ...(t.kind === 's3' ? { region: t.region, bucket: t.bucket } : {}),
      keyPrefix: t.keyPrefix,
      ...(t.dryRun ? { dryRun: true } : {}),
    })),
  );
}

/** What the start reads from options and the environment, settled before anything starts. */
interface Settings {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly log: (message: string) => void;
  readonly report: (e: Error) => void;
  readonly dataDir: string;
  readonly ports: {
    readonly api: number;
    readonly s3: number;
    readonly sqs: number;
    readonly dynamodb: number;
  };
  readonly topology: Topology;
  readonly region: string;
  readonly schedules: SandboxSchedules | undefined;
  readonly intervals: { readonly lag: number; readonly reconcile: number; readonly sweep: number };
  readonly sweepGraceSeconds: number;
  readonly tuning: QueueTuning;
}

/** Seconds between scheduled runs, and the sweep's grace: the options, else the environment, else the defaults. */
function intervalsOf(
  schedules: SandboxSchedules | undefined,
  env: NodeJS.ProcessEnv,
): Pick<Settings, 'intervals' | 'sweepGraceSeconds'> {
  return {
    intervals: {
      lag:
        schedules?.lagIntervalSeconds ??
        secondsFromEnv(env, 'MIRROR_LAG_INTERVAL_SECONDS', DEFAULT_INTERVALS.lag),
      reconcile:
        schedules?.reconcileIntervalSeconds ??
        secondsFromEnv(env, 'MIRROR_RECONCILE_INTERVAL_SECONDS', DEFAULT_INTERVALS.reconcile),
      sweep:
        schedules?.sweepIntervalSeconds ??
        secondsFromEnv(env, 'MIRROR_SWEEP_INTERVAL_SECONDS', DEFAULT_INTERVALS.sweep),
    },
    sweepGraceSeconds:
      schedules?.sweepGraceSeconds ??
      secondsFromEnv(env, 'MIRROR_SWEEP_GRACE_SECONDS', DEFAULT_SWEEP_GRACE_SECONDS),
  };
}

async function settingsOf(options: SandboxOptions): Promise<Settings> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const log = options.log ?? ((m: string) => console.error(`[sandbox] ${m}`));
  const topology = options.topology ?? (await loadTopology(cwd));
  const schedules = options.schedules === false ? undefined : (options.schedules ?? {});
  return {
    env,
    cwd,
    log,
    report: (e: Error) => log(e.message),
    dataDir: resolveDataDir(options.dataDir, env, cwd),
    ports: {
      api: options.port ?? portFromEnv(env, 'PORT', DEFAULT_PORTS.api),
      s3: options.s3Port ?? portFromEnv(env, 'MIRROR_S3_PORT', DEFAULT_PORTS.s3),
      sqs: options.sqsPort ?? portFromEnv(env, 'MIRROR_SQS_PORT', DEFAULT_PORTS.sqs),
      dynamodb: options.dynamodbPort ?? portFromEnv(env, 'MIRROR_DYNAMODB_PORT', DEFAULT_PORTS.dynamodb),
    },
    topology,
    region: topology.homeRegion,
    schedules,
    ...intervalsOf(schedules, env),
    tuning: {
      ingestVisibilityTimeout:
        options.queues?.ingestVisibilityTimeout ?? visibilityTimeoutFor(QUEUE_FUNCTION_TIMEOUT_SECONDS),
      targetVisibilityTimeout:
        options.queues?.targetVisibilityTimeout ?? visibilityTimeoutFor(QUEUE_FUNCTION_TIMEOUT_SECONDS),
      maxReceiveCount: options.queues?.maxReceiveCount,
    },
  };
}

/**
 * Each step that starts something pushes how to stop it; `run` stops them in reverse, once. A step
 * that waits for work in progress is given what is left of one grace for the whole stop.
 */
class Teardown {
  private readonly steps: Array<{ name: string; stop: (graceLeftMs: () => number) => Promise<void> | void }> =
    [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: (message: string) => void) {}

  push(name: string, stop: (graceLeftMs: () => number) => Promise<void> | void): void {
    this.steps.push({ name, stop });
  }

  run = (): Promise<void> => {
    this.stopping ??= (async () => {
      const deadline = new StopDeadline();
      const left = () => deadline.leftMs();
      for (const step of this.steps.reverse()) {
        try {
          await step.stop(left);
        } catch (err) {
          this.log(`stopping ${step.name} failed: ${(err as Error).message}`);
        }
      }
      this.steps.length = 0;
    })();
    return this.stopping;
  };
}

interface Emulators {
  readonly dynamo: Awaited<ReturnType<typeof startDynamo>>;
  readonly s3: Awaited<ReturnType<typeof startS3>>;
  readonly sqs: Awaited<ReturnType<typeof restartable>>;
}

interface Clients {
  readonly s3: S3Client;
  /** The same S3 signing for another region (one client per region, made on first use). */
  readonly s3In: (region: string) => S3Client;
  readonly sqs: SQSClient;
  readonly dynamodb: DynamoDBClient;
}

/** The SDK annotates the credentials object it is given: each client gets its own copy. */
const credentials = () => ({ ...LOCAL_CREDENTIALS });

/** Step 1: the emulators, on their ports, keeping state in the data folder. */
async function startEmulators(
  settings: Settings,
  teardown: Teardown,
  observeChannel: string | undefined,
): Promise<Emulators> {
  const { dataDir, ports, region } = settings;
  const observe = observeChannel === undefined ? {} : { observeChannel };
  const dynamo = await startDynamo({
    dir: resolve(dataDir, 'dynamodb'),
    port: ports.dynamodb,
    // A client signing for another region reaches another DynamoDB on AWS, not this one.
    region,
    ...observe,
  });
  teardown.push('DynamoDB emulator', () => dynamo.stop());
  const s3 = await startS3({
    dir: resolve(dataDir, 's3'),
    port: ports.s3,
    // The buckets' s3:signatureAge policy on AWS (lib/constructs/signature-age.ts).
    maxPresignedAgeMs: settings.topology.limits.presignTtlSeconds * 1000,
    ...observe,
  });
  teardown.push('S3 emulator', () => s3.stop());
  const sqs = await restartable((port) => startSqs({ port: port ?? ports.sqs, region, ...observe }));
  teardown.push('SQS emulator', () => sqs.stop());
  return { dynamo, s3, sqs };
}

function createClients(region: string, emulators: Emulators, teardown: Teardown): Clients {
  const s3In = new Map<string, S3Client>();
  const s3For = (r: string): S3Client => {
    let client = s3In.get(r);
    if (client === undefined) {
      client = new S3Client({
        region: r,
        endpoint: emulators.s3.endpoint,
        credentials: credentials(),
        forcePathStyle: true,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      s3In.set(r, client);
    }
    return client;
  };
  const clients = {
    s3: s3For(region),
    s3In: s3For,
    sqs: new SQSClient({ region, endpoint: emulators.sqs.endpoint, credentials: credentials() }),
    dynamodb: new DynamoDBClient({ region, endpoint: emulators.dynamo.endpoint, credentials: credentials() }),
  };
  teardown.push('sandbox clients', () => {
    for (const client of s3In.values()) client.destroy();
    clients.sqs.destroy();
    clients.dynamodb.destroy();
  });
  return clients;
}

/** Every function's stdout also feeds /metrics (its EMF lines), as CloudWatch Logs feeds metrics. */
function createMetrics(settings: Settings, resources: Resources, clients: Clients): LocalMetrics {
  return new LocalMetrics({
    targets: resources.targets,
    dlqs: [
      { queue: resources.ingest.dlq.name, url: resources.ingest.dlq.url },
      { queue: resources.completion.dlq.name, url: resources.completion.dlq.url },
      ...resources.targets.map((t) => ({ queue: t.dlq.name, url: t.dlq.url, target: t.id })),
    ],
    // Waiting or being read: a message someone received (an operator's look, an interrupted
    // redrive) is still parked, and fauxqs makes it visible again only at its queue's next receive.
    queueDepth: async (url) => {
      const out = await clients.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      const { ApproximateNumberOfMessages: waiting, ApproximateNumberOfMessagesNotVisible: read } =
        out.Attributes ?? {};
      return Number(waiting ?? 0) + Number(read ?? 0);
    },
    onError: settings.report,
  });
}

/** The environment every function shares: the resources, the limits, the emulators' endpoints. */
function sharedFunctionEnv(
  settings: Settings,
  resources: Resources,
  emulators: Emulators,
): Record<string, string> {
  const { topology, region } = settings;
  return {
    ...hostBasics(settings.env),
    MIRROR_TABLE: resources.table,
    MIRROR_ORIGIN_BUCKET: resources.originBucket,
    MIRROR_FEED_SHARDS: String(topology.feedShards),
    MIRROR_MAX_UPLOAD_BYTES: String(topology.limits.maxUploadBytes),
    MIRROR_MULTIPART_THRESHOLD_BYTES: String(topology.limits.multipartThresholdBytes),
    MIRROR_CONTENT_TYPES: JSON.stringify(topology.limits.contentTypes),
    MIRROR_PRESIGN_TTL_SECONDS: String(topology.limits.presignTtlSeconds),
    MIRROR_S3_FORCE_PATH_STYLE: 'true',
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_S3: emulators.s3.endpoint,
    AWS_ENDPOINT_URL_SQS: emulators.sqs.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: emulators.dynamo.endpoint,
    // The host already warned once about its Node version; every worker would repeat it.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

interface Functions {
  readonly api: LocalFunction;
  readonly ingest: LocalFunction;
  readonly completer: LocalFunction;
  readonly lagMonitor: LocalFunction;
  readonly reconciler: LocalFunction;
  readonly sweeper: LocalFunction;
  readonly replicators: ReadonlyArray<{ readonly target: TargetResources; readonly fn: LocalFunction }>;
}

/** Lambda refuses a mapping from a queue whose visibility timeout is below the function's timeout. */
const queueFunctionTimeout = (visibilityTimeout: number) =>
  Math.min(QUEUE_FUNCTION_TIMEOUT_SECONDS, visibilityTimeout);

/** Step 3: the functions, each in its own worker threads with its own environment. */
function startFunctions(
  options: SandboxOptions,
  settings: Settings,
  teardown: Teardown,
  deps: { resources: Resources; emulators: Emulators; fnLog: LogSink; bundles: HandlerBundles },
): Functions {
  const { resources } = deps;
  const shared = sharedFunctionEnv(settings, resources, deps.emulators);
  const makeFunction = (
    spec: Omit<FunctionSpec, 'env' | 'region'> & { env: Record<string, string> },
  ): LocalFunction => {
    const fullEnv = {
      ...shared,
      ...spec.env,
      AWS_LAMBDA_FUNCTION_NAME: spec.name,
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(spec.memoryMb ?? 1024),
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${spec.name}`,
      LAMBDA_TASK_ROOT: PROJECT_ROOT,
      ...options.functionEnv,
    };
    const fn = new LocalFunction(
      { ...spec, env: fullEnv, region: settings.region },
      deps.fnLog,
      options.onInvocation,
    );
    teardown.push(`function ${spec.name}`, (left) => fn.stop(left()));
    return fn;
  };
  const allTargets = runtimeTargets(resources.targets);
  const sizing = localSizing();
  // The bundles as they deploy (local/handler-bundles.ts); a test's own handler module is
  // TypeScript, run through tsx.
  const handler = (name: HandlerName) => {
    const own = options.handlers?.[name];
    return own === undefined
      ? { module: deps.bundles.handlers[name], runtime: deps.bundles.runtime }
      : { module: own };
  };
  return {
    api: makeFunction({
      name: 'api',
      ...handler('api'),
      // Multipart completions go to their own queue and function, as on AWS.
      env: { MIRROR_TARGETS: allTargets, MIRROR_COMPLETION_QUEUE_URL: resources.completion.queue.url },
      timeoutSeconds: 29,
      memoryMb: 512,
      maxConcurrency: sizing.api,
    }),
    ingest: makeFunction({
      name: 'ingest',
      ...handler('ingest'),
      // Its own queue, as on AWS: a verification that runs out of time goes on there.
      env: { MIRROR_TARGETS: allTargets, MIRROR_INGEST_QUEUE_URL: resources.ingest.queue.url },
      timeoutSeconds: queueFunctionTimeout(settings.tuning.ingestVisibilityTimeout),
      memoryMb: 1024,
      maxConcurrency: sizing.ingest.environments,
    }),
    completer: makeFunction({
      name: 'complete-multipart',
      ...handler('complete-multipart'),
      env: {},
      timeoutSeconds: queueFunctionTimeout(settings.tuning.ingestVisibilityTimeout),
      memoryMb: 256,
      maxConcurrency: 2,
    }),
    // Scheduled functions (EventBridge rules on AWS): the same environment as the ingest.
    lagMonitor: makeFunction({
      name: 'lag-monitor',
      ...handler('lag-monitor'),
      env: { MIRROR_TARGETS: allTargets },
      timeoutSeconds: 60,
      memoryMb: 256,
      maxConcurrency: 1,
    }),
    reconciler: makeFunction({
      name: 'reconcile',
      ...handler('reconcile'),
      env: { MIRROR_TARGETS: allTargets },
      timeoutSeconds: 900,
      memoryMb: 512,
      maxConcurrency: 1,
    }),
    // The lost-notification sweep: the origin's blobs, the ledger, and the ingest and completion
    // queues it feeds (lost S3 events, lost multipart completions).
    sweeper: makeFunction({
      name: 'pending-sweep',
      ...handler('pending-sweep'),
      env: {
        MIRROR_INGEST_QUEUE_URL: resources.ingest.queue.url,
        MIRROR_COMPLETION_QUEUE_URL: resources.completion.queue.url,
        MIRROR_SWEEP_GRACE_SECONDS: String(settings.sweepGraceSeconds),
      },
      timeoutSeconds: 60,
      memoryMb: 256,
      maxConcurrency: 1,
    }),
    replicators: resources.targets
      .filter((t) => t.kind === 's3')
      .map((t) => ({
        target: t,
        fn: makeFunction({
          name: `replicate-${t.id}`,
          ...handler('replicate'),
          // Like the CDK app, a replicate function learns its own target only.
          env: { MIRROR_TARGET_ID: t.id, MIRROR_TARGETS: runtimeTargets([t]) },
          timeoutSeconds: queueFunctionTimeout(settings.tuning.targetVisibilityTimeout),
          memoryMb: 512,
          maxConcurrency: sizing.replicate.environments,
        }),
      })),
  };
}

/** Size and ETag of an object, as an S3 notification carries them. */
async function headObject(s3: S3Client, bucket: string, key: string) {
  const out = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return { size: out.ContentLength ?? 0, eTag: (out.ETag ?? '').replace(/"/g, '') };
}

/** Step 4: S3 notifications: origin bucket, blobs/ prefix, ObjectCreated -> ingest queue. */
function startNotifications(
  settings: Settings,
  teardown: Teardown,
  deps: { resources: Resources; clients: Clients; emulators: Emulators; faults: DeliveryFaults },
): S3Notifier {
  const { resources, clients } = deps;
  const notifier = createS3Notifier({
    sqs: clients.sqs,
    bucket: resources.originBucket,
    prefix: 'blobs/',
    queueUrl: resources.ingest.queue.url,
    region: settings.region,
    head: (bucket, key) => headObject(clients.s3, bucket, key),
    onError: settings.report,
    faults: deps.faults,
  });
  const unsubscribe = deps.emulators.s3.onObjectCreated((e) => notifier.notify(e));
  teardown.push('S3 notifications', async () => {
    unsubscribe();
    await notifier.drain();
  });
  return notifier;
}

/** Step 5: event-source mappings (pull targets' queues are for their agents). */
async function startMappings(
  options: SandboxOptions,
  settings: Settings,
  teardown: Teardown,
  deps: { resources: Resources; emulators: Emulators; functions: Functions; faults: DeliveryFaults },
): Promise<Map<string, SqsEventSourceMapping>> {
  const mappings = new Map<string, SqsEventSourceMapping>();
  const starts: Promise<void>[] = [];
  const { batchSize, waitTimeSeconds } = options.polling ?? {};
  const sizing = localSizing();
  const map = (
    queue: Resources['ingest']['queue'],
    fn: LocalFunction,
    pollers: number,
    deployedBatchSize: number,
  ) => {
    // On AWS the mapping polls with the function's role: its client carries the function's name.
    const sqs = new SQSClient({
      region: settings.region,
      endpoint: deps.emulators.sqs.endpoint,
      credentials: credentials(),
      userAgentAppId: fn.name,
    });
    teardown.push(`event source client ${fn.name}`, () => sqs.destroy());
    const mapping = new SqsEventSourceMapping({
      sqs,
      queue,
      fn,
      region: settings.region,
      pollers,
      batchSize: batchSize ?? deployedBatchSize,
      ...(waitTimeSeconds === undefined ? {} : { waitTimeSeconds }),
      onError: settings.report,
      faults: deps.faults,
    });
    mappings.set(fn.name, mapping);
    teardown.push(`event source ${mapping.description}`, () => mapping.stop());
    starts.push(mapping.start());
  };
  map(
    deps.resources.ingest.queue,
    deps.functions.ingest,
    sizing.ingest.pollers,
    EVENT_SOURCE_BATCH_SIZE.ingest,
  );
  map(deps.resources.completion.queue, deps.functions.completer, 1, EVENT_SOURCE_BATCH_SIZE.completion);
  for (const { target, fn } of deps.functions.replicators) {
    map(target.queue, fn, sizing.replicate.pollers, EVENT_SOURCE_BATCH_SIZE.replicate);
  }
  // Every start settles before a refusal is thrown: none is left to reject unobserved.
  const refused = (await Promise.allSettled(starts)).find((r) => r.status === 'rejected');
  if (refused !== undefined) throw refused.reason;
  return mappings;
}

/**
 * Step 6: the API front, then CORS on the origin bucket for its origin and the configured ones.
 * The page is built from web/ into the data folder (about 0.1 s) unless a folder is given.
 */
async function startFront(
  options: SandboxOptions,
  settings: Settings,
  teardown: Teardown,
  deps: { token: string; api: LocalFunction; metrics: LocalMetrics; clients: Clients; resources: Resources },
) {
  const { dataDir, cwd, topology } = settings;
  const { metrics } = deps;
  const builtWeb = options.webDir === undefined ? join(dataDir, 'web') : undefined;
  if (builtWeb) await buildWeb(builtWeb);
  const webDir = options.webDir === null ? undefined : (builtWeb ?? resolve(cwd, options.webDir as string));
  const front = await startApiFront({
    port: settings.ports.api,
    role: PORT_ROLES.api,
    token: deps.token,
    // As an API behind IAM: a request signed with the stack's (local) credentials is let in too.
    iam: { credentials: LOCAL_CREDENTIALS, region: settings.region },
    fn: deps.api,
    corsOrigins: topology.api.corsOrigins,
    webDir,
    metrics: async () => ({ contentType: metrics.contentType, body: await metrics.text() }),
    onError: settings.report,
  });
  teardown.push('API front', () => front.stop());
  // The page reads its API address here, and the origins an `?api=` address may name: the
  // front's own, the addresses that are this API (not the CORS origins, which may call it).
  // No token: any process on the machine can GET this file over loopback, whatever the origin
  // checks; the page takes the token from the `#token=` address `npm start` prints.
  if (builtWeb) {
    const file = join(builtWeb, 'config.json');
    await writeFile(file, JSON.stringify({ api: front.url, origins: front.ownOrigins }), { mode: 0o600 });
    await chmod(file, 0o600); // one written by an older version, with the token, was 0644
  }
  await putBucketCors(deps.clients.s3, deps.resources.originBucket, front.origins);
  return front;
}

function endpointsOf(
  settings: Settings,
  deps: { front: { url: string }; token: string; emulators: Emulators; resources: Resources },
): SandboxEndpoints {
  const { resources, emulators, front } = deps;
  return {
    api: front.url,
    token: deps.token,
    metrics: `${front.url}/metrics`,
    s3: {
      endpoint: emulators.s3.endpoint,
      region: settings.region,
      credentials: credentials(),
      forcePathStyle: true,
    },
    sqs: { endpoint: emulators.sqs.endpoint },
    dynamodb: { endpoint: emulators.dynamo.endpoint },
    table: resources.table,
    originBucket: resources.originBucket,
    feedShards: settings.topology.feedShards,
    ingest: { queue: resources.ingest.queue.url, dlq: resources.ingest.dlq.url },
    completion: { queue: resources.completion.queue.url, dlq: resources.completion.dlq.url },
    targets: Object.fromEntries(resources.targets.map((t) => [t.id, endpointOfTarget(t)])),
  };
}

function endpointOfTarget(t: TargetResources): SandboxTarget {
  return {
    kind: t.kind,
    ...(t.bucket === undefined ? {} : { bucket: t.bucket }),
    ...(t.kind === 's3' ? { region: t.region, keyPrefix: t.keyPrefix } : {}),
    ...(t.pathPrefix === undefined ? {} : { pathPrefix: t.pathPrefix }),
    ...(t.dryRun ? { dryRun: true as const } : {}),
    queue: t.queue.url,
    dlq: t.dlq.url,
  };
}

/** Step 7: agents, one per pull target (after the functions; stopped before them). */
async function startAgents(
  options: SandboxOptions,
  settings: Settings,
  teardown: Teardown,
  deps: {
    endpoints: SandboxEndpoints;
    resources: Resources;
    metrics: LocalMetrics;
    sink: LogSink;
    faults: DeliveryFaults;
  },
): Promise<Map<string, SandboxAgent>> {
  const agents = new Map<string, SandboxAgent>();
  const agentOption = options.agents ?? DEFAULT_AGENTS;
  if (agentOption === false) return agents;
  for (const target of deps.resources.targets) {
    if (target.kind !== 'pull') continue;
    const agent = createSandboxAgent({
      endpoints: deps.endpoints,
      targetId: target.id,
      dataDir: settings.dataDir,
      feedShards: settings.topology.feedShards,
      pathPrefix: target.pathPrefix,
      tuning: agentOption === true ? {} : agentOption,
      writeLine: (line) => deps.sink(`agent-${target.id}`, line, 'stderr'),
      onOutcome: (v, outcome) => deps.metrics.observeAgentOutcome(target.id, outcome, v.committedAt),
      // The deliveries' faults reach the agent's own polling too (subject `agent-<target>`).
      faults: deps.faults,
    });
    await agent.start();
    agents.set(target.id, agent);
    teardown.push(`agent ${target.id}`, () => agent.stop());
  }
  return agents;
}

/** Step 8a: the schedules (EventBridge rules on AWS); with schedules off they run on demand only. */
function startSchedules(settings: Settings, teardown: Teardown, functions: Functions): LocalScheduler {
  const { schedules, intervals } = settings;
  const scheduler = new LocalScheduler({ region: settings.region, onError: settings.report });
  scheduler.add({ name: LAG_RULE, fn: functions.lagMonitor, everySeconds: schedules ? intervals.lag : 0 });
  scheduler.add({
    name: RECONCILE_RULE,
    fn: functions.reconciler,
    everySeconds: schedules ? intervals.reconcile : 0,
  });
  scheduler.add({ name: SWEEP_RULE, fn: functions.sweeper, everySeconds: schedules ? intervals.sweep : 0 });
  scheduler.start();
  teardown.push('schedules', (left) => scheduler.stop(left()));
  return scheduler;
}

/** Every version stored at the blob's key (S3 sent one notification per version), newest first. */
async function storedVersions(s3: S3Client, bucket: string, key: string): Promise<StoredVersion[]> {
  const out = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return (out.Versions ?? [])
    .filter((v) => v.Key === key)
    .map((v) => ({
      size: v.Size ?? 0,
      eTag: (v.ETag ?? '').replace(/"/g, ''),
      ...(v.VersionId === undefined || v.VersionId === 'null' ? {} : { versionId: v.VersionId }),
    }));
}

/** Step 8b: the start-up convergence, in the background; stopping aborts and awaits it. */
function startConvergence(
  settings: Settings,
  teardown: Teardown,
  deps: { clients: Clients; resources: Resources; notifier: S3Notifier; scheduler: LocalScheduler },
): Promise<ConvergenceReport> {
  const { schedules } = settings;
  const { clients, resources } = deps;
  const abort = new AbortController();
  const converged = converge({
    renotifyAtStart: schedules !== undefined && schedules.renotifyAtStart !== false,
    reconcileAtStart: schedules !== undefined && schedules.reconcileAtStart !== false,
    signal: abort.signal,
    ledger: new DynamoLedger(clients.dynamodb, resources.table),
    versions: (key) => storedVersions(clients.s3, resources.originBucket, key),
    notify: (e) => deps.notifier.notify(e),
    bucket: resources.originBucket,
    // From the first head: a run cut short by a crash or a stop left its checkpoint mid-way, and the
    // messages the queues lost may be for heads before it.
    reconcile: () => deps.scheduler.run(RECONCILE_RULE, { fromStart: true }) as Promise<ReconcileReport>,
    log: settings.log,
  });
  teardown.push('start-up convergence', async (left) => {
    abort.abort();
    // Its reconcile may be running: waited for within the grace, then cut off with the functions.
    await settledWithin([converged], left());
  });
  return converged;
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const started = Date.now();
  const settings = await settingsOf(options);
  const { dataDir, env } = settings;
  const teardown = new Teardown(settings.log);
  // esbuild works in a process of its own while the emulators start (a second or two, when the
  // sources changed since the last build; nothing otherwise).
  const bundling = handlerBundles();
  bundling.catch(() => undefined);
  try {
    const lock = await lockDataDir(dataDir);
    teardown.push('data folder lock', () => lock.release());
    const token = await loadOrCreateToken(dataDir, options.apiToken ?? env.MIRROR_API_TOKEN);
    const callLog =
      options.observeCalls === true ? new CallLog(`media-mirror:calls:${randomUUID()}`) : undefined;
    if (callLog) teardown.push('call log', () => callLog.close());
    const emulators = await startEmulators(settings, teardown, callLog?.channelName);
    const clients = createClients(settings.region, emulators, teardown);
    // Step 2: the table, buckets and queues.
    const resources = await ensureResources(clients, settings.topology, settings.tuning);
    const metrics = createMetrics(settings, resources, clients);
    const sink = options.functionLog ?? consoleLogSink;
    const fnLog: LogSink = (name, line, stream) => {
      if (stream === 'stdout') metrics.observeLine(line);
      sink(name, line, stream);
    };
    const bundles = await bundling;
    const functions = startFunctions(options, settings, teardown, { resources, emulators, fnLog, bundles });
    const faults = {
      notifications: new DeliveryFaults('faults.notifications', options.faults?.notifications),
      deliveries: new DeliveryFaults('faults.deliveries', options.faults?.deliveries),
    };
    const notifier = startNotifications(settings, teardown, {
      resources,
      clients,
      emulators,
      faults: faults.notifications,
    });
    const mappings = await startMappings(options, settings, teardown, {
      resources,
      emulators,
      functions,
      faults: faults.deliveries,
    });
    const front = await startFront(options, settings, teardown, {
      token,
      api: functions.api,
      metrics,
      clients,
      resources,
    });
    // The handler bundles and the page are built: esbuild's service process (~80 MB resident)
    // would only wait for builds the stack does not make.
    await stopEsbuild();
    const endpoints = endpointsOf(settings, { front, token, emulators, resources });
    const agents = await startAgents(options, settings, teardown, {
      endpoints,
      resources,
      metrics,
      sink,
      faults: faults.deliveries,
    });
    const scheduler = startSchedules(settings, teardown, functions);
    const converged = startConvergence(settings, teardown, { clients, resources, notifier, scheduler });

    const endpointsFile = await writeEndpointsFile(dataDir, endpoints);
    // The file says "a stack is running here": it goes first on stop.
    teardown.push('endpoints file', () => removeEndpointsFile(dataDir));

    return {
      endpoints,
      dataDir,
      endpointsFile,
      topology: settings.topology,
      startMs: Date.now() - started,
      stats: () => Object.fromEntries([...mappings].map(([name, m]) => [name, { ...m.stats }])),
      scheduleStats: () => scheduler.stats(),
      agents,
      metrics,
      converged,
      measureLag: () => scheduler.run(LAG_RULE) as Promise<TargetLag[]>,
      reconcile: (request) => scheduler.run(RECONCILE_RULE, request ?? {}) as Promise<ReconcileReport>,
      sweepPending: () => scheduler.run(SWEEP_RULE) as Promise<PendingSweepReport>,
      faults,
      restartSqs: () =>
        emulators.sqs.restart(() => ensureResources(clients, settings.topology, settings.tuning)),
      renotifyPending: () =>
        renotifyPendingUploads({
          pendingUploads: () => new DynamoLedger(clients.dynamodb, resources.table).scanPendingUploads(),
          versions: (key) => storedVersions(clients.s3, resources.originBucket, key),
          notify: (e) => notifier.notify(e),
          bucket: resources.originBucket,
        }),
      observedCalls: async () => {
        if (callLog === undefined) throw new Error('the sandbox was started without observeCalls');
        return callLog.calls();
      },
      observedRequests: async () => {
        if (callLog === undefined) throw new Error('the sandbox was started without observeCalls');
        return callLog.requests();
      },
      stop: teardown.run,
    };
  } catch (err) {
    await stopEsbuild();
    await teardown.run();
    throw err;
  }
}

/** Start-up convergence: re-send pending uploads' notifications, then reconcile every target. Never rejects. */
async function converge(deps: {
  readonly renotifyAtStart: boolean;
  readonly reconcileAtStart: boolean;
  readonly signal: AbortSignal;
  readonly ledger: DynamoLedger;
  readonly versions: (key: string) => Promise<readonly StoredVersion[]>;
  readonly notify: Parameters<typeof renotifyPendingUploads>[0]['notify'];
  readonly bucket: string;
  readonly reconcile: () => Promise<ReconcileReport>;
  readonly log: (message: string) => void;
}): Promise<ConvergenceReport> {
  const errors: string[] = [];
  let renotify: RenotifyReport | undefined;
  let reconcile: ReconcileReport | undefined;
  if (deps.renotifyAtStart) {
    try {
      renotify = await renotifyPendingUploads({
        pendingUploads: () => deps.ledger.scanPendingUploads(),
        versions: deps.versions,
        notify: deps.notify,
        bucket: deps.bucket,
        signal: deps.signal,
      });
      if (renotify.renotified > 0) {
        deps.log(`start-up: sent the S3 notification of ${renotify.renotified} pending upload blob(s) again`);
      }
    } catch (err) {
      errors.push(`re-sending pending uploads' notifications failed: ${(err as Error).message}`);
    }
  }
  if (deps.reconcileAtStart && !deps.signal.aborted) {
    try {
      // A fresh data folder holds nothing to converge: spare the function's cold start then.
      if (await hasAnyHead(deps.ledger)) reconcile = await deps.reconcile();
      const resent = Object.entries(reconcile?.targets ?? {}).filter(([, c]) => c?.resent > 0);
      if (resent.length > 0) {
        deps.log(
          `start-up reconcile re-sent ${resent.map(([id, c]) => `${c.resent} to ${id}`).join(', ')} (of ${reconcile?.heads} paths)`,
        );
      }
    } catch (err) {
      errors.push(`start-up reconcile failed: ${(err as Error).message}`);
    }
  }
  for (const e of errors) deps.log(e);
  return { renotify, reconcile, errors };
}

async function hasAnyHead(ledger: DynamoLedger): Promise<boolean> {
  for await (const _head of ledger.scanHeads()) return true;
  return false;
}
