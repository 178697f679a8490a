/**
 * The agent's configuration, from (highest first) command-line flags, environment
 * variables, the endpoints file that `npm start` writes (`$MIRROR_DATA_DIR/endpoints.json`),
 * the topology (`mirror.config.json`), and defaults. Every problem is reported at
 * once, each naming where the bad value came from.
 *
 * On AWS: `--table`, `--origin-bucket`, `--queue-url`, `--region`, `--feed-shards`
 * (or MIRROR_TABLE, ...) and the standard AWS credential chain. Locally: the
 * endpoints file supplies names, endpoints and the emulators' credentials.
 */
import { access, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { endpointsProblems, endpointsSchema } from '../contracts/endpoints.ts';
import { parseTopology, type Topology } from '../contracts/topology.ts';
import { AgentConfigError } from './errors.ts';
import { STATE_DIR_NAME } from './safe-path.ts';

export interface AgentConfig {
  readonly targetId: string;
  /** The mirror folder, absolute. */
  readonly dir: string;
  /** Where the agent keeps its state, absolute. @default <dir>/.media-mirror */
  readonly stateDir: string;
  readonly table: string;
  readonly originBucket: string;
  /** The target's FIFO queue ('' when not needed: verify). */
  readonly queueUrl: string;
  readonly region: string;
  readonly feedShards: number;
  /** Only paths under this prefix belong to the target (its selection). */
  readonly pathPrefix: string | undefined;
  /** Files downloaded at the same time. @default 4 */
  readonly concurrency: number;
  /** Visibility timeout asked for on receive, extended while a message is worked on. @default 120 */
  readonly visibilityTimeoutSeconds: number;
  /** Long-poll wait. @default 20 */
  readonly waitTimeSeconds: number;
  /** How often the agent row (heartbeat, cursor) is written. @default 15 */
  readonly heartbeatSeconds: number;
  /** How often the feed is checked for anything the queue did not bring. @default 60 */
  readonly catchUpIntervalSeconds: number;
  /** On SIGTERM, how long in-flight downloads may take to finish before they are abandoned. @default 10 */
  readonly shutdownGraceSeconds: number;
  /** Cap on download bandwidth, all files together. @default unlimited */
  readonly maxBytesPerSecond: number | undefined;
  /** Feed entries read per query. @default 500 */
  readonly feedPageSize: number;
  readonly aws: {
    readonly s3Endpoint?: string | undefined;
    readonly sqsEndpoint?: string | undefined;
    readonly dynamodbEndpoint?: string | undefined;
    readonly s3ForcePathStyle: boolean;
    /** Static credentials (local emulators). @default the standard AWS credential chain */
    readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
  };
}

/** Flags as commander gives them (strings unless parsed), all optional. */
export interface AgentFlags {
  target?: string | undefined;
  dir?: string | undefined;
  stateDir?: string | undefined;
  table?: string | undefined;
  originBucket?: string | undefined;
  queueUrl?: string | undefined;
  region?: string | undefined;
  feedShards?: string | number | undefined;
  pathPrefix?: string | undefined;
  concurrency?: string | number | undefined;
  visibilityTimeout?: string | number | undefined;
  heartbeat?: string | number | undefined;
  catchUpInterval?: string | number | undefined;
  shutdownGrace?: string | number | undefined;
  maxBytesPerSecond?: string | number | undefined;
  endpoints?: string | undefined;
  config?: string | undefined;
  s3ForcePathStyle?: boolean | undefined;
}

/** Environment variable of each setting. */
export const AGENT_ENV = {
  target: 'MIRROR_AGENT_TARGET',
  dir: 'MIRROR_AGENT_DIR',
  stateDir: 'MIRROR_AGENT_STATE_DIR',
  table: 'MIRROR_TABLE',
  originBucket: 'MIRROR_ORIGIN_BUCKET',
  queueUrl: 'MIRROR_QUEUE_URL',
  region: 'AWS_REGION',
  feedShards: 'MIRROR_FEED_SHARDS',
  pathPrefix: 'MIRROR_PATH_PREFIX',
  concurrency: 'MIRROR_AGENT_CONCURRENCY',
  visibilityTimeout: 'MIRROR_AGENT_VISIBILITY_TIMEOUT',
  heartbeat: 'MIRROR_AGENT_HEARTBEAT',
  catchUpInterval: 'MIRROR_AGENT_CATCH_UP_INTERVAL',
  shutdownGrace: 'MIRROR_AGENT_SHUTDOWN_GRACE',
  maxBytesPerSecond: 'MIRROR_AGENT_MAX_BYTES_PER_SECOND',
  endpoints: 'MIRROR_ENDPOINTS',
  config: 'MIRROR_CONFIG',
  s3ForcePathStyle: 'MIRROR_S3_FORCE_PATH_STYLE',
} as const satisfies Record<keyof AgentFlags, string>;

const FLAG_NAMES: Record<keyof AgentFlags, string> = {
  target: '--target',
  dir: '--dir',
  stateDir: '--state-dir',
  table: '--table',
  originBucket: '--origin-bucket',
  queueUrl: '--queue-url',
  region: '--region',
  feedShards: '--feed-shards',
  pathPrefix: '--path-prefix',
  concurrency: '--concurrency',
  visibilityTimeout: '--visibility-timeout',
  heartbeat: '--heartbeat',
  catchUpInterval: '--catch-up-interval',
  shutdownGrace: '--shutdown-grace',
  maxBytesPerSecond: '--max-bytes-per-second',
  endpoints: '--endpoints',
  config: '--config',
  s3ForcePathStyle: '--s3-force-path-style',
};

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** `"50MiB"` → 52428800; `"10M"` → 10000000; a plain number is bytes. Undefined if unreadable. */
export function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = UNITS[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const value = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** What the agent reads of the local stack's endpoints file (contracts/endpoints.ts). */
const endpointsFields = endpointsSchema.pick({
  s3: true,
  sqs: true,
  dynamodb: true,
  table: true,
  originBucket: true,
  feedShards: true,
  targets: true,
});
type EndpointsFile = z.infer<typeof endpointsFields>;

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new AgentConfigError(`cannot read the ${what} ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new AgentConfigError(`the ${what} ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

const positiveInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** "is required ..." only when the value is absent; zod's own message for a bad one. */
const required = (text: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? `is required (${text})` : undefined),
});

const configSchema = z.object({
  target: z
    .string(required('the id of this pull target, e.g. onprem-dc1'))
    .regex(/^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$/, 'must be a target id: lower-case letters, digits and dashes'),
  dir: z.string(required('the mirror folder, e.g. /srv/media')).min(1),
  stateDir: z.string().min(1),
  table: z.string(required('the ledger table name')).min(3),
  originBucket: z.string(required('the origin bucket name')).min(3),
  queueUrl: z.string(required("the URL of the target's FIFO queue")).url('must be a URL'),
  region: z.string().min(1),
  feedShards: positiveInt(1, 64),
  pathPrefix: z
    .string()
    .regex(/^([^/]+\/)+$/, 'must be a relative folder path ending with "/"')
    .optional(),
  concurrency: positiveInt(1, 64),
  visibilityTimeout: positiveInt(10, 43_200),
  heartbeat: positiveInt(1, 3600),
  catchUpInterval: positiveInt(5, 86_400),
  shutdownGrace: z.coerce.number().int().min(0).max(3600),
  maxBytesPerSecond: z.number().int().positive().optional(),
});

interface Sourced {
  value: unknown;
  source: string;
}

export interface ResolveOptions {
  readonly flags: AgentFlags;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** verify does not consume the queue. @default true */
  readonly needQueue?: boolean;
  /** verify may take the target from the state folder. @default true */
  readonly needTarget?: boolean;
}

/** Resolves and checks the configuration; throws one AgentConfigError listing every problem. */
export async function resolveAgentConfig(options: ResolveOptions): Promise<AgentConfig> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const flags = options.flags;
  const needQueue = options.needQueue ?? true;

  const fromFlagOrEnv = (key: keyof AgentFlags): Sourced | undefined => {
    const flag = flags[key];
    if (flag !== undefined && flag !== '') return { value: flag, source: FLAG_NAMES[key] };
    const value = env[AGENT_ENV[key]];
    if (value !== undefined && value.trim() !== '') return { value: value.trim(), source: AGENT_ENV[key] };
    return undefined;
  };

  const values = new Map<string, Sourced>();
  for (const key of Object.keys(FLAG_NAMES) as (keyof AgentFlags)[]) {
    const found = fromFlagOrEnv(key);
    if (found) values.set(key, found);
  }

  // The endpoints file: read when named, or when the AWS names are not all given.
  const named = values.get('endpoints');
  const missingNames = ['table', 'originBucket', ...(needQueue ? ['queueUrl'] : [])].some(
    (k) => !values.has(k),
  );
  let endpoints: EndpointsFile | undefined;
  let endpointsFile: string | undefined;
  if (named || missingNames) {
    endpointsFile = named
      ? resolve(cwd, String(named.value))
      : resolve(cwd, env.MIRROR_DATA_DIR || '.mirror', 'endpoints.json');
    if (named || (await exists(endpointsFile))) {
      const parsed = endpointsFields.safeParse(await readJson(endpointsFile, 'endpoints file'));
      if (!parsed.success) {
        throw new AgentConfigError(
          `the endpoints file ${endpointsFile} is malformed: ${endpointsProblems(parsed.error)}`,
        );
      }
      endpoints = parsed.data;
    }
  }

  // The topology: feed shards and the target's path prefix when nothing else says.
  let topology: Topology | undefined;
  const topologyNamed = values.get('config');
  const topologyFile = topologyNamed
    ? resolve(cwd, String(topologyNamed.value))
    : resolve(cwd, 'mirror.config.json');
  if (topologyNamed || (await exists(topologyFile))) {
    try {
      topology = parseTopology(await readJson(topologyFile, 'topology'));
    } catch (error) {
      if (error instanceof AgentConfigError) throw error;
      throw new AgentConfigError(`${topologyFile}: ${(error as Error).message}`);
    }
  }

  const fileSource = `endpoints file ${endpointsFile}`;
  const setDefault = (key: string, value: unknown, source: string) => {
    if (!values.has(key) && value !== undefined) values.set(key, { value, source });
  };
  const targetId = values.get('target')?.value as string | undefined;
  if (endpoints) {
    setDefault('table', endpoints.table, fileSource);
    setDefault('originBucket', endpoints.originBucket, fileSource);
    setDefault('feedShards', endpoints.feedShards, fileSource);
    setDefault('region', endpoints.s3?.region, fileSource);
    if (targetId !== undefined && endpoints.targets) {
      const entry = endpoints.targets[targetId];
      if (!entry) {
        const pulls = Object.entries(endpoints.targets)
          .filter(([, t]) => t.kind === 'pull')
          .map(([id]) => id);
        throw new AgentConfigError(
          `target "${targetId}" is not in ${endpointsFile}; its pull targets are: ${pulls.join(', ') || '(none)'}`,
        );
      }
      if (entry.kind !== 'pull') {
        throw new AgentConfigError(
          `target "${targetId}" is an ${entry.kind} target; the agent serves pull targets only`,
        );
      }
      setDefault('queueUrl', entry.queue, fileSource);
    }
  }
  if (topology) {
    const source = `topology ${topologyFile}`;
    setDefault('feedShards', topology.feedShards, source);
    const entry = topology.targets.find((t) => t.id === targetId);
    if (entry?.kind === 's3') {
      throw new AgentConfigError(
        `target "${targetId}" is an s3 target in ${topologyFile}; the agent serves pull targets`,
      );
    }
    setDefault('pathPrefix', entry?.pathPrefix, source);
  }
  setDefault('region', env.AWS_DEFAULT_REGION, 'AWS_DEFAULT_REGION');
  setDefault('region', 'us-east-1', 'default');
  setDefault('feedShards', 4, 'default');
  setDefault('concurrency', 4, 'default');
  setDefault('visibilityTimeout', 120, 'default');
  setDefault('heartbeat', 15, 'default');
  setDefault('catchUpInterval', 60, 'default');
  setDefault('shutdownGrace', 10, 'default');
  if (!needQueue) setDefault('queueUrl', 'http://unused.invalid/', 'not needed');
  if (options.needTarget === false) setDefault('target', 'unknown-target', 'not needed');

  const dirValue = values.get('dir');
  if (dirValue) {
    dirValue.value = resolve(cwd, String(dirValue.value));
    setDefault('stateDir', join(String(dirValue.value), STATE_DIR_NAME), 'default');
  }
  const stateDir = values.get('stateDir');
  if (stateDir && !isAbsolute(String(stateDir.value))) stateDir.value = resolve(cwd, String(stateDir.value));

  const problems: string[] = [];
  const bandwidth = values.get('maxBytesPerSecond');
  if (bandwidth && typeof bandwidth.value !== 'number') {
    const parsed = parseByteSize(String(bandwidth.value));
    if (parsed === undefined) {
      problems.push(
        `${bandwidth.source}: "${String(bandwidth.value)}" is not a byte rate (e.g. 50MiB, 10M, 1000000)`,
      );
      values.delete('maxBytesPerSecond');
    } else bandwidth.value = parsed;
  }

  const raw = Object.fromEntries([...values].map(([k, v]) => [k, v.value]));
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '');
      const where =
        values.get(key)?.source ??
        `${FLAG_NAMES[key as keyof AgentFlags] ?? key} (or ${AGENT_ENV[key as keyof AgentFlags] ?? '?'})`;
      problems.push(`${where}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) {
    const hint =
      endpoints === undefined && missingNames
        ? `\n  (no endpoints file at ${endpointsFile}: on AWS pass --table, --origin-bucket and --queue-url; locally run npm start first)`
        : '';
    throw new AgentConfigError(`bad agent configuration:\n  ${problems.join('\n  ')}${hint}`);
  }
  const c = parsed.data;
  const forcePathStyleFlag = values.get('s3ForcePathStyle')?.value;
  const s3ForcePathStyle =
    forcePathStyleFlag === true ||
    forcePathStyleFlag === 'true' ||
    (forcePathStyleFlag === undefined && endpoints?.s3?.forcePathStyle === true);
  return {
    targetId: c.target,
    dir: c.dir,
    stateDir: c.stateDir,
    table: c.table,
    originBucket: c.originBucket,
    queueUrl: needQueue ? c.queueUrl : '',
    region: c.region,
    feedShards: c.feedShards,
    pathPrefix: c.pathPrefix,
    concurrency: c.concurrency,
    visibilityTimeoutSeconds: c.visibilityTimeout,
    waitTimeSeconds: 20,
    heartbeatSeconds: c.heartbeat,
    catchUpIntervalSeconds: c.catchUpInterval,
    shutdownGraceSeconds: c.shutdownGrace,
    maxBytesPerSecond: c.maxBytesPerSecond,
    feedPageSize: 500,
    aws: {
      s3Endpoint: endpoints?.s3?.endpoint,
      sqsEndpoint: endpoints?.sqs?.endpoint,
      dynamodbEndpoint: endpoints?.dynamodb?.endpoint,
      s3ForcePathStyle,
      credentials: endpoints?.s3?.credentials,
    },
  };
}

/** Fills the defaults of a programmatic configuration (startAgent). */
export function withDefaults(
  input: Pick<AgentConfig, 'targetId' | 'dir' | 'table' | 'originBucket' | 'queueUrl' | 'feedShards'> &
    Partial<Omit<AgentConfig, 'aws'>> & { aws?: Partial<AgentConfig['aws']> },
): AgentConfig {
  const dir = resolve(input.dir);
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as typeof input;
  return {
    stateDir: join(dir, STATE_DIR_NAME),
    region: 'us-east-1',
    pathPrefix: undefined,
    concurrency: 4,
    visibilityTimeoutSeconds: 120,
    waitTimeSeconds: 20,
    heartbeatSeconds: 15,
    catchUpIntervalSeconds: 60,
    shutdownGraceSeconds: 10,
    maxBytesPerSecond: undefined,
    feedPageSize: 500,
    ...given,
    dir,
    ...(input.stateDir ? { stateDir: resolve(input.stateDir) } : {}),
    aws: { s3ForcePathStyle: false, ...input.aws },
  };
}
