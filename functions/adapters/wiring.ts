/**
 * Builds the domain's ports from the runtime configuration: the one place
 * that knows which adapter serves which port.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Clock, Metrics, ReplicaStore } from '../core/ports.js';
import type { UploadDeps } from '../core/uploads.js';
import { DynamoLedger } from './dynamo-ledger.js';
import type { RuntimeConfig, RuntimeTarget } from './runtime-config.js';
import { makeS3Client, S3BlobStore, S3ReplicaStore } from './s3.js';
import { SqsFanout } from './sqs-fanout.js';

export const systemClock: Clock = { now: () => new Date() };

/** The system clock shifted by `offsetMs` (the local stack's MIRROR_CLOCK_OFFSET_MS). */
export function offsetClock(offsetMs: number): Clock {
  return offsetMs === 0 ? systemClock : { now: () => new Date(Date.now() + offsetMs) };
}

export function makeReplicaStore(config: RuntimeConfig, target: RuntimeTarget): ReplicaStore | undefined {
  if (target.kind !== 's3' || !target.bucket) return undefined;
  const s3 = makeS3Client({
    region: target.region ?? config.region,
    forcePathStyle: config.s3ForcePathStyle,
  });
  return new S3ReplicaStore(s3, target.bucket, target.keyPrefix, { bucket: config.originBucket });
}

export function makeDeps(config: RuntimeConfig, metrics: Metrics): UploadDeps & { metrics: Metrics } {
  const s3 = makeS3Client({ region: config.region, forcePathStyle: config.s3ForcePathStyle });
  const replicas = new Map<string, ReplicaStore>();
  for (const target of config.targets) {
    const store = makeReplicaStore(config, target);
    if (store) replicas.set(target.id, store);
  }
  return {
    ledger: new DynamoLedger(new DynamoDBClient({ region: config.region }), config.table),
    blobs: new S3BlobStore(s3, config.originBucket),
    fanout: new SqsFanout(new SQSClient({ region: config.region }), config.targets),
    replicas: (id) => replicas.get(id),
    clock: offsetClock(config.clockOffsetMs),
    metrics,
    feedShards: config.feedShards,
    targets: config.targets,
    limits: {
      maxUploadBytes: config.maxUploadBytes,
      multipartThresholdBytes: config.multipartThresholdBytes,
      contentTypes: config.contentTypes,
      presignTtlSeconds: config.presignTtlSeconds,
    },
  };
}
