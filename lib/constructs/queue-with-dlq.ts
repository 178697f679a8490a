/**
 * A queue and its own dead-letter queue, both encrypted (SSE-SQS), TLS-only, and kept when the stack
 * is deleted or the queue replaced (their messages with them; docs/deploy.md). The queue may be no
 * other queue's dead-letter queue.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface QueueWithDlqProps {
  /** How long a received message stays hidden: at least 6x the consumer's timeout (Lambda's advice). */
  readonly visibilityTimeout: Duration;
  /**
   * FIFO queues (`.fifo`) with high-throughput mode: deduplication and throughput
   * per message group, and no content-based deduplication (producers set dedup ids).
   * @default false
   */
  readonly fifo?: boolean;
  /**
   * Receives before a message moves to the dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount?: number;
  /**
   * How long the main queue keeps a message. A standard queue's dead-letter queue counts a message's
   * age from its first enqueue (a FIFO one from its move), so a standard queue must keep messages
   * for less time than its dead-letter queue: time spent here is taken from the time left there.
   * @default Duration.days(7) for a standard queue, Duration.days(14) for a FIFO queue
   */
  readonly retentionPeriod?: Duration;
  /**
   * How long the dead-letter queue keeps a message (SQS's maximum: time to notice and redrive).
   * @default Duration.days(14)
   */
  readonly deadLetterRetentionPeriod?: Duration;
}

export class QueueWithDlq extends Construct {
  /** The queue consumers read. */
  public readonly queue: sqs.Queue;
  /** Where messages go after `maxReceiveCount` failed receives. */
  public readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueueWithDlqProps) {
    super(scope, id);
    const fifo = props.fifo ?? false;
    const fifoProps: Partial<sqs.QueueProps> = fifo
      ? {
          fifo: true,
          contentBasedDeduplication: false,
          deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
          fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
        }
      : {};
    const retention = props.retentionPeriod ?? Duration.days(fifo ? 14 : 7);
    const deadLetterRetention = props.deadLetterRetentionPeriod ?? Duration.days(14);
    if (!fifo && deadLetterRetention.toSeconds() <= retention.toSeconds()) {
      throw new Error(
        `${this.node.path}: a standard queue's dead-letter queue must keep messages longer than the queue ` +
          `(${deadLetterRetention.toHumanString()} is not longer than ${retention.toHumanString()}): SQS ages a ` +
          'dead letter from its first enqueue.',
      );
    }
    const common: sqs.QueueProps = {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Like the buckets and the table: in-flight changes, failures waiting for a redrive, and the
      // queue URL a pull target's agent is configured with outlive a replacement or a deleted stack.
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    };
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetter', {
      ...common,
      ...fifoProps,
      retentionPeriod: deadLetterRetention,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      ...common,
      ...fifoProps,
      visibilityTimeout: props.visibilityTimeout,
      retentionPeriod: retention,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount ?? 5 },
      // SQS asks nothing of a queue another names in its RedrivePolicy: without this, anyone in the
      // account who may create a queue could make this one its DLQ and have SQS move messages into it,
      // past every SendMessage grant. A redrive back into it (StartMessageMoveTask) is not concerned.
      // Its own DLQ cannot be limited to it the same way (byQueue would name this queue's ARN, which
      // names the DLQ: a cycle; docs/deploy.md, "Settings worth knowing").
      redriveAllowPolicy: { redrivePermission: sqs.RedrivePermission.DENY_ALL },
    });
  }
}
