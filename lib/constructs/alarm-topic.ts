/**
 * The SNS topic the mirror's alarms notify: encrypted with a key of its own,
 * TLS-only, publishable only by this account's CloudWatch alarms whose names
 * start with the mirror's prefix, with an optional email subscription.
 *
 * Why a customer-managed key: CloudWatch alarms publish to an encrypted topic
 * only if the key's policy lets `cloudwatch.amazonaws.com` use it, and the
 * AWS-managed `aws/sns` key's policy cannot be changed (alarms would deploy
 * and silently notify nobody).
 */
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';

/** The actions an SNS topic policy may name (SNS's access policy language). */
const TOPIC_ACTIONS = [
  'sns:Publish',
  'sns:Subscribe',
  'sns:Receive',
  'sns:SetTopicAttributes',
  'sns:GetTopicAttributes',
  'sns:AddPermission',
  'sns:RemovePermission',
  'sns:DeleteTopic',
  'sns:ListSubscriptionsByTopic',
];

export interface AlarmTopicProps {
  /**
   * Only alarms whose names start with this may publish (the `aws:SourceArn`
   * condition of the topic policy): give every alarm that notifies the topic a
   * name with this prefix.
   */
  readonly alarmNamePrefix: string;
  /**
   * An email address subscribed to the topic (it must confirm the subscription).
   * @default - no subscription
   */
  readonly email?: string;
  /**
   * The topic's display name (the sender name of email notifications).
   * @default 'Media Mirror alarms'
   */
  readonly displayName?: string;
}

export class AlarmTopic extends Construct {
  /** The topic: KMS-encrypted with `key`, TLS-only. */
  public readonly topic: sns.Topic;
  /** Its key (rotated yearly). It encrypts this topic only. */
  public readonly key: kms.Key;
  /** The alarm action that notifies the topic. */
  public readonly action: cloudwatch.IAlarmAction;

  constructor(scope: Construct, id: string, props: AlarmTopicProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const cloudWatch = new iam.ServicePrincipal('cloudwatch.amazonaws.com');

    this.key = new kms.Key(this, 'Key', {
      description: `Encrypts the alarm topic of ${stack.stackName}`,
      enableKeyRotation: true,
      // It protects notifications in flight only: nothing to decrypt once the stack is gone.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    // Both the key and the topic serve only this account's alarms named with the mirror's
    // prefix: CloudWatch passes the alarm as the source of its calls to SNS and to KMS, so
    // no other alarm (of this account or another) can have CloudWatch use them (confused deputy).
    // CloudWatch's KMS calls carry both keys (AWS's Modern Data Architecture Accelerator
    // conditions its alarm key grant the same way; EventBridge's would not, so this is not a pattern
    // for other services' keys).
    const mirrorAlarmsOnly = {
      StringEquals: { 'aws:SourceAccount': stack.account },
      ArnLike: {
        'aws:SourceArn': stack.formatArn({
          service: 'cloudwatch',
          resource: 'alarm',
          resourceName: `${props.alarmNamePrefix}*`,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      },
    };
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsEncryptForTheTopic',
        principals: [cloudWatch],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: mirrorAlarmsOnly,
      }),
    );

    this.topic = new sns.Topic(this, 'Topic', {
      displayName: props.displayName ?? 'Media Mirror alarms',
      masterKey: this.key,
      enforceSSL: true,
    });
    // A topic policy replaces SNS's default one, which is what lets alarms publish otherwise.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'MirrorAlarmsPublish',
        principals: [cloudWatch],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: mirrorAlarmsOnly,
      }),
    );
    // `enforceSSL` denies only sns:Publish without TLS; a subscription, a policy or attribute change
    // over plain HTTP would pass. Every action of a topic's policy is refused without it.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'EveryRequestThroughTlsOnly',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: TOPIC_ACTIONS,
        resources: [this.topic.topicArn],
        conditions: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
    if (props.email !== undefined) this.topic.addSubscription(new EmailSubscription(props.email));
    this.action = new SnsAction(this.topic);
  }
}
