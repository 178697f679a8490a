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
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { fileExists, readJsonFile } from '../common/json-file.ts';
import type { ForeignFileError } from '../common/own-file.ts';
import { realPathSoFar } from '../common/real-path.ts';
import { endpointsProblems, endpointsSchema } from '../contracts/endpoints.ts';
import { MAX_FEED_SHARDS, parseTopology, type Topology } from '../contracts/topology.ts';
import { parseByteSize } from './byte-size.ts';
import { AgentConfigError } from './errors.ts';
import { STATE_DIR_NAME } from './safe-path.ts';

export { parseByteSize };

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
  /** Where `feedShards` came from (a flag, a variable, a file, 'default'), for the messages that name it. */
  readonly feedShardsFrom?: string | undefined;
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
  /**
   * How often the folder is checked for files it lost (removed, or another size than applied);
   * those are written back from the ledger. 0 turns the check off. @default 900
   */
  readonly folderCheckIntervalSeconds: number;
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
  checkInterval?: string | number | undefined;
  shutdownGrace?: string | number | undefined;
  maxBytesPerSecond?: string | number | undefined;
  endpoints?: string | undefined;
  config?: string | undefined;
  s3ForcePathStyle?: boolean | undefined;
}

/** Environment variable of each setting. */
const AGENT_ENV = {
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
  checkInterval: 'MIRROR_AGENT_CHECK_INTERVAL',
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
  checkInterval: '--check-interval',
  shutdownGrace: '--shutdown-grace',
  maxBytesPerSecond: '--max-bytes-per-second',
  endpoints: '--endpoints',
  config: '--config',
  s3ForcePathStyle: '--s3-force-path-style',
};

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

/** `own`: a file that names endpoints and keys, read only if it is the agent's user's (common/own-file.ts). */
function readJson(file: string, what: string, own = false): Promise<unknown> {
  return readJsonFile(file, {
    unreadable: (error) => new AgentConfigError(`cannot read the ${what} ${file}: ${error.message}`),
    invalid: (error) => new AgentConfigError(`the ${what} ${file} is not valid JSON: ${error.message}`),
    ...(own && {
      foreign: (error) =>
        new AgentConfigError(
          `the ${what} ${file} is not to be trusted: ${error.problem}. It names where the agent reads the mirror from: ` +
            'fix its mode (chmod go-w) if it is yours, else pass --table, --origin-bucket and --queue-url',
        ),
    }),
  });
}

/** How reading ./mirror.config.json, which no --config named, fails. */
const unaskedTopology = (file: string) => ({
  unreadable: (error: NodeJS.ErrnoException) =>
    new AgentConfigError(`cannot read the topology ${file}: ${error.message}`),
  invalid: (error: Error) => new AgentConfigError(`the topology ${file} is not valid JSON: ${error.message}`),
  foreign: (error: ForeignFileError) =>
    new AgentConfigError(
      `the topology ${file} (read since no --config names one) is not to be trusted: ${error.problem}. ` +
        'It selects the paths this agent mirrors: fix its owner or mode (chmod o-w) if it is yours, else pass --config',
    ),
  groupMayWrite: true,
});

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
  feedShards: positiveInt(1, MAX_FEED_SHARDS),
  pathPrefix: z
    .string()
    .regex(/^([^/]+\/)+$/, 'must be a relative folder path ending with "/"')
    .optional(),
  concurrency: positiveInt(1, 64),
  visibilityTimeout: positiveInt(10, 43_200),
  heartbeat: positiveInt(1, 3600),
  catchUpInterval: positiveInt(5, 86_400),
  checkInterval: z.coerce
    .number()
    .int()
    .refine((n) => n === 0 || (n >= 60 && n <= 604_800), 'must be 0 (off) or between 60 and 604800'),
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
  /** Problems the caller found in flags of its own (--log-format), reported with the others. */
  readonly problems?: readonly string[];
}

/** Resolves and checks the configuration; throws one AgentConfigError listing every problem. */
export async function resolveAgentConfig(options: ResolveOptions): Promise<AgentConfig> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const needQueue = options.needQueue ?? true;

  const values = flagAndEnvValues(options.flags, env);
  const found = await readEndpointsFile(values, env, cwd, needQueue);
  const topology = await readTopologyFile(values, cwd);
  const targetId = values.get('target')?.value as string | undefined;
  if (found.endpoints) applyEndpointsDefaults(values, found.endpoints, found.file, targetId);
  if (topology) applyTopologyDefaults(values, topology.topology, topology.file, targetId);
  applyBuiltInDefaults(values, env, needQueue, options.needTarget !== false);
  resolveFolders(values, cwd);

  const problems: string[] = [...(options.problems ?? [])];
  readBandwidth(values, problems);
  await checkStateOutsideMirror(values, problems);
  const parsed = configSchema.safeParse(Object.fromEntries([...values].map(([k, v]) => [k, v.value])));
  if (!parsed.success) problems.push(...schemaProblems(parsed.error, values));
  if (problems.length > 0 || !parsed.success) {
    // Without an endpoints file the likely mistake is a missing `npm start` or missing AWS names.
    const hint =
      found.endpoints === undefined && found.missingNames
        ? `\n  (no endpoints file at ${found.file}: on AWS pass --table, --origin-bucket and --queue-url; locally run npm start first)`
        : '';
    throw new AgentConfigError(`bad agent configuration:\n  ${problems.join('\n  ')}${hint}`);
  }
  return toAgentConfig(parsed.data, values, found.endpoints, needQueue);
}

type Values = Map<string, Sourced>;

/** Flags win over environment variables; empty values count as not given. */
function flagAndEnvValues(flags: AgentFlags, env: NodeJS.ProcessEnv): Values {
  const values: Values = new Map();
  for (const key of Object.keys(FLAG_NAMES) as (keyof AgentFlags)[]) {
    const flag = flags[key];
    const value = env[AGENT_ENV[key]];
    if (flag !== undefined && flag !== '') values.set(key, { value: flag, source: FLAG_NAMES[key] });
    else if (value !== undefined && value.trim() !== '') {
      values.set(key, { value: value.trim(), source: AGENT_ENV[key] });
    }
  }
  return values;
}

/** A later source never replaces a value an earlier one gave. */
function setDefault(values: Values, key: string, value: unknown, source: string): void {
  if (!values.has(key) && value !== undefined) values.set(key, { value, source });
}

/** The endpoints file: read when named, or when the AWS names are not all given. */
async function readEndpointsFile(
  values: Values,
  env: NodeJS.ProcessEnv,
  cwd: string,
  needQueue: boolean,
): Promise<{ endpoints: EndpointsFile | undefined; file: string | undefined; missingNames: boolean }> {
  const named = values.get('endpoints');
  const missingNames = ['table', 'originBucket', ...(needQueue ? ['queueUrl'] : [])].some(
    (k) => !values.has(k),
  );
  if (!named && !missingNames) return { endpoints: undefined, file: undefined, missingNames };
  const file = named
    ? resolve(cwd, String(named.value))
    : resolve(cwd, env.MIRROR_DATA_DIR || '.mirror', 'endpoints.json');
  if (!named && !(await fileExists(file))) return { endpoints: undefined, file, missingNames };
  const parsed = endpointsFields.safeParse(await readJson(file, 'endpoints file', true));
  if (!parsed.success) {
    throw new AgentConfigError(`the endpoints file ${file} is malformed: ${endpointsProblems(parsed.error)}`);
  }
  return { endpoints: parsed.data, file, missingNames };
}

/** The topology: feed shards and the target's path prefix when nothing else says. */
async function readTopologyFile(
  values: Values,
  cwd: string,
): Promise<{ topology: Topology; file: string } | undefined> {
  const named = values.get('config');
  const file = named ? resolve(cwd, String(named.value)) : resolve(cwd, 'mirror.config.json');
  if (!named && !(await fileExists(file))) return undefined;
  try {
    // Found in the working directory unasked, it must be the user's: one planted in a shared folder
    // with a narrower pathPrefix made the agent stop mirroring the rest, without a word.
    const json = named ? await readJson(file, 'topology') : await readJsonFile(file, unaskedTopology(file));
    return { topology: parseTopology(json), file };
  } catch (error) {
    if (error instanceof AgentConfigError) throw error;
    throw new AgentConfigError(`${file}: ${(error as Error).message}`);
  }
}

function applyEndpointsDefaults(
  values: Values,
  endpoints: EndpointsFile,
  file: string | undefined,
  targetId: string | undefined,
): void {
  const source = `endpoints file ${file}`;
  setDefault(values, 'table', endpoints.table, source);
  setDefault(values, 'originBucket', endpoints.originBucket, source);
  setDefault(values, 'feedShards', endpoints.feedShards, source);
  setDefault(values, 'region', endpoints.s3?.region, source);
  if (targetId === undefined || !endpoints.targets) return;
  const entry = endpoints.targets[targetId];
  if (!entry) {
    const pulls = Object.entries(endpoints.targets)
      .filter(([, t]) => t.kind === 'pull')
      .map(([id]) => id);
    throw new AgentConfigError(
      `target "${targetId}" is not in ${file}; its pull targets are: ${pulls.join(', ') || '(none)'}`,
    );
  }
  if (entry.kind !== 'pull') {
    throw new AgentConfigError(
      `target "${targetId}" is an ${entry.kind} target; the agent serves pull targets only`,
    );
  }
  setDefault(values, 'queueUrl', entry.queue, source);
}

function applyTopologyDefaults(
  values: Values,
  topology: Topology,
  file: string,
  targetId: string | undefined,
): void {
  const source = `topology ${file}`;
  setDefault(values, 'feedShards', topology.feedShards, source);
  const entry = topology.targets.find((t) => t.id === targetId);
  if (entry?.kind === 's3') {
    throw new AgentConfigError(
      `target "${targetId}" is an s3 target in ${file}; the agent serves pull targets`,
    );
  }
  setDefault(values, 'pathPrefix', entry?.pathPrefix, source);
}

function applyBuiltInDefaults(
  values: Values,
  env: NodeJS.ProcessEnv,
  needQueue: boolean,
  needTarget: boolean,
): void {
  setDefault(values, 'region', env.AWS_DEFAULT_REGION, 'AWS_DEFAULT_REGION');
  setDefault(values, 'region', 'us-east-1', 'default');
  setDefault(values, 'feedShards', 4, 'default');
  setDefault(values, 'concurrency', 4, 'default');
  setDefault(values, 'visibilityTimeout', 120, 'default');
  setDefault(values, 'heartbeat', 15, 'default');
  setDefault(values, 'catchUpInterval', 60, 'default');
  setDefault(values, 'checkInterval', 900, 'default');
  setDefault(values, 'shutdownGrace', 10, 'default');
  if (!needQueue) setDefault(values, 'queueUrl', 'http://unused.invalid/', 'not needed');
  if (!needTarget) setDefault(values, 'target', 'unknown-target', 'not needed');
}

/** The mirror and state folders, absolute; the state folder defaults to one inside the mirror. */
function resolveFolders(values: Values, cwd: string): void {
  const dirValue = values.get('dir');
  if (dirValue) {
    dirValue.value = resolve(cwd, String(dirValue.value));
    setDefault(values, 'stateDir', join(String(dirValue.value), STATE_DIR_NAME), 'default');
  }
  const stateDir = values.get('stateDir');
  if (stateDir && !isAbsolute(String(stateDir.value))) stateDir.value = resolve(cwd, String(stateDir.value));
}

/**
 * The state folder inside the mirror folder under any name but `.media-mirror` (which no mirror
 * path may take) would be mirrored into: anyone who may upload could write the agent's journal,
 * snapshot and lock through ordinary paths. Judged by the names as given and by where they lead
 * (symlinks resolved), so a link into the mirror folder, or a mirror folder given by a link, does
 * not pass for outside.
 */
async function checkStateOutsideMirror(values: Values, problems: string[]): Promise<void> {
  const dir = values.get('dir');
  const state = values.get('stateDir');
  if (!dir || !state) return;
  const misplaced = (dirPath: string, statePath: string) => {
    const inside = relative(dirPath, statePath);
    const isInside =
      inside === '' || !(inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside));
    return isInside && inside !== STATE_DIR_NAME;
  };
  const [realDir, realState] = await Promise.all([
    realPathSoFar(String(dir.value)),
    realPathSoFar(String(state.value)),
  ]);
  if (misplaced(String(dir.value), String(state.value)) || misplaced(realDir, realState)) {
    problems.push(
      `${state.source}: the state folder ${String(state.value)} is inside the mirror folder ${String(dir.value)}: ` +
        `put it outside, or at ${join(String(dir.value), STATE_DIR_NAME)} (the one name no mirrored path may take)`,
    );
  }
}

/** A bandwidth given as text ("50MiB") becomes bytes; an unreadable one is a problem, not a zod issue. */
function readBandwidth(values: Values, problems: string[]): void {
  const bandwidth = values.get('maxBytesPerSecond');
  if (!bandwidth || typeof bandwidth.value === 'number') return;
  const parsed = parseByteSize(String(bandwidth.value));
  if (parsed !== undefined) {
    bandwidth.value = parsed;
    return;
  }
  problems.push(
    `${bandwidth.source}: "${String(bandwidth.value)}" is not a byte rate (e.g. 50MiB, 10M, 1000000)`,
  );
  values.delete('maxBytesPerSecond');
}

/** Each issue names where its value came from, or the flag and variable that would give it. */
function schemaProblems(error: z.ZodError, values: Values): string[] {
  return error.issues.map((issue) => {
    const key = String(issue.path[0] ?? '');
    const where =
      values.get(key)?.source ??
      `${FLAG_NAMES[key as keyof AgentFlags] ?? key} (or ${AGENT_ENV[key as keyof AgentFlags] ?? '?'})`;
    return `${where}: ${issue.message}`;
  });
}

function toAgentConfig(
  c: z.infer<typeof configSchema>,
  values: Values,
  endpoints: EndpointsFile | undefined,
  needQueue: boolean,
): AgentConfig {
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
    feedShardsFrom: values.get('feedShards')?.source,
    pathPrefix: c.pathPrefix,
    concurrency: c.concurrency,
    visibilityTimeoutSeconds: c.visibilityTimeout,
    waitTimeSeconds: 20,
    heartbeatSeconds: c.heartbeat,
    catchUpIntervalSeconds: c.catchUpInterval,
    folderCheckIntervalSeconds: c.checkInterval,
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
    folderCheckIntervalSeconds: 900,
    shutdownGraceSeconds: 10,
    maxBytesPerSecond: undefined,
    feedPageSize: 500,
    ...given,
    dir,
    ...(input.stateDir ? { stateDir: resolve(input.stateDir) } : {}),
    aws: { s3ForcePathStyle: false, ...input.aws },
  };
}
