/**
 * Where `media-mirror reconcile` and `redrive` find the ledger, the queues and the
 * buckets. They talk to AWS (or the emulators) directly, not through the API.
 *
 * - **Local** (the stack `npm start` runs): everything comes from its endpoints file,
 *   `--endpoints <file>` or `$MIRROR_DATA_DIR/endpoints.json` (MIRROR_DATA_DIR=.mirror):
 *   emulator endpoints and credentials, table, origin bucket, each target's queue, DLQ,
 *   bucket and prefixes.
 * - **AWS**: `--table` (or MIRROR_TABLE) selects it. Then `--region` (AWS_REGION),
 *   `--origin-bucket` (MIRROR_ORIGIN_BUCKET), the targets from the topology
 *   (`--config`, MIRROR_CONFIG, else ./mirror.config.json) or from MIRROR_TARGETS (the
 *   functions' own JSON, e.g. copied from the replicate function's configuration),
 *   with `--queue-url <id>=<url>` and `--bucket <id>=<name>` filling in or overriding
 *   what those lack, `--ingest-queue-url` (MIRROR_INGEST_QUEUE_URL) and
 *   `--completion-queue-url` (MIRROR_COMPLETION_QUEUE_URL). Credentials come from the
 *   standard AWS chain.
 *
 * An SQS endpoint override (the endpoints file, AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL)
 * means an emulator: redrive then moves messages itself (no StartMessageMoveTask there).
 */
import { resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { fileExists, readJsonFile as readJson } from '../common/json-file.ts';
import { endpointsProblems, endpointsSchema } from '../contracts/endpoints.ts';
import { parseTopology, type Topology } from '../contracts/topology.ts';
import { runtimeTargetSchema } from '../functions/adapters/runtime-config.ts';
import { makeS3Client } from '../functions/adapters/s3.ts';
import { defaultEndpointsFile } from './endpoints.ts';
import { ConfigError, UsageError } from './errors.ts';

/** Flags shared by the operations commands (commander's camel-cased names). */
export interface OpsFlags {
  endpoints?: string | undefined;
  table?: string | undefined;
  originBucket?: string | undefined;
  region?: string | undefined;
  config?: string | undefined;
  queueUrl?: readonly string[] | undefined;
  bucket?: readonly string[] | undefined;
  ingestQueueUrl?: string | undefined;
  completionQueueUrl?: string | undefined;
}

export interface OpsTarget {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  readonly queueUrl: string | undefined;
  /** Known locally; on AWS found from the queue's redrive policy. */
  readonly dlqUrl: string | undefined;
  readonly bucket: string | undefined;
  readonly region: string | undefined;
  readonly keyPrefix: string;
  readonly pathPrefix: string | undefined;
  readonly dryRun: boolean;
}

/** A queue of no target (`redrive --ingest`, `--completion`): its URL, and its DLQ's when known (locally). */
export interface OpsQueue {
  readonly queueUrl: string | undefined;
  readonly dlqUrl: string | undefined;
}

export interface OpsContext {
  readonly mode: 'local' | 'aws';
  /** Where the settings came from, for messages. */
  readonly source: string;
  readonly region: string;
  readonly table: string | undefined;
  readonly originBucket: string | undefined;
  readonly targets: readonly OpsTarget[];
  readonly ingest: OpsQueue;
  /** The multipart completions' queue. */
  readonly completion: OpsQueue;
  /** Set when SQS is an emulator (endpoints file, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL). */
  readonly sqsEndpoint: string | undefined;
  readonly s3Endpoint: string | undefined;
  readonly dynamodbEndpoint: string | undefined;
  readonly forcePathStyle: boolean;
  /** Static credentials (the emulators'); else the standard chain. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
}

export interface OpsClients {
  readonly sqs: SQSClient;
  readonly dynamodb: DynamoDBClient;
  /** An S3 client for a region (cached). */
  s3(region?: string): S3Client;
  destroy(): void;
}

const HINT =
  'start the local stack (npm start) or pass --endpoints <file>; on AWS pass --table, --region, ' +
  '--origin-bucket and the targets (--config mirror.config.json, --queue-url <id>=<url>)';

/** What reconcile and redrive need of the local stack's endpoints file. */
const localEndpointsSchema = endpointsSchema.required({
  s3: true,
  sqs: true,
  dynamodb: true,
  table: true,
  originBucket: true,
  targets: true,
});

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** `own`: a file that names endpoints and keys, read only if it is the user's (common/own-file.ts). */
function readJsonFile(file: string, what: string, own = false): Promise<unknown> {
  return readJson(file, {
    ...(own && {
      foreign: (err) =>
        new ConfigError(
          `${what} ${file} is not to be trusted: ${err.problem}. It names the queues and the ledger the CLI acts on: ` +
            'fix its mode (chmod go-w) if it is yours',
          { cause: err },
        ),
    }),
    unreadable: (err) =>
      new ConfigError(
        err.code === 'ENOENT'
          ? `no ${what} at ${file}: ${HINT}`
          : `cannot read ${what} ${file}: ${err.message}`,
        { cause: err },
      ),
    invalid: (err) => new ConfigError(`${what} ${file} is not valid JSON: ${err.message}`, { cause: err }),
  });
}

/** `id=value` pairs of a repeatable flag. */
export function parsePairs(values: readonly string[] | undefined, flag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of values ?? []) {
    const i = raw.indexOf('=');
    if (i <= 0 || i === raw.length - 1) throw new UsageError(`${flag} expects <id>=<value>, got "${raw}"`);
    out.set(raw.slice(0, i).trim(), raw.slice(i + 1).trim());
  }
  return out;
}

/** Resolves where the operations commands work (see the module comment). */
export async function resolveOpsContext(
  flags: OpsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<OpsContext> {
  const table = nonEmpty(flags.table) ?? nonEmpty(env.MIRROR_TABLE);
  const named = nonEmpty(flags.endpoints);
  if (named !== undefined) return localContext(resolve(cwd, named), flags);
  if (table === undefined) {
    const file = defaultEndpointsFile(env, cwd);
    if (await fileExists(file)) return localContext(file, flags);
    throw new ConfigError(`no endpoints file at ${file}: ${HINT}`);
  }
  return awsContext(table, flags, env, cwd);
}

async function localContext(file: string, flags: OpsFlags): Promise<OpsContext> {
  const parsed = localEndpointsSchema.safeParse(await readJsonFile(file, 'endpoints file', true));
  if (!parsed.success) {
    throw new ConfigError(
      `endpoints file ${file} lacks what reconcile/redrive need (is it from an older npm start?): ${endpointsProblems(parsed.error)}`,
    );
  }
  const e = parsed.data;
  const queueUrls = parsePairs(flags.queueUrl, '--queue-url');
  const buckets = parsePairs(flags.bucket, '--bucket');
  return {
    mode: 'local',
    source: `endpoints file ${file}`,
    region: e.s3.region,
    table: e.table,
    originBucket: e.originBucket,
    targets: Object.entries(e.targets).map(([id, t]) => ({
      id,
      kind: t.kind,
      queueUrl: queueUrls.get(id) ?? t.queue,
      dlqUrl: t.dlq,
      bucket: buckets.get(id) ?? t.bucket,
      // Each bucket keeps its region on the local S3 too, which refuses another (docs/local-s3.md).
      region: t.region ?? e.s3.region,
      keyPrefix: t.keyPrefix ?? '',
      pathPrefix: t.pathPrefix,
      dryRun: t.dryRun === true,
    })),
    ingest: queueOfNoTarget(flags.ingestQueueUrl, e.ingest),
    completion: queueOfNoTarget(flags.completionQueueUrl, e.completion),
    sqsEndpoint: e.sqs.endpoint,
    s3Endpoint: e.s3.endpoint,
    dynamodbEndpoint: e.dynamodb.endpoint,
    forcePathStyle: e.s3.forcePathStyle ?? true,
    credentials: { ...e.s3.credentials },
  };
}

/**
 * A queue of no target: its flag's URL, else the one the endpoints file (which may be from an older
 * stack, without it) or the environment names.
 */
function queueOfNoTarget(
  flag: string | undefined,
  named: { queue?: string | undefined; dlq?: string | undefined } | undefined,
): OpsQueue {
  return { queueUrl: nonEmpty(flag) ?? nonEmpty(named?.queue), dlqUrl: named?.dlq };
}

async function awsContext(
  table: string,
  flags: OpsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<OpsContext> {
  const queueUrls = parsePairs(flags.queueUrl, '--queue-url');
  const buckets = parsePairs(flags.bucket, '--bucket');
  const { topology, configFile } = await readTopology(flags, env, cwd);
  const targets = topologyTargets(topology);
  const runtime = nonEmpty(env.MIRROR_TARGETS);
  if (runtime !== undefined) mergeRuntimeTargets(targets, runtime);
  applyQueueUrlFlags(targets, queueUrls);
  applyBucketFlags(targets, buckets);
  if (targets.size === 0) {
    throw new ConfigError(`no targets known: pass --config <mirror.config.json> or set MIRROR_TARGETS`);
  }
  const sqsEndpoint = nonEmpty(env.AWS_ENDPOINT_URL_SQS) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  return {
    mode: 'aws',
    source: topology ? `--table and topology ${configFile}` : '--table and MIRROR_TARGETS',
    region:
      nonEmpty(flags.region) ??
      nonEmpty(env.AWS_REGION) ??
      nonEmpty(env.AWS_DEFAULT_REGION) ??
      topology?.homeRegion ??
      'us-east-1',
    table,
    originBucket: nonEmpty(flags.originBucket) ?? nonEmpty(env.MIRROR_ORIGIN_BUCKET),
    targets: [...targets.values()],
    ingest: queueOfNoTarget(flags.ingestQueueUrl, { queue: env.MIRROR_INGEST_QUEUE_URL }),
    completion: queueOfNoTarget(flags.completionQueueUrl, { queue: env.MIRROR_COMPLETION_QUEUE_URL }),
    sqsEndpoint,
    // As the SDK would read them from the process environment (S3-compatible stores, emulators).
    s3Endpoint: nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL),
    dynamodbEndpoint: nonEmpty(env.AWS_ENDPOINT_URL_DYNAMODB) ?? nonEmpty(env.AWS_ENDPOINT_URL),
    forcePathStyle: env.MIRROR_S3_FORCE_PATH_STYLE === 'true',
    credentials: undefined,
  };
}

/** The topology named by --config or MIRROR_CONFIG, else ./mirror.config.json when it exists. */
async function readTopology(
  flags: OpsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ topology: Topology | undefined; configFile: string }> {
  const configNamed = nonEmpty(flags.config) ?? nonEmpty(env.MIRROR_CONFIG);
  const configFile = resolve(cwd, configNamed ?? 'mirror.config.json');
  if (configNamed === undefined && !(await fileExists(configFile)))
    return { topology: undefined, configFile };
  try {
    // Found in the working directory unasked, it must be the user's: a planted one named another's
    // bucket as a target, which reconcile then asked about every path with the operator's keys.
    const json =
      configNamed === undefined
        ? await readJson(configFile, {
            unreadable: (err) => new ConfigError(`cannot read topology ${configFile}: ${err.message}`),
            invalid: (err) => new ConfigError(`topology ${configFile} is not valid JSON: ${err.message}`),
            foreign: (err) =>
              new ConfigError(
                `topology ${configFile} (read since no --config names one) is not to be trusted: ${err.problem}. ` +
                  'It names the targets the CLI acts on: fix its owner or mode (chmod o-w) if it is yours, else pass --config',
                { cause: err },
              ),
            groupMayWrite: true,
          })
        : await readJsonFile(configFile, 'topology');
    return { topology: parseTopology(json), configFile };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${configFile}: ${(err as Error).message}`, { cause: err });
  }
}

/** The topology's targets, without queues (the topology does not know their URLs). */
function topologyTargets(topology: Topology | undefined): Map<string, OpsTarget> {
  const targets = new Map<string, OpsTarget>();
  for (const t of topology?.targets ?? []) {
    targets.set(t.id, {
      id: t.id,
      kind: t.kind,
      queueUrl: undefined,
      dlqUrl: undefined,
      bucket: t.kind === 's3' ? t.bucketName : undefined,
      region: t.kind === 's3' ? t.region : undefined,
      keyPrefix: t.kind === 's3' ? t.keyPrefix : '',
      pathPrefix: t.pathPrefix,
      dryRun: t.dryRun,
    });
  }
  return targets;
}

/** MIRROR_TARGETS (the functions' runtime JSON) adds targets and fills in what the topology lacks. */
function mergeRuntimeTargets(targets: Map<string, OpsTarget>, runtime: string): void {
  for (const t of parseRuntimeTargets(runtime)) {
    const known = targets.get(t.id);
    targets.set(t.id, {
      id: t.id,
      kind: t.kind,
      queueUrl: t.queueUrl,
      dlqUrl: undefined,
      bucket: t.bucket ?? known?.bucket,
      region: t.region ?? known?.region,
      keyPrefix: t.keyPrefix,
      pathPrefix: t.pathPrefix ?? known?.pathPrefix,
      dryRun: t.dryRun || known?.dryRun === true,
    });
  }
}

function parseRuntimeTargets(runtime: string): z.infer<typeof runtimeTargetSchema>[] {
  let json: unknown;
  try {
    json = JSON.parse(runtime);
  } catch (err) {
    throw new ConfigError(`MIRROR_TARGETS is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = z.array(runtimeTargetSchema).safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(
      `MIRROR_TARGETS: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

function applyQueueUrlFlags(targets: Map<string, OpsTarget>, queueUrls: Iterable<[string, string]>): void {
  for (const [id, url] of queueUrls) {
    const t = targets.get(id);
    if (!t)
      throw new UsageError(
        `--queue-url names "${id}", which is not a target (${[...targets.keys()].join(', ') || 'none known: pass --config'})`,
      );
    targets.set(id, { ...t, queueUrl: url });
  }
}

function applyBucketFlags(targets: Map<string, OpsTarget>, buckets: Iterable<[string, string]>): void {
  for (const [id, bucket] of buckets) {
    const t = targets.get(id);
    if (t?.kind !== 's3') throw new UsageError(`--bucket names "${id}", which is not an S3 target`);
    targets.set(id, { ...t, bucket });
  }
}

/** The targets named by `--target` (all when none), or a usage error naming the known ones. */
export function selectTargets(ctx: OpsContext, ids: readonly string[] | undefined): OpsTarget[] {
  if (!ids || ids.length === 0) return [...ctx.targets];
  const unknown = ids.filter((id) => !ctx.targets.some((t) => t.id === id));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown target${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `"${u}"`).join(', ')}; ` +
        `the targets are: ${ctx.targets.map((t) => t.id).join(', ')}`,
    );
  }
  return ctx.targets.filter((t) => ids.includes(t.id));
}

export function makeOpsClients(ctx: OpsContext): OpsClients {
  // The SDK annotates the credentials object it is given: each client gets its own copy.
  const credentials = () => (ctx.credentials ? { credentials: { ...ctx.credentials } } : {});
  const sqs = new SQSClient({
    region: ctx.region,
    ...(ctx.sqsEndpoint ? { endpoint: ctx.sqsEndpoint } : {}),
    ...credentials(),
  });
  const dynamodb = new DynamoDBClient({
    region: ctx.region,
    ...(ctx.dynamodbEndpoint ? { endpoint: ctx.dynamodbEndpoint } : {}),
    ...credentials(),
  });
  const s3s = new Map<string, S3Client>();
  return {
    sqs,
    dynamodb,
    s3(region = ctx.region) {
      let client = s3s.get(region);
      if (!client) {
        client = makeS3Client({
          region,
          forcePathStyle: ctx.forcePathStyle,
          ...(ctx.s3Endpoint ? { endpoint: ctx.s3Endpoint } : {}),
          ...credentials(),
        });
        s3s.set(region, client);
      }
      return client;
    },
    destroy() {
      sqs.destroy();
      dynamodb.destroy();
      for (const c of s3s.values()) c.destroy();
    },
  };
}

/**
 * An emulator of the endpoints file refusing the connection: the stack that wrote the file is not
 * running. A stack killed (kill -9, a crash of the machine) leaves the file behind with ports
 * nothing listens on any more, and Node's bare "connect ECONNREFUSED <address>" named neither.
 * Anything else, and any error against AWS, is returned as it is.
 */
export function unreachableStack(ctx: OpsContext, err: unknown): unknown {
  if (ctx.mode !== 'local') return err;
  let cause: unknown = err;
  while (cause instanceof Error && (cause as NodeJS.ErrnoException).code !== 'ECONNREFUSED')
    cause = cause.cause;
  if (!(cause instanceof Error)) return err;
  const { address, port } = cause as { address?: string; port?: number };
  const at = address === undefined ? '' : ` at ${address}${port === undefined ? '' : `:${port}`}`;
  return new ConfigError(
    `cannot reach the local stack${at} named by the ${ctx.source} (ECONNREFUSED): is the local stack running (npm start)? ` +
      'A stack that was killed leaves that file behind; start it again, or pass --endpoints <file>',
    { cause: err },
  );
}
