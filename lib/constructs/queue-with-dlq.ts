/**
 * A queue and its own dead-letter queue, both encrypted (SSE-SQS), TLS-only, and kept when the stack
 * is deleted or the queue replaced (their messages with them; docs/deploy.md). The queue may be no
 * other queue's dead-letter queue, and the dead-letter queue no other queue's but this one's.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsCustomResource, AwsCustomResourcePolicy, PhysicalResourceId } from 'aws-cdk-lib/custom-resources';
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
      redriveAllowPolicy: { redrivePermission: sqs.RedrivePermission.DENY_ALL },
    });
    this.acceptOnlyOwnSource();
  }

  /**
   * The dead-letter queue takes dead letters from this queue only (`byQueue`): a foreign queue naming
   * it would trip its alarm, and reach the pipeline through a redrive to this queue (a move task with
   * a destination, or the CLI's move by hand against an SQS endpoint). Its own properties cannot say
   * so: `byQueue` names this queue's ARN, and this queue's RedrivePolicy names the DLQ's, a cycle
   * CloudFormation refuses (fixed names would break it but replace every deployed queue). So an SDK
   * call sets it once both exist, and again whenever either ARN changes (a replaced queue).
   *
   * The named source queue may still take its dead letters back: `sourceQueueArns` are "the source
   * queues that can specify this queue as the dead-letter queue and redrive messages" (SQS API
   * Reference, SetQueueAttributes, `RedriveAllowPolicy`), and StartMessageMoveTask without a
   * destination sends each message to the queue it came from (API Reference, StartMessageMoveTask).
   *
   * Nothing on delete: the queues are retained with their messages, and a retained DLQ should keep
   * refusing foreign queues. Deleting the call must not undo it either: CloudFormation deletes the old
   * custom resource after creating its replacement, which would reopen the DLQ it had just closed.
   */
  private acceptOnlyOwnSource(): void {
    const provider = SetQueueAttributesProvider.of(this);
    const dlqArn = this.deadLetterQueue.queueArn;
    const call = {
      service: 'SQS',
      action: 'setQueueAttributes',
      parameters: {
        QueueUrl: this.deadLetterQueue.queueUrl,
        Attributes: {
          RedriveAllowPolicy: Stack.of(this).toJsonString({
            redrivePermission: 'byQueue',
            sourceQueueArns: [this.queue.queueArn],
          }),
        },
      },
      physicalResourceId: PhysicalResourceId.of(dlqArn),
    };
    new AwsCustomResource(this, 'DeadLetterSourceOnly', {
      resourceType: 'Custom::DeadLetterRedriveAllowPolicy',
      onCreate: call,
      onUpdate: call,
      policy: AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ actions: ['sqs:SetQueueAttributes'], resources: [dlqArn] }),
      ]),
      // The SDK in Lambda's runtime has SetQueueAttributes: no npm install from the function at deploy time.
      installLatestAwsSdk: false,
      role: provider.role,
      logGroup: provider.logGroup,
    });
  }
}

/**
 * The role and log group of the stack's one AwsCustomResource function (a singleton: every
 * `AwsCustomResource` of a stack runs in the same function, which takes the role and log group the
 * first one names). The role carries no managed policy (AWSLambdaBasicExecutionRole would write to
 * every log group): its own log group, and each call's own policy, attached by `AwsCustomResource`.
 */
class SetQueueAttributesProvider extends Construct {
  static of(scope: Construct): SetQueueAttributesProvider {
    const stack = Stack.of(scope);
    const id = 'SetQueueAttributesProvider';
    return (
      (stack.node.tryFindChild(id) as SetQueueAttributesProvider | undefined) ??
      new SetQueueAttributesProvider(stack, id)
    );
  }

  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  private constructor(scope: Construct, id: string) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description:
        "Execution role of the stack's AwsCustomResource function: sets each dead-letter queue's RedriveAllowPolicy",
    });
    this.logGroup.grantWrite(this.role);
  }
}
