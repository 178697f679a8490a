/** A queue and its own dead-letter queue, both encrypted (SSE-SQS) and TLS-only. */
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
   * How long the main queue keeps a message.
   * @default Duration.days(14)
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
    const common: sqs.QueueProps = {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.DESTROY,
    };
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetter', {
      ...common,
      ...fifoProps,
      retentionPeriod: props.deadLetterRetentionPeriod ?? Duration.days(14),
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      ...common,
      ...fifoProps,
      visibilityTimeout: props.visibilityTimeout,
      retentionPeriod: props.retentionPeriod ?? Duration.days(14),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount ?? 5 },
    });
  }
}
