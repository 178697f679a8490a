/**
 * What a handler learns from its environment, read once at cold start. Each handler has its own
 * schema holding only the variables it uses (`apiConfigSchema`, `ingestConfigSchema`, …), built
 * from the sections below; `readConfig` refuses a bad environment with one error naming every
 * missing or bad variable. The CDK app and the local stack set the same variables; only names
 * and endpoints differ (endpoints come from the SDK's own AWS_ENDPOINT_URL_<SERVICE>).
 */
import { z } from 'zod';

export const runtimeTargetSchema = z.object({
  id: z.string().min(1),
  kind: z.enum(['s3', 'pull']),
  queueUrl: z.string().min(1),
  pathPrefix: z.string().optional(),
  /** S3 targets only. */
  region: z.string().optional(),
  bucket: z.string().optional(),
  keyPrefix: z.string().default(''),
  dryRun: z.boolean().default(false),
});
export type RuntimeTarget = z.infer<typeof runtimeTargetSchema>;

const json = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);

// Each section: the variables it reads, and what it makes of them.

const ledgerVariables = {
  MIRROR_TABLE: z.string().min(3),
  AWS_REGION: z.string().default('us-east-1'),
  /**
   * Local stack only (refused unless DynamoDB's endpoint is overridden): shifts the functions' clock,
   * so tests can make uploads old without waiting (docs/api.md, "Expiry").
   */
  MIRROR_CLOCK_OFFSET_MS: z.coerce.number().int().optional(),
  AWS_ENDPOINT_URL_DYNAMODB: z.string().optional(),
};
type LedgerEnv = z.output<z.ZodObject<typeof ledgerVariables>>;

function ledgerSection(e: LedgerEnv, ctx: z.RefinementCtx) {
  if (e.MIRROR_CLOCK_OFFSET_MS !== undefined && e.AWS_ENDPOINT_URL_DYNAMODB === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['MIRROR_CLOCK_OFFSET_MS'],
      message: 'only for the local stack (emulator endpoints)',
    });
  }
  return {
    table: e.MIRROR_TABLE,
    region: e.AWS_REGION,
    /** Local stack only: milliseconds added to the clock. */
    clockOffsetMs: e.MIRROR_CLOCK_OFFSET_MS ?? 0,
  };
}

const originVariables = {
  MIRROR_ORIGIN_BUCKET: z.string().min(3),
  /** Local emulators address buckets by path, not by host name. */
  MIRROR_S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false'),
};
const originSection = (e: z.output<z.ZodObject<typeof originVariables>>) => ({
  originBucket: e.MIRROR_ORIGIN_BUCKET,
  s3ForcePathStyle: e.MIRROR_S3_FORCE_PATH_STYLE === 'true',
});

const targetsVariables = { MIRROR_TARGETS: json(z.array(runtimeTargetSchema)) };
const targetsSection = (e: z.output<z.ZodObject<typeof targetsVariables>>) => ({
  targets: e.MIRROR_TARGETS as readonly RuntimeTarget[],
});
const feedVariables = { MIRROR_FEED_SHARDS: z.coerce.number().int().min(1).max(64).default(4) };
const feedSection = (e: z.output<z.ZodObject<typeof feedVariables>>) => ({
  feedShards: e.MIRROR_FEED_SHARDS,
});

const limitVariables = {
  MIRROR_MAX_UPLOAD_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(5 * 1024 ** 3),
  MIRROR_MULTIPART_THRESHOLD_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(16 * 1024 ** 2),
  MIRROR_CONTENT_TYPES: json(z.array(z.string())).default(['*/*']),
  MIRROR_PRESIGN_TTL_SECONDS: z.coerce.number().int().min(1).max(900).default(900),
};
const limitsSection = (e: z.output<z.ZodObject<typeof limitVariables>>) => ({
  maxUploadBytes: e.MIRROR_MAX_UPLOAD_BYTES,
  multipartThresholdBytes: e.MIRROR_MULTIPART_THRESHOLD_BYTES,
  contentTypes: e.MIRROR_CONTENT_TYPES as readonly string[],
  presignTtlSeconds: e.MIRROR_PRESIGN_TTL_SECONDS,
});

// One schema per handler.

/** The upload API: everything but a target of its own. */
const apiVariables = {
  ...ledgerVariables,
  ...originVariables,
  ...targetsVariables,
  ...feedVariables,
  ...limitVariables,
  /** The completion queue: multipart completions run in their own function (absent: within the API request). */
  MIRROR_COMPLETION_QUEUE_URL: z.string().min(1).optional(),
};
const apiSections = (e: z.output<z.ZodObject<typeof apiVariables>>, ctx: z.RefinementCtx) => ({
  ...ledgerSection(e, ctx),
  ...originSection(e),
  ...targetsSection(e),
  ...feedSection(e),
  ...limitsSection(e),
  completionQueueUrl: e.MIRROR_COMPLETION_QUEUE_URL,
});
export const apiConfigSchema = z.object(apiVariables).transform(apiSections);
export type ApiConfig = z.output<typeof apiConfigSchema>;

/** The ingest: the origin's blobs, the ledger, and the targets it fans out to. */
export const ingestConfigSchema = z
  .object({
    ...ledgerVariables,
    ...originVariables,
    ...targetsVariables,
    ...feedVariables,
    /** The ingest's own queue: a verification that runs out of time goes on through it (absent: one pass). */
    MIRROR_INGEST_QUEUE_URL: z.string().min(1).optional(),
  })
  .transform((e, ctx) => ({
    ...ledgerSection(e, ctx),
    ...originSection(e),
    ...targetsSection(e),
    ...feedSection(e),
    ingestQueueUrl: e.MIRROR_INGEST_QUEUE_URL,
  }));
export type IngestConfig = z.output<typeof ingestConfigSchema>;

/** The multipart completion: the ledger's uploads and parts, and the origin's blobs it assembles. */
export const completeMultipartConfigSchema = z
  .object({ ...ledgerVariables, ...originVariables })
  .transform((e, ctx) => ({ ...ledgerSection(e, ctx), ...originSection(e) }));
export type CompleteMultipartConfig = z.output<typeof completeMultipartConfigSchema>;

/** One replicate function serves one S3 target (MIRROR_TARGET_ID), copying from the origin. */
export const replicateConfigSchema = z
  .object({
    ...ledgerVariables,
    ...originVariables,
    ...targetsVariables,
    /** The one target this function serves. */
    MIRROR_TARGET_ID: z.string().min(1),
  })
  .transform((e, ctx) => {
    const target = e.MIRROR_TARGETS.find((t) => t.id === e.MIRROR_TARGET_ID);
    if (target?.kind !== 's3' || !target.bucket) {
      ctx.addIssue({
        code: 'custom',
        path: ['MIRROR_TARGET_ID'],
        message: `"${e.MIRROR_TARGET_ID}" must name an S3 target (with a bucket) in MIRROR_TARGETS`,
      });
      return z.NEVER;
    }
    return { ...ledgerSection(e, ctx), ...originSection(e), target: { ...target, bucket: target.bucket } };
  });
export type ReplicateConfig = z.output<typeof replicateConfigSchema>;

/** The lag monitor reads the ledger and re-sends the outbox: no bucket. */
export const lagMonitorConfigSchema = z
  .object({ ...ledgerVariables, ...targetsVariables, ...feedVariables })
  .transform((e, ctx) => ({
    ...ledgerSection(e, ctx),
    ...targetsSection(e),
    ...feedSection(e),
  }));
export type LagMonitorConfig = z.output<typeof lagMonitorConfigSchema>;

/**
 * Reconcile compares the ledger with every target (HEADs in their buckets, and a listing of each for
 * objects the mirror does not hold) and ends lapsed uploads from the ledger alone. It touches no
 * origin object; the origin's name is what its replica stores are built with (the source of
 * copies, which only replicate makes).
 */
export const reconcileConfigSchema = z
  .object({ ...ledgerVariables, ...originVariables, ...targetsVariables })
  .transform((e, ctx) => ({
    ...ledgerSection(e, ctx),
    ...originSection(e),
    ...targetsSection(e),
  }));
export type ReconcileConfig = z.output<typeof reconcileConfigSchema>;

/**
 * The lost-notification sweep: pending uploads in the ledger, their blobs' versions in the origin,
 * the ingest queue it sends their events to, and the completion queue it sends lost multipart
 * completions to.
 */
export const pendingSweepConfigSchema = z
  .object({
    ...ledgerVariables,
    ...originVariables,
    MIRROR_INGEST_QUEUE_URL: z.string().min(1),
    /** The completion queue (absent: multipart uploads complete within the API request, none is lost). */
    MIRROR_COMPLETION_QUEUE_URL: z.string().min(1).optional(),
    /** Seconds after which a stored object's event counts as lost (core/pending-sweep.ts). @default 600 */
    MIRROR_SWEEP_GRACE_SECONDS: z.coerce.number().min(0).optional(),
  })
  .transform((e, ctx) => ({
    ...ledgerSection(e, ctx),
    ...originSection(e),
    ingestQueueUrl: e.MIRROR_INGEST_QUEUE_URL,
    completionQueueUrl: e.MIRROR_COMPLETION_QUEUE_URL,
    graceMs: e.MIRROR_SWEEP_GRACE_SECONDS === undefined ? undefined : e.MIRROR_SWEEP_GRACE_SECONDS * 1000,
  }));
export type PendingSweepConfig = z.output<typeof pendingSweepConfigSchema>;

/**
 * Every variable any handler reads: the API's, and a replicate function's own target (the CDK
 * tests check a function's whole environment with it).
 */
export const runtimeConfigSchema = z
  .object({ ...apiVariables, MIRROR_TARGET_ID: z.string().optional() })
  .transform((e, ctx) => ({ ...apiSections(e, ctx), targetId: e.MIRROR_TARGET_ID }));
export type RuntimeConfig = Readonly<z.output<typeof runtimeConfigSchema>>;

/**
 * Reads and checks the environment against a handler's schema; throws one error naming every
 * missing or bad variable.
 */
export function readConfig<T extends z.ZodType>(
  schema: T,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.output<T>> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data as Readonly<z.output<T>>;
  const problems = parsed.error.issues.map((i) => {
    const name = i.path.join('.');
    const missing = i.path.length === 1 && env[String(i.path[0])] === undefined && i.code === 'invalid_type';
    return `${name}: ${missing ? 'is not set' : i.message}`;
  });
  throw new Error(`media-mirror: bad configuration in the environment:\n  ${problems.join('\n  ')}`);
}

/** Every variable at once (the CDK tests' check of a function's environment). */
export function readRuntimeConfig(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  return readConfig(runtimeConfigSchema, env);
}
