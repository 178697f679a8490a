/**
 * Builds each handler's ports from its configuration: the one place that knows which adapter
 * serves which port. The handlers' module-level wiring (and the CLI's reconcile) call these.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { CompletionDeps } from '../core/completion.js';
import type { ExpiryDeps } from '../core/expiry.js';
import type { IngestDeps } from '../core/ingest.js';
import type { LagDeps } from '../core/lag.js';
import type { PendingSweepDeps } from '../core/pending-sweep.js';
import type { Clock, Metrics, ReplicaStore } from '../core/ports.js';
import type { ReconcileDeps } from '../core/reconcile.js';
import type { ReplicateDeps } from '../core/replicate.js';
import type { UploadDeps } from '../core/uploads.js';
import type { VerificationQueue } from '../core/verification.js';
import { DynamoLedger } from './dynamo-ledger.js';
import { S3OriginVersions, SqsIngestEvents } from './pending-sweep.js';
import type {
  ApiConfig,
  CompleteMultipartConfig,
  IngestConfig,
  LagMonitorConfig,
  PendingSweepConfig,
  ReconcileConfig,
  ReplicateConfig,
  RuntimeTarget,
} from './runtime-config.js';
import { makeS3Client, S3BlobStore, S3ReplicaStore } from './s3.js';
import { SqsCompletionQueue } from './sqs-completion.js';
import { SqsFanout } from './sqs-fanout.js';
import { SqsVerificationQueue } from './sqs-verification.js';

export const systemClock: Clock = { now: () => new Date() };

/** The system clock shifted by `offsetMs` (the local stack's MIRROR_CLOCK_OFFSET_MS). */
export function offsetClock(offsetMs: number): Clock {
  return offsetMs === 0 ? systemClock : { now: () => new Date(Date.now() + offsetMs) };
}

interface LedgerConfig {
  readonly table: string;
  readonly region: string;
  readonly clockOffsetMs: number;
}
interface OriginConfig {
  readonly region: string;
  readonly originBucket: string;
  readonly s3ForcePathStyle: boolean;
}

const makeLedger = (config: LedgerConfig) =>
  new DynamoLedger(new DynamoDBClient({ region: config.region }), config.table);
const makeFanout = (config: LedgerConfig & { targets: readonly RuntimeTarget[] }) =>
  new SqsFanout(new SQSClient({ region: config.region }), config.targets);
const originS3 = (config: OriginConfig) =>
  makeS3Client({ region: config.region, forcePathStyle: config.s3ForcePathStyle });

/** A target's replica store, on `s3` or a client of the target's region; none for pull targets. */
export function makeReplicaStore(
  config: OriginConfig,
  target: ReplicaTarget,
  s3: S3Client = makeS3Client({
    region: target.region ?? config.region,
    forcePathStyle: config.s3ForcePathStyle,
  }),
): ReplicaStore | undefined {
  if (target.kind !== 's3' || !target.bucket) return undefined;
  return new S3ReplicaStore(s3, target.bucket, target.keyPrefix, { bucket: config.originBucket });
}

interface ReplicaTarget {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  readonly region?: string | undefined;
  readonly bucket?: string | undefined;
  readonly keyPrefix: string;
}

/** The replica store of every S3 target with a bucket, by target id. */
function makeReplicas(
  config: OriginConfig,
  targets: readonly ReplicaTarget[],
  s3ForRegion?: (region: string) => S3Client,
): (targetId: string) => ReplicaStore | undefined {
  const replicas = new Map<string, ReplicaStore>();
  for (const target of targets) {
    const s3 = s3ForRegion && target.kind === 's3' ? s3ForRegion(target.region ?? config.region) : undefined;
    const store = makeReplicaStore(config, target, s3);
    if (store) replicas.set(target.id, store);
  }
  return (id) => replicas.get(id);
}

export function makeApiDeps(config: ApiConfig, metrics: Metrics): UploadDeps & { metrics: Metrics } {
  return {
    ledger: makeLedger(config),
    blobs: new S3BlobStore(originS3(config), config.originBucket),
    fanout: makeFanout(config),
    replicas: makeReplicas(config, config.targets),
    clock: offsetClock(config.clockOffsetMs),
    metrics,
    feedShards: config.feedShards,
    targets: config.targets,
    completionQueue:
      config.completionQueueUrl === undefined
        ? undefined
        : new SqsCompletionQueue(new SQSClient({ region: config.region }), config.completionQueueUrl),
    limits: {
      maxUploadBytes: config.maxUploadBytes,
      multipartThresholdBytes: config.multipartThresholdBytes,
      contentTypes: config.contentTypes,
      presignTtlSeconds: config.presignTtlSeconds,
    },
  };
}

export function makeIngestDeps(
  config: IngestConfig,
  metrics: Metrics,
): IngestDeps & { verificationQueue?: VerificationQueue | undefined } {
  return {
    verificationQueue:
      config.ingestQueueUrl === undefined
        ? undefined
        : new SqsVerificationQueue(new SQSClient({ region: config.region }), config.ingestQueueUrl),
    ledger: makeLedger(config),
    blobs: new S3BlobStore(originS3(config), config.originBucket),
    fanout: makeFanout(config),
    clock: offsetClock(config.clockOffsetMs),
    metrics,
    feedShards: config.feedShards,
    targets: config.targets,
  };
}

export function makeCompleteMultipartDeps(config: CompleteMultipartConfig, metrics: Metrics): CompletionDeps {
  return {
    ledger: makeLedger(config),
    blobs: new S3BlobStore(originS3(config), config.originBucket),
    clock: offsetClock(config.clockOffsetMs),
    metrics,
  };
}

export function makeReplicateDeps(
  config: ReplicateConfig,
  metrics: Metrics,
): ReplicateDeps & { target: RuntimeTarget } {
  return {
    target: config.target,
    dryRun: config.target.dryRun,
    ledger: makeLedger(config),
    replica: makeReplicaStore(config, config.target) as ReplicaStore,
    clock: offsetClock(config.clockOffsetMs),
    metrics,
  };
}

export function makeLagMonitorDeps(config: LagMonitorConfig): LagDeps {
  return {
    ledger: makeLedger(config),
    fanout: makeFanout(config),
    clock: offsetClock(config.clockOffsetMs),
    feedShards: config.feedShards,
    targets: config.targets,
  };
}

/** Reconcile's configuration; the CLI's targets may lack a queue (a dry run only counts). */
export type ReconcileWiring = Omit<ReconcileConfig, 'targets'> & {
  readonly targets: readonly (ReplicaTarget & {
    queueUrl?: string | undefined;
    pathPrefix?: string | undefined;
  })[];
};

export interface ReconcileClients {
  readonly dynamodb: DynamoDBClient;
  readonly sqs: SQSClient;
  readonly s3: (region: string) => S3Client;
}

/**
 * Reconcile's ports. `clients` lets a caller that already holds SDK clients (the CLI, with its
 * own credentials and endpoints) use them instead of the default ones.
 */
export function makeReconcileDeps(
  config: ReconcileWiring,
  metrics: Metrics | undefined,
  clients?: ReconcileClients,
): ReconcileDeps & Pick<ExpiryDeps, 'ledger' | 'clock' | 'metrics'> {
  const ledger = clients ? new DynamoLedger(clients.dynamodb, config.table) : makeLedger(config);
  // A target without a queue (the CLI's dry run) is only counted.
  const queued = config.targets.flatMap((t) => (t.queueUrl ? [{ id: t.id, queueUrl: t.queueUrl }] : []));
  const sqs = clients?.sqs ?? new SQSClient({ region: config.region });
  return {
    ledger,
    fanout: new SqsFanout(sqs, queued),
    // No blob store: the expiry sweep decides from the ledger alone, and the role holds nothing on the origin.
    replicas: makeReplicas(config, config.targets, clients?.s3),
    clock: offsetClock(config.clockOffsetMs),
    targets: config.targets,
    ...(metrics ? { metrics } : {}),
  };
}

export function makePendingSweepDeps(config: PendingSweepConfig, metrics: Metrics): PendingSweepDeps {
  return {
    ledger: makeLedger(config),
    origin: new S3OriginVersions(originS3(config), config.originBucket),
    ingest: new SqsIngestEvents(new SQSClient({ region: config.region }), config.ingestQueueUrl, {
      bucket: config.originBucket,
      region: config.region,
    }),
    completions:
      config.completionQueueUrl === undefined
        ? undefined
        : new SqsCompletionQueue(new SQSClient({ region: config.region }), config.completionQueueUrl),
    clock: offsetClock(config.clockOffsetMs),
    metrics,
  };
}
