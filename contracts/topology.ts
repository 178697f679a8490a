/**
 * The one description of a deployment: home region, targets and limits.
 * Both the CDK app (lib/) and the local stack (local/) read it from
 * `mirror.config.json`; adding a target is one entry in `targets`.
 */
import * as z from 'zod';

const targetId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$/, 'lower-case letters, digits and dashes, 3-32 characters');

/** A path prefix filter: only paths under it are sent to the target. */
/** Log and count what the target would be sent, touch nothing: for rolling out a new target safely. */
const dryRun = z.boolean().default(false);

const pathPrefix = z
  .string()
  .regex(/^([^/]+\/)+$/, 'a relative folder path ending with "/"')
  .optional();

export const s3TargetSchema = z.object({
  id: targetId,
  kind: z.literal('s3'),
  /** AWS region of the replica bucket. */
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region name such as eu-west-1'),
  /** Only paths under this prefix are replicated. @default every path */
  pathPrefix,
  dryRun,
  /** Physical bucket name. @default `<name>-<id>-<account>` in lower case (CDK), `replica-<id>` (local) */
  bucketName: z.string().optional(),
  /** Key prefix in the replica bucket: a file `a/b.jpg` is stored at `<keyPrefix>a/b.jpg`. @default '' */
  keyPrefix: z
    .string()
    .regex(/^([^/]+\/)*$/, 'empty, or a folder path ending with "/"')
    .max(256)
    .default(''),
});

export const pullTargetSchema = z.object({
  id: targetId,
  kind: z.literal('pull'),
  pathPrefix,
  dryRun,
});

export const targetSchema = z.discriminatedUnion('kind', [s3TargetSchema, pullTargetSchema]);

export const topologySchema = z
  .object({
    /** Prefix of stack names and generated resource names. */
    name: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,30}$/)
      .default('MediaMirror'),
    homeRegion: z.string().default('us-east-1'),
    targets: z.array(targetSchema).min(1),
    /** Shards of the change feed: its write throughput scales with it. */
    feedShards: z.number().int().min(1).max(64).default(4),
    limits: z
      .object({
        /**
         * Largest upload accepted, in bytes: at most 5 TiB, S3's largest object (the ingest
         * verifies larger objects across invocations, ~17 h for 5 TiB at 90 MB/s: docs/scale.md).
         * @default 50 GiB
         */
        maxUploadBytes: z
          .number()
          .int()
          .positive()
          .max(5 * 1024 ** 4, "at most 5 TiB: S3's largest object")
          .default(50 * 1024 ** 3),
        /** Above this size uploads go in parts (5 MiB to 5 GiB, S3's limits). @default 16 MiB */
        multipartThresholdBytes: z
          .number()
          .int()
          .min(5 * 1024 ** 2)
          .max(5 * 1024 ** 3)
          .default(16 * 1024 ** 2),
        /** Content types accepted; `type/*` matches a whole family. */
        contentTypes: z
          .array(z.string())
          .min(1)
          .default([
            'image/*',
            'video/*',
            'audio/*',
            'application/pdf',
            'text/plain',
            'application/octet-stream',
          ]),
        /** Lifetime of presigned URLs, in seconds (at most 900). */
        presignTtlSeconds: z.number().int().min(60).max(900).default(900),
      })
      .prefault({}),
    monitoring: z
      .object({
        /** Alarm when a target's replication lag stays above this. @default 900 (S3 RTC's 15 minutes) */
        lagAlarmSeconds: z.number().int().positive().default(900),
        /** ...for this many consecutive one-minute periods. @default 3 */
        lagAlarmPeriods: z.number().int().min(1).max(60).default(3),
        /** Alarm when a pull target's agent has not reported for this long. @default 300 */
        heartbeatAlarmSeconds: z.number().int().positive().default(300),
        /** Alarm when more uploads than this are rejected at ingest in 5 minutes. @default 0 (any) */
        rejectionAlarmThreshold: z.number().int().nonnegative().default(0),
        /** Minutes between scheduled reconciliations. @default 60 */
        reconcileEveryMinutes: z.number().int().min(5).max(1440).default(60),
        /** An email address subscribed to the alarm topic. @default none (alarms without actions) */
        alarmEmail: z.string().email().optional(),
      })
      .prefault({}),
    api: z
      .object({
        /** How API Gateway authenticates callers on AWS. Locally a bearer token is used. */
        auth: z.enum(['iam', 'jwt']).default('iam'),
        jwtIssuer: z.string().url().optional(),
        jwtAudience: z.array(z.string()).optional(),
        /** Browser origins allowed to call the API and PUT to the origin bucket. */
        corsOrigins: z.array(z.string()).default([]),
      })
      .prefault({}),
  })
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    t.targets.forEach((target, i) => {
      if (seen.has(target.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['targets', i, 'id'],
          message: `duplicate target id "${target.id}"`,
        });
      }
      seen.add(target.id);
    });
    if (t.api.auth === 'jwt' && !t.api.jwtIssuer) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', 'jwtIssuer'],
        message: 'required when api.auth is "jwt"',
      });
    }
  });

export type Topology = z.infer<typeof topologySchema>;
export type TargetConfig = z.infer<typeof targetSchema>;
export type S3TargetConfig = z.infer<typeof s3TargetSchema>;
export type PullTargetConfig = z.infer<typeof pullTargetSchema>;

/** Parses a topology, throwing one error that lists every problem with its field. */
export function parseTopology(input: unknown): Topology {
  const result = topologySchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`invalid topology:\n  ${problems.join('\n  ')}`);
  }
  return result.data;
}

/** Does a target take this path? */
export function targetSelects(target: { pathPrefix?: string | undefined }, path: string): boolean {
  return target.pathPrefix === undefined || path.startsWith(target.pathPrefix);
}
