/**
 * The one description of a deployment: home region, targets and limits.
 * Both the CDK app (lib/) and the local stack (local/) read it from
 * `mirror.config.json`; adding a target is one entry in `targets`.
 */
import * as z from 'zod';
import { MiB, PREFERRED_PART_BYTES, S3_MAX_PARTS } from './multipart.js';

/** The most shards a change feed may have: the topology, the agent's flag and its checks share it. */
export const MAX_FEED_SHARDS = 64;

const targetId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$/, 'lower-case letters, digits and dashes, 3-32 characters');

/** A path prefix filter: only paths under it are sent to the target. */
/** Log and count what the target would be sent, touch nothing: for rolling out a new target safely. */
const dryRun = z.boolean().default(false);

/**
 * The most invocations an SQS event source runs at once (Lambda's `MaximumConcurrency`, 2-1000).
 * The caps keep a bulk import from taking the account's concurrency from the API.
 */
const maxConcurrency = z
  .number()
  .int('a whole number of invocations')
  .min(2, "at least 2 (Lambda's least maximum concurrency of an SQS event source)")
  .max(1000, "at most 1000 (Lambda's largest)");

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
  /** Replicate invocations at once for this target. @default 5 */
  maxConcurrency: maxConcurrency.optional(),
});

export const pullTargetSchema = z.object({
  id: targetId,
  kind: z.literal('pull'),
  pathPrefix,
  dryRun,
});

export const targetSchema = z.discriminatedUnion('kind', [s3TargetSchema, pullTargetSchema]);

/** An OAuth 2.0 scope token (RFC 6749, 3.3): printable ASCII but space, `"` and `\`. */
const oauthScope = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'an OAuth scope');

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
    feedShards: z.number().int().min(1).max(MAX_FEED_SHARDS).default(4),
    ingest: z
      .object({
        /**
         * Ingest invocations at once (each a batch of up to 10 objects verified and committed). More
         * feed shards commit more only with more of these (docs/scale.md). @default 10
         */
        maxConcurrency: maxConcurrency.optional(),
      })
      .prefault({}),
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
        /**
         * An existing SNS topic every alarm also notifies (a pager, AWS Chatbot). Its policy must let
         * CloudWatch publish, and its key, if any, let CloudWatch use it. @default none
         */
        alarmTopicArn: z
          .string()
          .regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/, {
            message: 'expected an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)',
          })
          .optional(),
      })
      .prefault({}),
    api: z
      .object({
        /** How API Gateway authenticates callers on AWS. Locally a bearer token is used. */
        auth: z.enum(['iam', 'jwt']).default('iam'),
        // An OIDC issuer is https (OpenID Connect Discovery): API Gateway fetches the keys that
        // sign every token from it, so over plain HTTP whoever sits on the path could mint tokens.
        jwtIssuer: z
          .string()
          .url()
          .refine(
            (url) => url.startsWith('https://'),
            'must be an https:// URL (the keys of its tokens are fetched from it)',
          )
          .optional(),
        jwtAudience: z.array(z.string()).optional(),
        /**
         * With `jwt`: the scopes a token must carry (its `scope` or `scp` claim), any one of `read` for
         * the GET routes and any one of `write` for the others (claims, parts, proofs, deletes,
         * restores). `"none"`: any valid token of the issuer may call every route.
         * @default { read: ['mirror/read', 'mirror/write'], write: ['mirror/write'] }
         */
        jwtScopes: z
          .union([
            z.literal('none'),
            z.strictObject({
              read: z.array(oauthScope).min(1),
              write: z.array(oauthScope).min(1),
            }),
          ])
          .default({ read: ['mirror/read', 'mirror/write'], write: ['mirror/write'] }),
        /** Browser origins allowed to call the API and PUT to the origin bucket. */
        corsOrigins: z.array(z.string()).default([]),
        /**
         * Steady requests per second the API stage admits (all callers together). It must carry the
         * largest upload's calls within one presigned URL lifetime (`minimumApiRate`).
         * @default the larger of 50 and `minimumApiRate(limits)`
         */
        throttleRateLimit: z.number().positive('a positive number of requests per second').optional(),
        /** Requests the stage admits in a burst above the steady rate. @default twice the rate */
        throttleBurstLimit: z.number().int('a whole number of requests').min(1).optional(),
        /**
         * Concurrent executions reserved for the api function (AWS), or `"none"` to reserve nothing
         * where the account's concurrency quota cannot spare any (docs/deploy.md).
         * @default the steady rate at 0.5 s per request, at least 10 (the CDK app derives it)
         */
        reservedConcurrency: z.union([z.number().int('a whole number').min(1), z.literal('none')]).optional(),
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
    const rateProblem = apiRateProblem(t.limits, t.api.throttleRateLimit);
    if (rateProblem !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['api', 'throttleRateLimit'], message: rateProblem });
    }
    const topicRegion = t.monitoring.alarmTopicArn?.split(':')[3];
    if (topicRegion !== undefined && topicRegion !== t.homeRegion) {
      // CloudWatch refuses an alarm action on a topic in another region, and with it the home stack.
      ctx.addIssue({
        code: 'custom',
        path: ['monitoring', 'alarmTopicArn'],
        message: `is in ${topicRegion}, but the alarms are in the home region ${t.homeRegion} and CloudWatch notifies only a topic of their own region: name a topic in ${t.homeRegion} (and forward it to the central one from there)`,
      });
    }
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

/**
 * Parts per presign call and per record call the throttle budgets: the clients' smallest full
 * batch, not their largest. The web client, the CLI and the Uppy plugin presign and record parts
 * in batches that grow to max(64, parts/16), at most `maxPartsPerRequest` (1,000) parts
 * (web/client/upload/part-batches.ts), so 64 a call over-counts every upload they make: the
 * budget stays an upper bound. A client that presigns one part per call is paced by the throttle
 * but signs each URL just before its PUT, so none expires waiting: the budget does not cover it.
 */
export const API_PARTS_PER_CALL = 64;
/** Calls per batch of parts: presign it, record it. */
export const API_CALLS_PER_BATCH = 2;
/**
 * Calls per upload besides its full batches, while presigned URLs are out: create and complete,
 * the smaller first presign batches (from 2 parts, doubling to 64: at most 5) and the record
 * reports a timer sends before a batch fills (after 1 s, doubling to 60 s: at most 20 in 900 s),
 * rounded up. The status polls after complete hold no URL, so they are not counted.
 */
export const API_CALLS_PER_UPLOAD = 32;
/** The stage's steady rate when nothing larger is needed, requests per second. */
export const DEFAULT_API_RATE = 50;

type UploadLimits = Pick<Topology['limits'], 'maxUploadBytes' | 'presignTtlSeconds'>;

/**
 * The API calls an upload of `limits.maxUploadBytes` makes, in parts as the API plans them: 8 MiB
 * parts, grown (whole MiB) so that no upload needs more than S3's 10,000 (functions/core/multipart.ts).
 */
export function largestUploadApiCalls(limits: UploadLimits): {
  parts: number;
  partBytes: number;
  calls: number;
} {
  const needed = Math.ceil(limits.maxUploadBytes / S3_MAX_PARTS);
  const partBytes = Math.max(PREFERRED_PART_BYTES, Math.ceil(needed / MiB) * MiB);
  const parts = Math.max(1, Math.ceil(limits.maxUploadBytes / partBytes));
  const batches = Math.ceil(parts / API_PARTS_PER_CALL);
  return { parts, partBytes, calls: batches * API_CALLS_PER_BATCH + API_CALLS_PER_UPLOAD };
}

/**
 * The lowest stage rate that carries the largest upload's calls within one presigned URL lifetime:
 * the API is then never what paces an upload, and part URLs presigned ahead (in batches) cannot
 * expire while the client waits on the throttle for the calls between them.
 */
export function minimumApiRate(limits: UploadLimits): number {
  return Math.ceil(largestUploadApiCalls(limits).calls / limits.presignTtlSeconds);
}

/** Why `rate` cannot serve an upload of the largest allowed file, or undefined when it can. */
export function apiRateProblem(limits: UploadLimits, rate: number | undefined): string | undefined {
  if (rate === undefined) return undefined;
  const minimum = minimumApiRate(limits);
  if (rate >= minimum) return undefined;
  const { parts, partBytes, calls } = largestUploadApiCalls(limits);
  return (
    `${rate} requests/s cannot carry the ${calls} API calls of an upload of limits.maxUploadBytes ` +
    `(${limits.maxUploadBytes} bytes: ${parts} parts of ${partBytes / MiB} MiB, presigned and recorded ` +
    `${API_PARTS_PER_CALL} a call, ` +
    `${API_CALLS_PER_UPLOAD} more) within limits.presignTtlSeconds (${limits.presignTtlSeconds} s): ` +
    `set at least ${minimum}, or lower limits.maxUploadBytes`
  );
}

/** The API stage's throttle and the api function's reservation, defaults applied. */
export function apiThrottle(topology: Pick<Topology, 'api' | 'limits'>): {
  rateLimit: number;
  burstLimit: number;
  /** `false`: nothing reserved; undefined: derived from the rate by the CDK app. */
  reservedConcurrency: number | false | undefined;
} {
  const { api, limits } = topology;
  const rateLimit = api.throttleRateLimit ?? Math.max(DEFAULT_API_RATE, minimumApiRate(limits));
  return {
    rateLimit,
    burstLimit: api.throttleBurstLimit ?? Math.ceil(2 * rateLimit),
    reservedConcurrency: api.reservedConcurrency === 'none' ? false : api.reservedConcurrency,
  };
}

/**
 * Every bucket has one owner: the origin, or one S3 target. Two targets in one bucket write (and
 * reconcile, and delete) each other's keys, and a replica written into the origin bucket would be
 * taken for uploads. `owners` are [who, bucket name] pairs; one problem per owner that repeats a name.
 */
export function sharedBuckets(owners: readonly (readonly [owner: string, bucket: string])[]): string[] {
  const first = new Map<string, string>();
  const problems: string[] = [];
  for (const [owner, bucket] of owners) {
    const other = first.get(bucket);
    if (other === undefined) first.set(bucket, owner);
    else problems.push(`${owner}: bucket name "${bucket}" is also used by ${other}`);
  }
  return problems;
}

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
