/**
 * The lost-notification sweep (functions/core/pending-sweep.ts): S3 event notifications are
 * at-least-once and may be lost, and nothing else would ever ingest an upload whose event was.
 * Every `interval` the sweep finds pending uploads whose bytes the origin holds and sends each
 * object version's event to the ingest queue, as S3 would have; the ingest decides the rest. A
 * multipart upload whose client asked to complete it but whose completion never ran gets its
 * completion message sent again to the completion queue.
 *
 * It may read the pending uploads and its own checkpoint row, HEAD and list versions of the
 * origin's blobs, and send to the ingest and completion queues: no delete, no write to the
 * bucket, no commit.
 */
import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { PENDING_SWEEP_WRITE_KEYS } from '../../contracts/ledger-keys.js';
import { LEDGER_ACCESS, useCompletionQueue, useIngestQueue, useLedger, useOrigin } from '../grants.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';

export interface PendingSweepProps {
  readonly ledger: Ledger;
  readonly origin: OriginStore;
  /** The ingest's queue, which the origin's notifications feed. */
  readonly ingestQueue: sqs.IQueue;
  /** The multipart completions' queue, where lost completions are sent again. */
  readonly completionQueue: sqs.IQueue;
  /**
   * How often the sweep runs. A lost event is re-sent 10 minutes (plus the verification time its
   * size allows) after its object was stored, at the first run after that.
   * @default Duration.minutes(15)
   */
  readonly interval?: Duration;
}

export class PendingSweep extends Construct {
  public readonly sweeper: MirrorFunction;
  public readonly schedule: events.Rule;
  /** How often it runs: one metric period per run (monitoring's alarms on what it resends). */
  public readonly interval: Duration;

  constructor(scope: Construct, id: string, props: PendingSweepProps) {
    super(scope, id);
    const interval = props.interval ?? Duration.minutes(15);
    this.interval = interval;
    const fn = new MirrorFunction(this, 'PendingSweep', {
      handler: 'pending-sweep',
      description: 'Sends the S3 event of pending uploads whose bytes are stored but were never ingested',
      timeout: Duration.minutes(5),
      memorySize: 256,
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.pendingSweep, {
      queryPendingUploads: true,
      writesUnder: PENDING_SWEEP_WRITE_KEYS,
    });
    // HEAD (GetObject, GetObjectVersion) and list the versions of blobs; 404 for a version deleted meanwhile.
    useOrigin(fn, props.origin, {
      blobs: ['s3:GetObject', 's3:GetObjectVersion'],
      purpose: 'HEADs each stored version of a pending upload’s blob to send its lost S3 event again',
      headMissingAs404: true,
      listVersions: true,
    });
    useIngestQueue(fn, props.ingestQueue);
    useCompletionQueue(fn, props.completionQueue);
    // A failed run is not retried: the next one covers it (the walk goes on from its checkpoint).
    // A throttled run is dropped once the next is due, not kept by Lambda for 6 hours.
    fn.function.configureAsyncInvoke({
      retryAttempts: 0,
      maxEventAge: Duration.minutes(Math.min(interval.toMinutes(), 6 * 60)),
    });
    this.schedule = new events.Rule(this, 'Schedule', {
      description: `Runs the lost-notification sweep every ${interval.toMinutes()} minutes`,
      schedule: events.Schedule.rate(interval),
      targets: [new eventsTargets.LambdaFunction(fn.function, { retryAttempts: 0 })],
    });
    this.sweeper = fn;
  }
}
