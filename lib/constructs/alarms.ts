/** One alarm per dead-letter queue: anything there is a version that failed to arrive (invariant 3). */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface DeadLetterQueueWatch {
  /** Short name used in the alarm's id and description (e.g. `ingest`, `target-eu-west-1`). */
  readonly name: string;
  readonly queue: sqs.IQueue;
}

export interface AlarmsProps {
  /** The dead-letter queues to watch. */
  readonly deadLetterQueues: readonly DeadLetterQueueWatch[];
  /**
   * What to do when an alarm fires (e.g. an SNS topic action).
   * @default - no action: the alarm state is visible in CloudWatch only
   */
  readonly alarmActions?: readonly cloudwatch.IAlarmAction[];
}

export class Alarms extends Construct {
  /** The alarms, one per dead-letter queue, in the order given. */
  public readonly alarms: readonly cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    this.alarms = props.deadLetterQueues.map(({ name, queue }) => {
      const alarm = new cloudwatch.Alarm(this, `DeadLetters-${name}`, {
        alarmDescription: `Messages in the ${name} dead-letter queue: they failed 5 times and wait for a fix and a redrive.`,
        metric: queue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(1),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        datapointsToAlarm: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      for (const action of props.alarmActions ?? []) alarm.addAlarmAction(action);
      return alarm;
    });
  }
}
