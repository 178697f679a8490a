/**
 * The ingest: S3 ObjectCreated events for `blobs/` land on a standard queue; the
 * ingest function verifies each blob's bytes, commits the uploads waiting for
 * it, and fans each new version out to the targets' queues.
 */
import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { EVENT_SOURCE_BATCH_SIZE, visibilityTimeoutFor } from '../../contracts/event-sources.js';
import { DELETES_UNDER, INGEST_WRITE_KEYS } from '../../contracts/ledger-keys.js';
import {
  LEDGER_ACCESS,
  type MirrorSettings,
  type TargetBinding,
  useIngestQueue,
  useLedger,
  useOrigin,
  useSettings,
  useTargets,
} from '../grants.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';
import { QueueWithDlq } from './queue-with-dlq.js';

export interface IngestPipelineProps {
  readonly ledger: Ledger;
  /** The origin bucket: its blob events feed this pipeline. */
  readonly origin: OriginStore;
  /** Every target: the ingest fans out to all of them. */
  readonly targets: readonly TargetBinding[];
  readonly settings: MirrorSettings;
  /**
   * Ingest function timeout: bounds what one invocation hashes; a larger object goes on in
   * continuations (docs/scale.md).
   * @default Duration.minutes(15)
   */
  readonly timeout?: Duration;
  /**
   * Ingest function memory, in MiB (network bandwidth and CPU for hashing scale with it).
   * @default 1024
   */
  readonly memorySize?: number;
  /**
   * Messages per invocation.
   * @default EVENT_SOURCE_BATCH_SIZE.ingest (10; the local stack's mapping takes it too)
   */
  readonly batchSize?: number;
  /**
   * Ingest invocations running at once (the event source's maximum concurrency): a bulk import
   * then cannot take the account's concurrency from the API. Lambda's minimum is 2.
   * @default 10
   */
  readonly maxConcurrency?: number;
}

export class IngestPipeline extends Construct {
  /** Standard queue fed by the origin bucket's notifications. */
  public readonly queue: sqs.Queue;
  /** Its dead-letter queue (after 5 receives). */
  public readonly deadLetterQueue: sqs.Queue;
  /** The ingest function. */
  public readonly ingest: MirrorFunction;

  constructor(scope: Construct, id: string, props: IngestPipelineProps) {
    super(scope, id);
    const timeout = props.timeout ?? Duration.minutes(15);
    const queues = new QueueWithDlq(this, 'Queue', {
      visibilityTimeout: Duration.seconds(visibilityTimeoutFor(timeout.toSeconds())),
    });
    this.queue = queues.queue;
    this.deadLetterQueue = queues.deadLetterQueue;
    props.origin.notifyBlobCreated(this.queue);

    const fn = new MirrorFunction(this, 'Ingest', {
      handler: 'ingest',
      description: 'Verifies uploaded blobs, commits their versions and fans them out to the targets',
      timeout,
      memorySize: props.memorySize ?? 1024,
      // A verification longer than one invocation goes on in a message to this function's own
      // queue, carrying its progress: a chain bounded by the object's size (5 TiB: about 70 links,
      // docs/scale.md). Lambda's loop detection would stop it after about 16 links, so at about
      // 0.5 to 1.2 TB, and park the upload in the DLQ (AWS review 6, M1).
      recursiveLoop: lambda.RecursiveLoop.ALLOW,
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.ingest, {
      queryLiveFiles: true,
      writesUnder: INGEST_WRITE_KEYS,
      actionsUnder: { 'dynamodb:DeleteItem': DELETES_UNDER.ingest },
    });
    useOrigin(fn, props.origin, {
      // AbortMultipartUpload: an upload found expired has its multipart upload aborted.
      // DeleteObjectVersion, never DeleteObject: a version goes by its id; a delete without one
      // would write a delete marker over the verified version (the bucket policy denies it too).
      blobs: ['s3:GetObject', 's3:GetObjectVersion', 's3:DeleteObjectVersion', 's3:AbortMultipartUpload'],
      purpose:
        'reads each stored version to verify its SHA-256, deletes by version id one that does not match or duplicates the verified one, and aborts the multipart upload of an expired claim',
      headMissingAs404: true,
    });
    useTargets(fn, props.targets, { sendMessage: true });
    useSettings(fn, props.settings);
    // A verification that runs out of time goes on in a continuation sent to this same queue.
    useIngestQueue(fn, this.queue);
    fn.function.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: props.batchSize ?? EVENT_SOURCE_BATCH_SIZE.ingest,
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency ?? 10,
      }),
    );
    this.ingest = fn;
  }
}
