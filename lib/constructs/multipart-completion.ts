/**
 * Multipart completion in the background: `POST /v1/uploads/{id}/complete` checks the recorded
 * parts, sends a message to this construct's standard queue and answers 202; the complete-multipart
 * function runs S3's CompleteMultipartUpload (core/completion.ts), which for thousands of parts can
 * outlast the API's 29 s. S3 authorizes CompleteMultipartUpload as s3:PutObject, so it runs in a
 * function of its own: the ingest, which verifies what S3 assembles, keeps no write on the bytes.
 */
import { Duration } from 'aws-cdk-lib';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { EVENT_SOURCE_BATCH_SIZE, visibilityTimeoutFor } from '../../contracts/event-sources.js';
import { COMPLETION_WRITE_KEYS, DELETES_UNDER, UPDATES_UNDER } from '../../contracts/ledger-keys.js';
import { LEDGER_ACCESS, useLedger, useOrigin } from '../grants.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';
import { QueueWithDlq } from './queue-with-dlq.js';

export interface MultipartCompletionProps {
  readonly ledger: Ledger;
  /** The origin bucket: its blobs are the multipart uploads this completes. */
  readonly origin: OriginStore;
  /**
   * Function timeout: one CompleteMultipartUpload of up to 10,000 parts, which S3 may take
   * minutes to answer.
   * @default Duration.minutes(5)
   */
  readonly timeout?: Duration;
  /**
   * Messages per invocation: one, so that a slow completion never holds back or times out another.
   * @default EVENT_SOURCE_BATCH_SIZE.completion (1; the local stack's mapping takes it too)
   */
  readonly batchSize?: number;
  /**
   * Invocations at once (the event source's maximum concurrency; Lambda's minimum is 2): a burst
   * of completions cannot take the account's concurrency from the API.
   * @default 5
   */
  readonly maxConcurrency?: number;
}

export class MultipartCompletion extends Construct {
  /** Standard queue the API sends completion messages to. */
  public readonly queue: sqs.Queue;
  /** Its dead-letter queue (after 5 receives). */
  public readonly deadLetterQueue: sqs.Queue;
  /** The complete-multipart function. */
  public readonly completer: MirrorFunction;

  constructor(scope: Construct, id: string, props: MultipartCompletionProps) {
    super(scope, id);
    const timeout = props.timeout ?? Duration.minutes(5);
    const queues = new QueueWithDlq(this, 'Queue', {
      visibilityTimeout: Duration.seconds(visibilityTimeoutFor(timeout.toSeconds())),
    });
    this.queue = queues.queue;
    this.deadLetterQueue = queues.deadLetterQueue;

    const fn = new MirrorFunction(this, 'CompleteMultipart', {
      handler: 'complete-multipart',
      description: 'Completes multipart uploads in S3 from the parts the API recorded',
      timeout,
      memorySize: 256,
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.completeMultipart, {
      writesUnder: COMPLETION_WRITE_KEYS,
      // Its pointers it only deletes: an update would let it rewrite a pending upload's claim.
      actionsUnder: {
        'dynamodb:DeleteItem': DELETES_UNDER.completeMultipart,
        'dynamodb:UpdateItem': UPDATES_UNDER.completeMultipart,
      },
    });
    useOrigin(fn, props.origin, {
      // PutObject: CompleteMultipartUpload; AbortMultipartUpload: parts S3 refuses; GetObject: HEAD
      // of the blob, to tell "S3 completed it already" from "its parts expired" after NoSuchUpload.
      blobs: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject'],
      purpose:
        'completes the multipart uploads the API recorded (CompleteMultipartUpload is PutObject), aborts one S3 refuses, and HEADs the blob',
      headMissingAs404: true,
    });
    fn.function.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: props.batchSize ?? EVENT_SOURCE_BATCH_SIZE.completion,
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency ?? 5,
      }),
    );
    this.completer = fn;
  }
}
