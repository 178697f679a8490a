/**
 * `endpoints.json`: what the local stack (`npm start`) tells the CLI, the agent and the
 * operations commands about itself: the API and its token, the emulators, the names of the
 * table, buckets and queues. local/data-dir.ts writes it; cli/endpoints.ts, cli/ops-context.ts
 * and agent/config.ts read it.
 *
 * Readers take files from older stacks too, so every top-level field is optional here and each
 * reader requires what it needs (`endpointsSchema.required({...})`); `npm start` writes them all
 * (`writtenEndpointsSchema`).
 */
import * as z from 'zod';

const credentials = z.object({ accessKeyId: z.string(), secretAccessKey: z.string() });

export const endpointsTargetSchema = z.object({
  kind: z.enum(['s3', 'pull']),
  bucket: z.string().optional(),
  /** S3 targets: the replica's (nominal) region and key prefix. */
  region: z.string().optional(),
  keyPrefix: z.string().optional(),
  /** Only paths under it go to the target. */
  pathPrefix: z.string().optional(),
  dryRun: z.boolean().optional(),
  /** The target's FIFO queue URL. */
  queue: z.string(),
  dlq: z.string().optional(),
});

export const endpointsSchema = z.object({
  /** API base URL, e.g. `http://127.0.0.1:8787`. */
  api: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  /** `<api>/metrics`: Prometheus text, no token. */
  metrics: z.string().optional(),
  s3: z
    .object({
      endpoint: z.string().min(1),
      region: z.string().min(1),
      credentials,
      /** @default true (an emulator) */
      forcePathStyle: z.boolean().optional(),
    })
    .optional(),
  sqs: z.object({ endpoint: z.string().min(1) }).optional(),
  dynamodb: z.object({ endpoint: z.string().min(1) }).optional(),
  table: z.string().min(1).optional(),
  originBucket: z.string().min(1).optional(),
  feedShards: z.number().int().positive().optional(),
  ingest: z.object({ queue: z.string(), dlq: z.string() }).optional(),
  /** The multipart completions' queue (the API sends to it) and its DLQ. */
  completion: z.object({ queue: z.string(), dlq: z.string() }).optional(),
  targets: z.record(z.string(), endpointsTargetSchema).optional(),
});

export type Endpoints = z.infer<typeof endpointsSchema>;
export type EndpointsTarget = z.infer<typeof endpointsTargetSchema>;

/** Everything, as `npm start` writes it. */
export const writtenEndpointsSchema = endpointsSchema.required();

/** One line per problem, each naming its field. */
export function endpointsProblems(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}
