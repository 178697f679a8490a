/**
 * What a handler learns from its environment, read once at cold start.
 * The CDK app and the local stack set the same variables; only names and
 * endpoints differ (endpoints come from the SDK's own AWS_ENDPOINT_URL_<SERVICE>).
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

const envSchema = z.object({
  MIRROR_TABLE: z.string().min(3),
  MIRROR_ORIGIN_BUCKET: z.string().min(3),
  MIRROR_TARGETS: json(z.array(runtimeTargetSchema)),
  MIRROR_FEED_SHARDS: z.coerce.number().int().min(1).max(64).default(4),
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
  /** Set for the replicate function: the one target it serves. */
  MIRROR_TARGET_ID: z.string().optional(),
  /** Local emulators address buckets by path, not by host name. */
  MIRROR_S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false'),
  AWS_REGION: z.string().default('us-east-1'),
  /**
   * Local stack only (refused unless DynamoDB's endpoint is overridden): shifts the functions' clock,
   * so tests can make uploads old without waiting (docs/api.md, "Expiry").
   */
  MIRROR_CLOCK_OFFSET_MS: z.coerce.number().int().optional(),
  AWS_ENDPOINT_URL_DYNAMODB: z.string().optional(),
});

export type RuntimeConfig = Readonly<{
  table: string;
  originBucket: string;
  targets: readonly RuntimeTarget[];
  feedShards: number;
  maxUploadBytes: number;
  multipartThresholdBytes: number;
  contentTypes: readonly string[];
  presignTtlSeconds: number;
  targetId: string | undefined;
  s3ForcePathStyle: boolean;
  region: string;
  /** Local stack only: milliseconds added to the clock. */
  clockOffsetMs: number;
}>;

/** Reads and checks the environment; throws one error naming every missing or bad variable. */
export function readRuntimeConfig(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new Error(`media-mirror: bad configuration in the environment:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  if (e.MIRROR_CLOCK_OFFSET_MS !== undefined && e.AWS_ENDPOINT_URL_DYNAMODB === undefined) {
    throw new Error(
      'media-mirror: bad configuration in the environment:\n  MIRROR_CLOCK_OFFSET_MS: only for the local stack (emulator endpoints)',
    );
  }
  return {
    table: e.MIRROR_TABLE,
    originBucket: e.MIRROR_ORIGIN_BUCKET,
    targets: e.MIRROR_TARGETS,
    feedShards: e.MIRROR_FEED_SHARDS,
    maxUploadBytes: e.MIRROR_MAX_UPLOAD_BYTES,
    multipartThresholdBytes: e.MIRROR_MULTIPART_THRESHOLD_BYTES,
    contentTypes: e.MIRROR_CONTENT_TYPES,
    presignTtlSeconds: e.MIRROR_PRESIGN_TTL_SECONDS,
    targetId: e.MIRROR_TARGET_ID,
    s3ForcePathStyle: e.MIRROR_S3_FORCE_PATH_STYLE === 'true',
    region: e.AWS_REGION,
    clockOffsetMs: e.MIRROR_CLOCK_OFFSET_MS ?? 0,
  };
}
