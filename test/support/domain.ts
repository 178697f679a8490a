/** Domain dependencies wired to the test emulators with the real adapters. */
import { createHash, randomUUID } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoLedger } from '../../functions/adapters/dynamo-ledger.js';
import { quietTelemetry } from '../../functions/adapters/powertools.js';
import { S3BlobStore, S3ReplicaStore } from '../../functions/adapters/s3.js';
import { SqsFanout } from '../../functions/adapters/sqs-fanout.js';
import { systemClock } from '../../functions/adapters/wiring.js';
import type { Ledger, Metrics } from '../../functions/core/ports.js';
import type { UploadDeps } from '../../functions/core/uploads.js';
import { type ApiDeps, createApiHandler } from '../../functions/handlers/api-handler.js';
import { type httpEvent, lambdaContext } from './api-events.js';
import type { TestEmulators } from './emulators.js';

export class RecordingMetrics implements Metrics {
  readonly recorded: { name: string; value: number; dimensions?: Record<string, string> | undefined }[] = [];
  count(name: string, value = 1, dimensions?: Record<string, string>) {
    this.recorded.push({ name, value, dimensions });
  }
  countAtOnce(name: string, value = 1) {
    this.recorded.push({ name, value, dimensions: undefined });
  }
  bytes(name: string, value: number, dimensions?: Record<string, string>) {
    this.recorded.push({ name, value, dimensions });
  }
  milliseconds(name: string, value: number, dimensions?: Record<string, string>) {
    this.recorded.push({ name, value, dimensions });
  }
  seconds(name: string, value: number, dimensions?: Record<string, string>) {
    this.recorded.push({ name, value, dimensions });
  }
  total(name: string): number {
    return this.recorded.filter((m) => m.name === name).reduce((sum, m) => sum + m.value, 0);
  }
}

export interface World {
  deps: UploadDeps & { metrics: RecordingMetrics };
  ledger: DynamoLedger;
  table: string;
  originBucket: string;
  targets: { id: string; kind: 's3' | 'pull'; queueUrl: string; bucket?: string; pathPrefix?: string }[];
  replica(targetId: string): S3ReplicaStore;
}

let worlds = 0;

/** A fresh table, origin bucket, two S3 targets (one with a prefix filter) and one pull target. */
export async function makeWorld(
  emulators: TestEmulators,
  options: { feedShards?: number } = {},
): Promise<World> {
  const n = ++worlds;
  const table = await emulators.createTable();
  const originBucket = await emulators.createBucket(`origin-${n}`);
  const targets = [
    {
      id: 'alpha',
      kind: 's3' as const,
      queueUrl: await emulators.createFifoQueue(`alpha-${n}`),
      bucket: await emulators.createBucket(`alpha-${n}`),
    },
    {
      id: 'beta',
      kind: 's3' as const,
      queueUrl: await emulators.createFifoQueue(`beta-${n}`),
      bucket: await emulators.createBucket(`beta-${n}`),
      pathPrefix: 'public/',
    },
    { id: 'gamma', kind: 'pull' as const, queueUrl: await emulators.createFifoQueue(`gamma-${n}`) },
  ];
  const ledger = new DynamoLedger(emulators.dynamo, table);
  const replicas = new Map(
    targets.flatMap((t) =>
      t.bucket
        ? [[t.id, new S3ReplicaStore(emulators.s3, t.bucket, '', { bucket: originBucket })] as const]
        : [],
    ),
  );
  const metrics = new RecordingMetrics();
  return {
    ledger,
    table,
    originBucket,
    targets,
    replica: (id) => replicas.get(id) as S3ReplicaStore,
    deps: {
      ledger,
      blobs: new S3BlobStore(emulators.s3, originBucket),
      fanout: new SqsFanout(emulators.sqs, targets),
      replicas: (id) => replicas.get(id),
      clock: systemClock,
      metrics,
      feedShards: options.feedShards ?? 4,
      targets,
      limits: {
        maxUploadBytes: 64 * 1024 * 1024,
        multipartThresholdBytes: 16 * 1024 * 1024,
        contentTypes: ['image/*', 'text/plain', 'application/octet-stream'],
        presignTtlSeconds: 900,
      },
    },
  };
}

export const sha256Hex = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

export function randomBytes(size: number): Buffer {
  const out = Buffer.alloc(size);
  const seed = Buffer.from(randomUUID());
  for (let i = 0; i < size; i++) out[i] = (seed[i % seed.length] as number) ^ (i * 31) ^ (i >> 8);
  return out;
}

/** Puts bytes where a browser's presigned PUT would: blobs/<sha256 claimed>. */
export async function putBlob(emulators: TestEmulators, bucket: string, claimedSha: string, bytes: Buffer) {
  const out = await emulators.s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: `blobs/${claimedSha}`, Body: bytes }),
  );
  return { etag: out.ETag, size: bytes.length };
}

/** Telemetry for a handler under test: silent, counting into its own metrics. */
export const testTelemetry = (metrics: Metrics = new RecordingMetrics()) => quietTelemetry(metrics);

/**
 * The API handler on a world: the real adapters on the test emulators, through
 * createApiHandler as the Lambda entry builds it. Targets and limits default to the world's.
 */
export function worldApi(
  world: World,
  options: { targets?: World['targets']; limits?: Partial<UploadDeps['limits']> } = {},
) {
  const targets = options.targets ?? world.targets;
  return createApiHandler({
    ...world.deps,
    targets,
    limits: { ...world.deps.limits, ...options.limits },
    telemetry: testTelemetry(),
  });
}

/** A blob store for tests that only presign: presigning makes no request, and the endpoint answers none. */
export function presignOnlyBlobStore(bucket = 'origin'): S3BlobStore {
  return new S3BlobStore(
    new S3Client({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    }),
    bucket,
  );
}

/**
 * The api handler over `ledger` alone (small limits: 1 MiB files, parts above 512 KiB, images only;
 * presigning only, no fan-out), its answers parsed: for tests of what a route reads and answers.
 */
export function apiOverLedger(ledger: Ledger, targets: ApiDeps['targets'], feedShards = 4) {
  const handler = createApiHandler({
    ledger,
    blobs: presignOnlyBlobStore(),
    replicas: () => undefined,
    fanout: { send: async () => undefined },
    clock: systemClock,
    feedShards,
    targets,
    limits: {
      maxUploadBytes: 1024 * 1024,
      multipartThresholdBytes: 512 * 1024,
      contentTypes: ['image/*'],
      presignTtlSeconds: 900,
    },
    telemetry: quietTelemetry(new RecordingMetrics()),
  } as unknown as ApiDeps);
  return async (event: ReturnType<typeof httpEvent>) => {
    const result = await handler(event, lambdaContext('api'));
    return { status: result.statusCode, body: JSON.parse(String(result.body)) };
  };
}

/** The target's row saying it applied `version` of `path`, verified now. */
export function recordApplied(
  ledger: Ledger,
  targetId: string,
  path: string,
  version: number,
  etag?: string,
) {
  return ledger.recordTargetState({
    targetId,
    path,
    appliedVersion: version,
    status: 'verified',
    appliedAt: new Date().toISOString(),
    etag,
  });
}
