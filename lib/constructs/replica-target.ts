/**
 * One target of the mirror: its FIFO queue (message group = path, so one path's
 * versions arrive in order) with its own dead-letter queue, and for an S3 target
 * the replicate function that applies each version to the replica bucket.
 * A pull target has the queue only: its on-prem agent reads it.
 */
import { Duration } from 'aws-cdk-lib';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { EVENT_SOURCE_BATCH_SIZE, visibilityTimeoutFor } from '../../contracts/event-sources.js';
import { targetRowKeys } from '../../contracts/ledger-keys.js';
import { REPLICA_MAX_RECEIVES } from '../../contracts/replica-copy.js';
import type { TargetConfig } from '../../contracts/topology.js';
import {
  LEDGER_ACCESS,
  type MirrorSettings,
  type ReplicaBucketRef,
  type TargetBinding,
  useLedger,
  useOrigin,
  useOwnTarget,
  useSettings,
} from '../grants.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';
import { QueueWithDlq } from './queue-with-dlq.js';

export interface ReplicaTargetProps {
  /** The target, as the topology describes it. */
  readonly target: TargetConfig;
  /** The replica bucket of an S3 target (required for kind 's3', ignored for 'pull'). */
  readonly bucket?: ReplicaBucketRef;
  readonly ledger: Ledger;
  readonly origin: OriginStore;
  readonly settings: MirrorSettings;
  /**
   * Timeout of the replicate function. A server-side copy of a 5 GiB object across
   * regions can take minutes; the queue's visibility timeout is 6x this, which is
   * also how long a failed message holds up its path before it is retried. A batch
   * stops 30 s before the timeout and hands the records it did not finish back at
   * once (functions/handlers/fifo-groups.ts): they do not wait this out.
   * @default Duration.minutes(15)
   */
  readonly functionTimeout?: Duration;
  /**
   * Memory of the replicate function, in MiB (copies are server-side: little is needed).
   * @default 512
   */
  readonly functionMemorySize?: number;
  /**
   * Visibility timeout of the queue for a pull target (its agent's processing time, 6x).
   * @default Duration.minutes(15)
   */
  readonly pullVisibilityTimeout?: Duration;
  /**
   * Replicate invocations of this target running at once (the event source's maximum
   * concurrency): catching up after an outage cannot starve the API or the other targets.
   * Lambda's minimum is 2.
   * @default 5
   */
  readonly maxConcurrency?: number;
}

export class ReplicaTarget extends Construct implements TargetBinding {
  public readonly id: string;
  public readonly kind: 's3' | 'pull';
  public readonly pathPrefix?: string;
  public readonly dryRun: boolean;
  public readonly bucket?: ReplicaBucketRef;
  /** The target's FIFO queue (high-throughput mode). */
  public readonly queue: sqs.Queue;
  /** Its FIFO dead-letter queue. */
  public readonly deadLetterQueue: sqs.Queue;
  /** The replicate function (S3 targets only). */
  public readonly replicator?: MirrorFunction;

  constructor(scope: Construct, id: string, props: ReplicaTargetProps) {
    super(scope, id);
    const { target } = props;
    this.id = target.id;
    this.kind = target.kind;
    this.pathPrefix = target.pathPrefix;
    this.dryRun = target.dryRun;

    const timeout = props.functionTimeout ?? Duration.minutes(15);
    const queues = new QueueWithDlq(this, 'Queue', {
      fifo: true,
      // A large copy is continued over many invocations, each a receive (contracts/replica-copy.ts).
      ...(target.kind === 's3' ? { maxReceiveCount: REPLICA_MAX_RECEIVES } : {}),
      visibilityTimeout:
        target.kind === 's3'
          ? Duration.seconds(visibilityTimeoutFor(timeout.toSeconds()))
          : (props.pullVisibilityTimeout ?? Duration.minutes(15)),
    });
    this.queue = queues.queue;
    this.deadLetterQueue = queues.deadLetterQueue;

    if (target.kind === 's3') {
      const bucket = props.bucket;
      if (!bucket) throw new Error(`target "${target.id}": an S3 target needs its replica bucket`);
      this.bucket = bucket;
      const fn = new MirrorFunction(this, 'Replicate', {
        handler: 'replicate',
        description: `Applies each committed version to the replica bucket of target ${target.id} (${bucket.region})`,
        timeout,
        memorySize: props.functionMemorySize ?? 512,
      });
      // Its writes only in its own target's rows: it cannot rewrite heads, pins or another target's rows.
      useLedger(fn, props.ledger, LEDGER_ACCESS.replicate, { writesUnder: targetRowKeys(this.id) });
      useOrigin(fn, props.origin, {
        blobs: ['s3:GetObject', 's3:GetObjectVersion'],
        purpose: 'copies the verified version of a blob to its replica bucket (the copy source)',
      });
      useOwnTarget(fn, {
        id: this.id,
        kind: this.kind,
        queue: this.queue,
        pathPrefix: this.pathPrefix,
        bucket,
        dryRun: this.dryRun,
      });
      useSettings(fn, props.settings);
      // Grants this function sqs:ReceiveMessage/DeleteMessage/ChangeMessageVisibility on its own queue only.
      fn.function.addEventSource(
        new SqsEventSource(this.queue, {
          batchSize: EVENT_SOURCE_BATCH_SIZE.replicate,
          reportBatchItemFailures: true,
          maxConcurrency: props.maxConcurrency ?? 5,
        }),
      );
      this.replicator = fn;
    }
  }
}
