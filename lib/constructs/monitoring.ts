/**
 * Operations: the numbers that say whether replication works, the alarms on
 * them, where the alarms notify, and a dashboard.
 *
 * - The lag monitor (every minute) computes, per target from the ledger, the
 *   replication lag, the backlog and (pull targets) the agent's heartbeat age,
 *   and emits them as metrics: a dead agent or a stuck queue still shows lag
 *   growing, because nothing at the target has to report it.
 * - Reconcile (every `reconcileInterval`, or invoked on demand) re-sends what a
 *   target is missing or holds altered.
 * - Alarms per target (lag, dead letters, agent heartbeat), for the ingest
 *   (dead letters, rejections, failed invocations, the age of its oldest queued
 *   event), for uploads left pending past their expiry, for reconcile failing,
 *   and for the pending sweep resending lost S3 notifications or multipart
 *   completions run after run; all notify the alarm topic when there is one.
 */
import { Annotations, Duration, Stack, Token } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  DELETES_UNDER,
  LAG_MONITOR_PUTS_UNDER,
  LAG_MONITOR_WRITE_KEYS,
  RECONCILE_WRITE_KEYS,
  UPDATES_UNDER,
} from '../../contracts/ledger-keys.js';
import type { Topology } from '../../contracts/topology.js';
import {
  LEDGER_ACCESS,
  type MirrorSettings,
  nameOriginWithoutAccess,
  type TargetBinding,
  useLedger,
  useSettings,
  useTargets,
} from '../grants.js';
import { serviceMetric, targetMetric } from '../metrics.js';
import { AlarmTopic } from './alarm-topic.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';

/** A target as monitoring sees it: its binding and its dead-letter queue. */
export interface MonitoredTarget extends TargetBinding {
  readonly deadLetterQueue: sqs.IQueue;
}

/** The thresholds and schedule of monitoring (the topology's `monitoring` section). */
export interface MonitoringOptions {
  /**
   * Alarm when a target's replication lag (maximum over a minute) is above this...
   * @default Duration.seconds(900) (S3 Replication Time Control's 15 minutes)
   */
  readonly lagThreshold?: Duration;
  /**
   * ...in this many consecutive one-minute periods.
   * @default 3
   */
  readonly lagEvaluationPeriods?: number;
  /**
   * Alarm when a pull target's agent has not reported for longer than this.
   * @default Duration.seconds(300)
   */
  readonly heartbeatThreshold?: Duration;
  /**
   * Alarm when more uploads than this are rejected at ingest within 5 minutes.
   * @default 0 (any rejection)
   */
  readonly rejectionThreshold?: number;
  /**
   * Alarm when more ingest invocations than this fail within 5 minutes (Lambda `Errors`: a
   * timeout, a crash, or a batch whose every message failed; one failed message among others is
   * retried alone and ends in the dead-letter queue, which alarms on its own).
   * @default 0 (any failed invocation)
   */
  readonly ingestErrorThreshold?: number;
  /**
   * Alarm when the oldest event in the ingest queue is older than this (maximum over 5 minutes):
   * events wait for a free ingest (its concurrency is capped) or failed and wait out the queue's
   * visibility timeout before their retry.
   * @default Duration.minutes(30) (twice the ingest's 15-minute timeout)
   */
  readonly ingestQueueAgeThreshold?: Duration;
  /**
   * Alarm when reconcile's expiry sweep finds more pending uploads than this past their expiry
   * (`UploadsPendingPastExpiry`): bytes that never came, or came and were never committed.
   * @default 0 (any)
   */
  readonly pendingPastExpiryThreshold?: number;
  /**
   * How often reconcile runs on its own (whole minutes, at most a day).
   * @default Duration.minutes(60)
   */
  readonly reconcileInterval?: Duration;
  /**
   * Create the alarm topic, subscribe this address to it, and make every alarm notify it.
   * @default - no topic: alarms are visible in CloudWatch and on the dashboard only
   */
  readonly alarmEmail?: string;
  /**
   * An existing topic every alarm also notifies, on alarm and on recovery (a pager, AWS Chatbot).
   * Its policy must let CloudWatch publish to it, and its key, if any, let CloudWatch use it.
   * @default - none
   */
  readonly alarmTopicArn?: string;
}

/** The topology's `monitoring` section as construct options. */
export function monitoringOptionsFromTopology(topology: Topology): MonitoringOptions {
  const m = topology.monitoring;
  return {
    lagThreshold: Duration.seconds(m.lagAlarmSeconds),
    lagEvaluationPeriods: m.lagAlarmPeriods,
    heartbeatThreshold: Duration.seconds(m.heartbeatAlarmSeconds),
    rejectionThreshold: m.rejectionAlarmThreshold,
    reconcileInterval: Duration.minutes(m.reconcileEveryMinutes),
    ...(m.alarmEmail === undefined ? {} : { alarmEmail: m.alarmEmail }),
    ...(m.alarmTopicArn === undefined ? {} : { alarmTopicArn: m.alarmTopicArn }),
  };
}

export interface MonitoringProps extends MonitoringOptions {
  readonly ledger: Ledger;
  /** Named to the functions (their runtime configuration requires it); neither may touch it. */
  readonly origin: OriginStore;
  /** Every target, in topology order. */
  readonly targets: readonly MonitoredTarget[];
  /** The ingest's queue (backlog, age of its oldest event), dead-letter queue and function (alarms). */
  readonly ingest: {
    readonly queue: sqs.IQueue;
    readonly deadLetterQueue: sqs.IQueue;
    readonly ingest: { readonly function: lambda.IFunction };
  };
  /**
   * The upload API and its function: alarms on server errors (5xx) and on the function throttled
   * (its reserved executions all busy), and a dashboard row.
   * @default - no API alarm or row
   */
  readonly api?: { readonly httpApi: apigw.IHttpApi; readonly function: lambda.IFunction };
  /**
   * The multipart completion's dead-letter queue (alarm on any message in it).
   * @default - no such alarm
   */
  readonly completionDeadLetterQueue?: sqs.IQueue;
  /**
   * The pending sweep (lost S3 notifications and multipart completions resent): its function and
   * how often it runs, one metric period per run.
   * @default - no sweep row on the dashboard, no alarm on what it resends
   */
  readonly pendingSweep?: { readonly function: lambda.IFunction; readonly interval: Duration };
  readonly settings: MirrorSettings;
  /**
   * Prefix of every alarm's name (`<prefix>-target-<id>-lag`, …) and the dashboard's name.
   * Only alarms with this prefix may publish to the alarm topic.
   * @default - the stack name
   */
  readonly namePrefix?: string;
}

/** The alarms of one target. */
export interface TargetAlarms {
  /** `ReplicationLagSeconds` above the threshold (missing data breaches: see below). */
  readonly lag: cloudwatch.Alarm;
  /** Any message in the target's dead-letter queue. */
  readonly deadLetters: cloudwatch.Alarm;
  /** Pull targets: the agent's heartbeat too old. */
  readonly heartbeat?: cloudwatch.Alarm;
}

const ONE_MINUTE = Duration.minutes(1);
const FIVE_MINUTES = Duration.minutes(5);

/**
 * The sweep's resend alarms fire when it resent something in this many of its last
 * `SWEEP_RUNS_WATCHED` runs. A lost event is resent once, at the first run past its grace, so a
 * one-off loss (S3 notifications are at-least-once, rarely lost) or a short burst shows in one or
 * two runs and repairs itself; three runs out of four (45 minutes to an hour at the default
 * 15-minute interval) means events go missing as a matter of course (docs/deploy.md).
 */
const SWEEP_RUNS_RESENDING = 3;
const SWEEP_RUNS_WATCHED = 4;

export class Monitoring extends Construct {
  /** The lag monitor function, run every minute. */
  public readonly lagMonitor: MirrorFunction;
  /** The reconcile function, run every `reconcileInterval` and invoked on demand. */
  public readonly reconciler: MirrorFunction;
  /** The EventBridge rules that run them. */
  public readonly lagMonitorSchedule: events.Rule;
  public readonly reconcileSchedule: events.Rule;
  /** Per target id, in topology order. */
  public readonly targetAlarms: ReadonlyMap<string, TargetAlarms>;
  /** Any message in the ingest dead-letter queue. */
  public readonly ingestDeadLetterAlarm: cloudwatch.Alarm;
  /** Any message in the multipart completion's dead-letter queue (with `completionDeadLetterQueue`). */
  public readonly completionDeadLetterAlarm?: cloudwatch.Alarm;
  /** `IngestRejected` (sum over 5 minutes) above the threshold. */
  public readonly ingestRejectionAlarm: cloudwatch.Alarm;
  /** Failed ingest invocations (Lambda `Errors`, sum over 5 minutes) above the threshold. */
  public readonly ingestErrorAlarm: cloudwatch.Alarm;
  /** The ingest queue's oldest event older than the threshold. */
  public readonly ingestQueueAgeAlarm: cloudwatch.Alarm;
  /** Reconcile's sweep found more pending uploads past their expiry than the threshold. */
  public readonly pendingPastExpiryAlarm: cloudwatch.Alarm;
  /** A reconcile run failed (Lambda `Errors`). */
  public readonly reconcileErrorAlarm: cloudwatch.Alarm;
  /** Reconcile did not run in its last 2 intervals (no Lambda `Invocations`: throttled and dropped, schedule off). */
  public readonly reconcileNotRunningAlarm: cloudwatch.Alarm;
  /** The API answered 5xx within 5 minutes (with `api`). */
  public readonly apiServerErrorAlarm?: cloudwatch.Alarm;
  /** The api function was throttled within 5 minutes: its reserved executions were all busy (with `api`). */
  public readonly apiThrottleAlarm?: cloudwatch.Alarm;
  /** The pending sweep failed in 2 of its last 3 runs (with `pendingSweep`). */
  public readonly pendingSweepErrorAlarm?: cloudwatch.Alarm;
  /** The pending sweep did not run in 2 of its last 3 intervals (with `pendingSweep`). */
  public readonly pendingSweepNotRunningAlarm?: cloudwatch.Alarm;
  /** The pending sweep resent lost S3 notifications in 3 of its last 4 runs (with `pendingSweep`). */
  public readonly lostNotificationsAlarm?: cloudwatch.Alarm;
  /** The pending sweep resent lost multipart completions in 3 of its last 4 runs (with `pendingSweep`). */
  public readonly lostCompletionsAlarm?: cloudwatch.Alarm;
  /** Every alarm above. */
  public readonly alarms: readonly cloudwatch.Alarm[];
  /** The alarm topic and its key (only with `alarmEmail`). */
  public readonly alarmTopic?: AlarmTopic;
  /** The topic every alarm notifies (only with `alarmEmail`). */
  public readonly topic?: sns.ITopic;
  /** Lag per target, backlog, failures, heartbeats, throughput, alarm states. */
  public readonly dashboard: cloudwatch.Dashboard;

  private readonly namePrefix: string;
  private readonly allAlarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const limits = limitsOf(props);
    this.namePrefix = props.namePrefix ?? Stack.of(this).stackName;

    // Functions and schedules.
    const lag = this.createLagMonitor(props);
    this.lagMonitor = lag.fn;
    this.lagMonitorSchedule = lag.schedule;
    const reconcile = this.createReconciler(props, limits.reconcileInterval);
    this.reconciler = reconcile.fn;
    this.reconcileSchedule = reconcile.schedule;

    // Alarms.
    this.targetAlarms = new Map(props.targets.map((t) => [t.id, this.createTargetAlarms(t, limits)]));
    this.ingestDeadLetterAlarm = this.deadLetterAlarm(
      'DeadLetters-ingest',
      'ingest-dead-letters',
      'ingest',
      props.ingest.deadLetterQueue,
    );
    if (props.completionDeadLetterQueue) {
      this.completionDeadLetterAlarm = this.deadLetterAlarm(
        'DeadLetters-completion',
        'completion-dead-letters',
        'multipart completion',
        props.completionDeadLetterQueue,
      );
    }
    this.ingestRejectionAlarm = this.alarm('IngestRejections', 'ingest-rejections', {
      alarmDescription: `More than ${limits.rejectionThreshold} upload(s) rejected at ingest within 5 minutes (bytes not matching the declared SHA-256 or size).`,
      metric: serviceMetric('IngestRejected', { statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES }),
      threshold: limits.rejectionThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // The ingest emits the metric only when it rejects something.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.ingestErrorAlarm = this.createIngestErrorAlarm(props, limits);
    this.ingestQueueAgeAlarm = this.createIngestQueueAgeAlarm(props, limits);
    this.pendingPastExpiryAlarm = this.createPendingPastExpiryAlarm(limits);
    this.reconcileErrorAlarm = this.alarm('ReconcileErrors', 'reconcile-errors', {
      alarmDescription:
        'A reconcile run failed: drift (objects missing or altered at a target) is not repaired until one succeeds.',
      // One period per run, so the alarm holds until the next run succeeds.
      metric: this.reconciler.function.metricErrors({
        statistic: cloudwatch.Stats.SUM,
        period: limits.reconcileInterval,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.reconcileNotRunningAlarm = this.notRunningAlarm(
      'ReconcileNotRunning',
      'reconcile-not-running',
      'Reconcile',
      this.reconciler.function,
      limits.reconcileInterval,
      { evaluationPeriods: 2, datapointsToAlarm: 2 },
      'drift (objects missing or altered at a target) and uploads pending past their expiry are not looked for',
    );
    if (props.api) {
      const api = this.createApiAlarms(props.api);
      this.apiServerErrorAlarm = api.serverErrors;
      this.apiThrottleAlarm = api.throttles;
    }
    if (props.pendingSweep) {
      const sweep = this.createPendingSweepAlarms(props.pendingSweep);
      this.pendingSweepErrorAlarm = sweep.errors;
      this.pendingSweepNotRunningAlarm = sweep.notRunning;
      this.lostNotificationsAlarm = sweep.lostNotifications;
      this.lostCompletionsAlarm = sweep.lostCompletions;
    }
    this.alarms = this.allAlarms;

    if (props.alarmEmail !== undefined) {
      this.alarmTopic = this.createAlarmTopic(props.alarmEmail);
      this.topic = this.alarmTopic.topic;
    }
    if (props.alarmTopicArn !== undefined) {
      this.notify(new SnsAction(sns.Topic.fromTopicArn(this, 'ExistingAlarmTopic', props.alarmTopicArn)));
    } else if (props.alarmEmail === undefined) {
      Annotations.of(this).addWarningV2(
        'mirror:noAlarmDestination',
        'No alarm notifies anyone: set monitoring.alarmEmail (a topic of its own) or monitoring.alarmTopicArn ' +
          '(an existing topic) in the topology; until then alarms show in CloudWatch and on the dashboard only.',
      );
    }

    this.dashboard = this.buildDashboard(props, limits);
  }

  /** The pending sweep's alarms: failing, not running, and resending lost events run after run. */
  private createPendingSweepAlarms(pendingSweep: NonNullable<MonitoringProps['pendingSweep']>): {
    errors: cloudwatch.Alarm;
    notRunning: cloudwatch.Alarm;
    lostNotifications: cloudwatch.Alarm;
    lostCompletions: cloudwatch.Alarm;
  } {
    const interval = pendingSweep.interval;
    const errors = this.alarm('PendingSweepErrors', 'pending-sweep-errors', {
      alarmDescription:
        'The pending sweep failed in 2 of its last 3 runs: lost S3 notifications and multipart completions are not ' +
        'resent until it runs again (its resend alarms stay silent while it fails: it emits nothing).',
      // One period per run; one failed run is retried by the next.
      metric: pendingSweep.function.metricErrors({
        statistic: cloudwatch.Stats.SUM,
        period: interval,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const notRunning = this.notRunningAlarm(
      'PendingSweepNotRunning',
      'pending-sweep-not-running',
      'The pending sweep',
      pendingSweep.function,
      interval,
      { evaluationPeriods: 3, datapointsToAlarm: 2 },
      'lost S3 notifications and multipart completions are not resent, and its resend alarms stay silent',
    );
    const lostNotifications = this.sweepResendAlarm(
      'LostNotificationsResent',
      'lost-notifications-resent',
      interval,
      'S3 event notifications of stored uploads never reached the ingest queue (the bucket notification, ' +
        'the queue policy or the queue itself is broken, or the ingest lags its grace).',
    );
    const lostCompletions = this.sweepResendAlarm(
      'LostCompletionsResent',
      'lost-completions-resent',
      interval,
      'Multipart completions asked for were never carried out (the completion queue or the complete-multipart function is failing).',
    );
    return { errors, notRunning, lostNotifications, lostCompletions };
  }

  private createApiAlarms(api: NonNullable<MonitoringProps['api']>): {
    serverErrors: cloudwatch.Alarm;
    throttles: cloudwatch.Alarm;
  } {
    const anyWithinFiveMinutes = (metric: cloudwatch.IMetric) => ({
      metric,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // No request, no error.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const sum = { statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES };
    const serverErrors = this.alarm('ApiServerErrors', 'api-server-errors', {
      alarmDescription:
        'The upload API answered 5xx (an internal error, the api function failing or timing out, or API Gateway ' +
        'failing to reach it) within 5 minutes: clients retry, then fail.',
      ...anyWithinFiveMinutes(api.httpApi.metricServerError(sum)),
    });
    const throttles = this.alarm('ApiThrottles', 'api-throttles', {
      alarmDescription:
        'The api function was throttled within 5 minutes: every reserved execution was busy (api.reservedConcurrency ' +
        'too low for the traffic, or requests slowed down), and API Gateway answered those requests with an error.',
      ...anyWithinFiveMinutes(api.function.metricThrottles(sum)),
    });
    return { serverErrors, throttles };
  }

  private createLagMonitor(props: MonitoringProps): { fn: MirrorFunction; schedule: events.Rule } {
    const fn = new MirrorFunction(this, 'LagMonitor', {
      handler: 'lag-monitor',
      description: 'Every minute: per-target replication lag, backlog and agent heartbeat age as metrics',
      timeout: ONE_MINUTE,
      memorySize: 256,
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.lagMonitor, {
      writesUnder: LAG_MONITOR_WRITE_KEYS,
      actionsUnder: { 'dynamodb:PutItem': LAG_MONITOR_PUTS_UNDER },
    });
    // SendMessage: the lag monitor drains the outbox (changes whose fan-out never completed).
    useTargets(fn, props.targets, { sendMessage: true });
    useSettings(fn, props.settings);
    // A failed run is not retried: the next one starts a minute later. A throttled one is dropped
    // then too: Lambda keeps a throttled asynchronous event for 6 hours otherwise, and would run a
    // pile of stale ones together once concurrency frees up.
    fn.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: ONE_MINUTE });
    const schedule = new events.Rule(this, 'LagMonitorSchedule', {
      description: 'Runs the lag monitor every minute',
      schedule: events.Schedule.rate(ONE_MINUTE),
      targets: [
        new eventsTargets.LambdaFunction(fn.function, {
          retryAttempts: 0,
          maxEventAge: ONE_MINUTE,
        }),
      ],
    });
    return { fn, schedule };
  }

  private createReconciler(
    props: MonitoringProps,
    reconcileInterval: Duration,
  ): { fn: MirrorFunction; schedule: events.Rule } {
    const fn = new MirrorFunction(this, 'Reconcile', {
      handler: 'reconcile',
      description:
        'Anti-entropy: re-sends to each target what it lacks or holds altered (scheduled or invoked)',
      // Within the interval, so scheduled runs (which resume from one checkpoint and use their whole
      // time on a large ledger) do not pile up. A late or manual run may still overlap one: that
      // costs repeated work, nothing more (each run's re-sends are its own messages;
      // test/integration/reconcile.test.ts, "two runs at once").
      timeout: Duration.minutes(Math.min(15, reconcileInterval.toMinutes())),
      memorySize: 512,
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.reconcile, {
      queryPendingUploads: true,
      writesUnder: RECONCILE_WRITE_KEYS,
      // Pending pointers and target rows it only deletes: an update would let it rewrite a pending
      // upload's claim, or mark a target as holding a version it lacks.
      actionsUnder: {
        'dynamodb:DeleteItem': DELETES_UNDER.reconcile,
        'dynamodb:UpdateItem': UPDATES_UNDER.reconcile,
      },
    });
    useTargets(fn, props.targets, {
      sendMessage: true,
      readReplicaObjects: {
        purpose: 'Reconcile checks each file by path (HeadObject: version, SHA-256, size, ETag)',
        headMissingAs404: true,
        // The objects under each target's key prefix, for those the mirror holds no live file for.
        listObjects: true,
      },
    });
    nameOriginWithoutAccess(fn, props.origin);
    useSettings(fn, props.settings);
    // A failed run is reported (reconcile errors alarm) and the next scheduled one covers it; a
    // throttled one is dropped once the next is due (Lambda's longest event age is 6 hours).
    fn.function.configureAsyncInvoke({
      retryAttempts: 0,
      maxEventAge: Duration.minutes(Math.min(reconcileInterval.toMinutes(), 6 * 60)),
    });
    const schedule = new events.Rule(this, 'ReconcileSchedule', {
      description: `Runs reconcile every ${reconcileInterval.toMinutes()} minutes`,
      schedule: events.Schedule.rate(reconcileInterval),
      targets: [new eventsTargets.LambdaFunction(fn.function, { retryAttempts: 0 })],
    });
    return { fn, schedule };
  }

  /**
   * A scheduled safety net that does not run: no Lambda `Invocations` (a throttled asynchronous event is
   * not counted, and is dropped at its maxEventAge; a disabled schedule or a removed permission starts
   * none). Its errors alarm cannot see that (no invocation, no error, missing data not breaching), so
   * here missing data breaches, as for the lag. One period per run; right after the first deploy the
   * alarm shows ALARM until the first runs (docs/deploy.md, Alarms).
   */
  private notRunningAlarm(
    constructId: string,
    name: string,
    what: string,
    fn: lambda.IFunction,
    interval: Duration,
    periods: { readonly evaluationPeriods: number; readonly datapointsToAlarm: number },
    consequence: string,
  ): cloudwatch.Alarm {
    return this.alarm(constructId, name, {
      alarmDescription: `${what} did not run in ${periods.datapointsToAlarm} of its last ${periods.evaluationPeriods} schedule intervals (throttled past its event age, its schedule disabled, or its permission gone): ${consequence}.`,
      metric: fn.metricInvocations({ statistic: cloudwatch.Stats.SUM, period: interval }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      ...periods,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
  }

  /** An alarm named `<prefix>-<name>`, collected into `alarms`. */
  private alarm(
    constructId: string,
    name: string,
    alarmProps: Omit<cloudwatch.AlarmProps, 'alarmName'>,
  ): cloudwatch.Alarm {
    const a = new cloudwatch.Alarm(this, constructId, {
      ...alarmProps,
      alarmName: `${this.namePrefix}-${name}`,
    });
    this.allAlarms.push(a);
    return a;
  }

  private deadLetterAlarm(
    constructId: string,
    name: string,
    what: string,
    queue: sqs.IQueue,
  ): cloudwatch.Alarm {
    return this.alarm(constructId, name, {
      alarmDescription: `Messages in the ${what} dead-letter queue: they failed every receive their queue allows and wait for a fix and a redrive (media-mirror redrive).`,
      metric: queue.metricApproximateNumberOfMessagesVisible({
        period: ONE_MINUTE,
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // An idle queue may send no datapoint: nothing there.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private createIngestErrorAlarm(props: MonitoringProps, limits: MonitoringLimits): cloudwatch.Alarm {
    return this.alarm('IngestErrors', 'ingest-errors', {
      alarmDescription:
        `More than ${limits.ingestErrorThreshold} ingest invocation(s) failed within 5 minutes (timed out, crashed, ` +
        'or every message of a batch failed): the whole batch returns to the queue and is retried after its visibility timeout.',
      metric: props.ingest.ingest.function.metricErrors({
        statistic: cloudwatch.Stats.SUM,
        period: FIVE_MINUTES,
      }),
      threshold: limits.ingestErrorThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // No invocation, no error.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private createIngestQueueAgeAlarm(props: MonitoringProps, limits: MonitoringLimits): cloudwatch.Alarm {
    const seconds = limits.ingestQueueAgeThreshold.toSeconds();
    return this.alarm('IngestQueueAge', 'ingest-queue-age', {
      alarmDescription:
        `The oldest event in the ingest queue is more than ${seconds} s old: uploads wait for verification ` +
        '(a backlog behind the capped ingest concurrency, or events that failed and wait to be retried).',
      metric: props.ingest.queue.metricApproximateAgeOfOldestMessage({
        statistic: cloudwatch.Stats.MAXIMUM,
        period: FIVE_MINUTES,
      }),
      threshold: seconds,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // SQS stops sending datapoints for a queue left idle for hours: nothing waits.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private createPendingPastExpiryAlarm(limits: MonitoringLimits): cloudwatch.Alarm {
    return this.alarm('UploadsPendingPastExpiry', 'uploads-pending-past-expiry', {
      alarmDescription:
        `Reconcile's expiry sweep found more than ${limits.pendingPastExpiryThreshold} upload(s) still pending past their expiry: ` +
        'bytes that never arrived (an abandoned upload) or that arrived and were never committed (ingest failing). ' +
        'The sweep ends each one a day after its expiry.',
      // One datapoint per reconcile run (0 included), so one period per run.
      metric: serviceMetric('UploadsPendingPastExpiry', {
        statistic: cloudwatch.Stats.MAXIMUM,
        period: limits.reconcileInterval,
      }),
      threshold: limits.pendingPastExpiryThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // A run that fails emits nothing; the reconcile errors alarm reports that.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /** What the pending sweep resent, one period per run: something in 3 of its last 4 runs. */
  private sweepResendAlarm(
    metric: 'LostNotificationsResent' | 'LostCompletionsResent',
    name: string,
    interval: Duration,
    what: string,
  ): cloudwatch.Alarm {
    return this.alarm(metric, name, {
      alarmDescription:
        `The pending sweep resent ${metric === 'LostNotificationsResent' ? 'lost S3 notifications' : 'lost multipart completions'} ` +
        `in ${SWEEP_RUNS_RESENDING} of the last ${SWEEP_RUNS_WATCHED} runs: ${what} ` +
        'Uploads still commit, each one sweep interval late. A single loss is resent once and does not alarm.',
      metric: serviceMetric(metric, { statistic: cloudwatch.Stats.SUM, period: interval }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: SWEEP_RUNS_WATCHED,
      datapointsToAlarm: SWEEP_RUNS_RESENDING,
      // The sweep emits both counts every run, 0 included: silence is a sweep that did not run, shown
      // by its failed runs on the dashboard, not a resend.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private createTargetAlarms(target: MonitoredTarget, limits: MonitoringLimits): TargetAlarms {
    const { lagThreshold, lagPeriods } = limits;
    const lag = this.alarm(`Lag-${target.id}`, `target-${target.id}-lag`, {
      alarmDescription:
        `Target ${target.id} has not applied a change committed more than ${lagThreshold.toSeconds()} s ago, ` +
        `for ${lagPeriods} minute(s) in a row (a dead agent, a stuck queue, a failing replicate function). ` +
        'No data at all also alarms: the lag monitor is not running, so the lag is unknown.' +
        (target.dryRun
          ? ' Actions disabled: a dry-run target applies nothing, its lag grows by design.'
          : ''),
      metric: targetMetric('ReplicationLagSeconds', target.id, {
        statistic: cloudwatch.Stats.MAXIMUM,
        period: ONE_MINUTE,
      }),
      threshold: lagThreshold.toSeconds(),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: lagPeriods,
      datapointsToAlarm: lagPeriods,
      // The monitor emits every target's lag every minute, 0 included: silence means the
      // monitor itself is broken, and "replication never breaks silently" includes that.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      actionsEnabled: !target.dryRun,
    });
    const deadLetters = this.deadLetterAlarm(
      `DeadLetters-target-${target.id}`,
      `target-${target.id}-dead-letters`,
      `target-${target.id}`,
      target.deadLetterQueue,
    );
    if (target.kind !== 'pull') return { lag, deadLetters };
    const heartbeat = this.alarm(`Heartbeat-${target.id}`, `target-${target.id}-heartbeat`, {
      alarmDescription: `The agent of pull target ${target.id} has not reported for more than ${limits.heartbeatThreshold.toSeconds()} s (stopped, or cut off from AWS).`,
      metric: targetMetric('AgentHeartbeatAgeSeconds', target.id, {
        statistic: cloudwatch.Stats.MAXIMUM,
        period: ONE_MINUTE,
      }),
      threshold: limits.heartbeatThreshold.toSeconds(),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      // Missing data means the lag monitor is down, which the lag alarms already report;
      // alarming here too would blame the agent for the monitor's fault.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    return { lag, deadLetters, heartbeat };
  }

  private createAlarmTopic(email: string): AlarmTopic {
    const topic = new AlarmTopic(this, 'AlarmTopic', {
      alarmNamePrefix: `${this.namePrefix}-`,
      email,
      displayName: `Media Mirror alarms (${this.namePrefix})`,
    });
    this.notify(topic.action);
    return topic;
  }

  private notify(action: cloudwatch.IAlarmAction): void {
    for (const a of this.allAlarms) {
      a.addAlarmAction(action);
      // Recoveries too: "lag back under the threshold" closes the incident.
      a.addOkAction(action);
    }
  }

  private buildDashboard(props: MonitoringProps, limits: MonitoringLimits): cloudwatch.Dashboard {
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: this.namePrefix,
      defaultInterval: Duration.hours(3),
    });
    dashboard.addWidgets(...this.headerWidgets(limits));
    dashboard.addWidgets(...lagWidgets(props.targets, limits));
    dashboard.addWidgets(...lagMonitorWidgets(props.targets));
    dashboard.addWidgets(...backlogWidgets(props));
    dashboard.addWidgets(...failureWidgets(props, limits));
    dashboard.addWidgets(...ingestWidgets(props, limits));
    if (props.api) dashboard.addWidgets(...apiWidgets(props.api));
    dashboard.addWidgets(...agentAndThroughputWidgets(props.targets, limits));
    if (props.pendingSweep) dashboard.addWidgets(...pendingSweepWidgets(props.pendingSweep));
    return dashboard;
  }

  private headerWidgets(limits: MonitoringLimits): cloudwatch.IWidget[] {
    return [
      new cloudwatch.TextWidget({
        markdown:
          `# Media Mirror: ${this.namePrefix}\n` +
          'Lag = age of the oldest committed change a target has not applied, computed from the ledger ' +
          'by the lag monitor every minute (so a dead agent or a stuck queue shows lag growing). ' +
          `Lag alarms above ${limits.lagThreshold.toSeconds()} s.`,
        width: 24,
        height: 2,
      }),
      new cloudwatch.AlarmStatusWidget({
        title: 'Alarms',
        alarms: [...this.alarms],
        width: 24,
        height: 2 + Math.ceil(this.alarms.length / 4),
        sortBy: cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
      }),
    ];
  }
}

interface MonitoringLimits {
  readonly lagThreshold: Duration;
  readonly lagPeriods: number;
  readonly heartbeatThreshold: Duration;
  readonly rejectionThreshold: number;
  readonly ingestErrorThreshold: number;
  readonly ingestQueueAgeThreshold: Duration;
  readonly pendingPastExpiryThreshold: number;
  readonly reconcileInterval: Duration;
}

function limitsOf(props: MonitoringProps): MonitoringLimits {
  const limits = {
    lagThreshold: props.lagThreshold ?? Duration.seconds(900),
    lagPeriods: props.lagEvaluationPeriods ?? 3,
    heartbeatThreshold: props.heartbeatThreshold ?? Duration.seconds(300),
    rejectionThreshold: props.rejectionThreshold ?? 0,
    ingestErrorThreshold: props.ingestErrorThreshold ?? 0,
    ingestQueueAgeThreshold: props.ingestQueueAgeThreshold ?? Duration.minutes(30),
    pendingPastExpiryThreshold: props.pendingPastExpiryThreshold ?? 0,
    reconcileInterval: props.reconcileInterval ?? Duration.minutes(60),
  };
  checkOptions(limits);
  return limits;
}

const graph = (
  title: string,
  width: number,
  left: cloudwatch.IMetric[],
  extra: Partial<cloudwatch.GraphWidgetProps> = {},
) => new cloudwatch.GraphWidget({ title, width, height: 6, left, ...extra });

const threshold = (value: number, label: string): cloudwatch.HorizontalAnnotation => ({
  value,
  label,
  color: cloudwatch.Color.RED,
});

/** One lag graph per target. */
function lagWidgets(targets: readonly MonitoredTarget[], limits: MonitoringLimits): cloudwatch.IWidget[] {
  return targets.map((t) =>
    graph(
      `Replication lag: ${t.id} (${t.kind}${t.dryRun ? ', dry run' : ''})`,
      8,
      [
        targetMetric('ReplicationLagSeconds', t.id, {
          statistic: 'Maximum',
          period: ONE_MINUTE,
          label: 'lag (s)',
        }),
      ],
      { leftAnnotations: [threshold(limits.lagThreshold.toSeconds(), 'alarm')], leftYAxis: { min: 0 } },
    ),
  );
}

/**
 * The lag monitor's own work: ledger calls and time per run (bounded by its budget and deadline),
 * and per target whether the run reached the oldest unapplied change. A target at 0 run after run
 * is still being walked: its lag is an upper bound until it shows 1 (the lag alarm covers the rest).
 */
function lagMonitorWidgets(targets: readonly MonitoredTarget[]): cloudwatch.IWidget[] {
  return [
    graph(
      'Lag monitor: ledger calls and time per run',
      12,
      [
        serviceMetric('LagMonitorLedgerCalls', {
          statistic: 'Maximum',
          period: ONE_MINUTE,
          label: 'ledger calls',
        }),
      ],
      {
        right: [
          serviceMetric('LagMonitorRunMilliseconds', {
            statistic: 'Maximum',
            period: ONE_MINUTE,
            label: 'run (ms)',
          }),
        ],
        leftYAxis: { min: 0 },
        rightYAxis: { min: 0 },
      },
    ),
    graph(
      'Lag monitor: caught up (1) or still walking applied changes (0)',
      12,
      targets.map((t) =>
        targetMetric('LagMonitorCaughtUp', t.id, { statistic: 'Minimum', period: ONE_MINUTE, label: t.id }),
      ),
      { leftYAxis: { min: 0, max: 1 } },
    ),
  ];
}

/** Backlog: what the ledger says is pending, and what sits in the queues. */
function backlogWidgets(props: MonitoringProps): cloudwatch.IWidget[] {
  const targets = props.targets;
  return [
    graph(
      'Pending replications (ledger)',
      12,
      targets.map((t) =>
        targetMetric('PendingReplications', t.id, {
          statistic: 'Maximum',
          period: ONE_MINUTE,
          label: t.id,
        }),
      ),
      { leftYAxis: { min: 0 } },
    ),
    graph(
      'Messages waiting in the queues',
      12,
      [
        ...targets.map((t) =>
          t.queue.metricApproximateNumberOfMessagesVisible({
            statistic: 'Maximum',
            period: ONE_MINUTE,
            label: t.id,
          }),
        ),
        props.ingest.queue.metricApproximateNumberOfMessagesVisible({
          statistic: 'Maximum',
          period: ONE_MINUTE,
          label: 'ingest',
        }),
      ],
      { leftYAxis: { min: 0 } },
    ),
  ];
}

function failureWidgets(props: MonitoringProps, limits: MonitoringLimits): cloudwatch.IWidget[] {
  const targets = props.targets;
  return [
    graph(
      'Replication failures (S3 targets)',
      8,
      targets
        .filter((t) => t.kind === 's3')
        .map((t) =>
          targetMetric('ReplicationFailures', t.id, {
            statistic: 'Sum',
            period: FIVE_MINUTES,
            label: t.id,
          }),
        ),
    ),
    graph(
      'Dead-letter queues',
      8,
      [
        ...targets.map((t) =>
          t.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
            statistic: 'Maximum',
            period: ONE_MINUTE,
            label: t.id,
          }),
        ),
        props.ingest.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          statistic: 'Maximum',
          period: ONE_MINUTE,
          label: 'ingest',
        }),
      ],
      { leftAnnotations: [threshold(1, 'alarm')] },
    ),
    graph(
      'Uploads rejected at ingest',
      8,
      [serviceMetric('IngestRejected', { statistic: 'Sum', period: FIVE_MINUTES })],
      {
        leftAnnotations: [threshold(limits.rejectionThreshold, 'alarm above')],
      },
    ),
  ];
}

/** The ingest keeping up: failed invocations, its oldest queued event, uploads left pending. */
function ingestWidgets(props: MonitoringProps, limits: MonitoringLimits): cloudwatch.IWidget[] {
  return [
    graph(
      'Ingest: failed invocations',
      8,
      [
        props.ingest.ingest.function.metricErrors({
          statistic: 'Sum',
          period: FIVE_MINUTES,
          label: 'errors',
        }),
      ],
      { leftAnnotations: [threshold(limits.ingestErrorThreshold, 'alarm above')], leftYAxis: { min: 0 } },
    ),
    graph(
      'Ingest: oldest queued event (s)',
      8,
      [
        props.ingest.queue.metricApproximateAgeOfOldestMessage({
          statistic: 'Maximum',
          period: FIVE_MINUTES,
          label: 'age (s)',
        }),
      ],
      {
        leftAnnotations: [threshold(limits.ingestQueueAgeThreshold.toSeconds(), 'alarm above')],
        leftYAxis: { min: 0 },
      },
    ),
    graph(
      'Uploads pending past their expiry',
      8,
      [
        serviceMetric('UploadsPendingPastExpiry', {
          statistic: 'Maximum',
          period: limits.reconcileInterval,
          label: 'uploads',
        }),
      ],
      {
        leftAnnotations: [threshold(limits.pendingPastExpiryThreshold, 'alarm above')],
        leftYAxis: { min: 0 },
      },
    ),
  ];
}

/** The pending sweep's row: what it resent per run (the alarms' line), and its failed runs. */
function apiWidgets(api: NonNullable<MonitoringProps['api']>): cloudwatch.IWidget[] {
  const sum = { statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES };
  return [
    new cloudwatch.GraphWidget({
      title: 'API requests and errors (per 5 minutes)',
      left: [
        api.httpApi.metricCount(sum),
        api.httpApi.metricClientError(sum),
        api.httpApi.metricServerError(sum),
      ],
      width: 8,
    }),
    new cloudwatch.GraphWidget({
      title: 'API latency p50 / p99 (ms)',
      left: [
        api.httpApi.metricLatency({ statistic: cloudwatch.Stats.p(50), period: FIVE_MINUTES }),
        api.httpApi.metricLatency({ statistic: cloudwatch.Stats.p(99), period: FIVE_MINUTES }),
      ],
      width: 8,
    }),
    new cloudwatch.GraphWidget({
      title: 'api function: concurrent executions (max) and throttles',
      left: [
        api.function.metric('ConcurrentExecutions', {
          statistic: cloudwatch.Stats.MAXIMUM,
          period: FIVE_MINUTES,
        }),
      ],
      right: [api.function.metricThrottles(sum)],
      width: 8,
    }),
  ];
}

function pendingSweepWidgets(sweep: NonNullable<MonitoringProps['pendingSweep']>): cloudwatch.IWidget[] {
  const period = sweep.interval;
  return [
    graph(
      'Pending sweep: lost notifications and completions resent (per run)',
      12,
      [
        serviceMetric('LostNotificationsResent', { statistic: 'Sum', period, label: 'S3 notifications' }),
        serviceMetric('LostCompletionsResent', { statistic: 'Sum', period, label: 'multipart completions' }),
      ],
      {
        leftAnnotations: [threshold(1, `alarm: ${SWEEP_RUNS_RESENDING} of ${SWEEP_RUNS_WATCHED} runs`)],
        leftYAxis: { min: 0 },
      },
    ),
    graph(
      'Pending sweep: failed runs',
      12,
      [sweep.function.metricErrors({ statistic: 'Sum', period, label: 'errors' })],
      { leftYAxis: { min: 0 } },
    ),
  ];
}

function agentAndThroughputWidgets(
  targets: readonly MonitoredTarget[],
  limits: MonitoringLimits,
): cloudwatch.IWidget[] {
  const pull = targets.filter((t) => t.kind === 'pull');
  const s3 = targets.filter((t) => t.kind === 's3');
  return [
    ...(pull.length > 0
      ? [
          graph(
            'Agent heartbeat age (s)',
            8,
            pull.map((t) =>
              targetMetric('AgentHeartbeatAgeSeconds', t.id, {
                statistic: 'Maximum',
                period: ONE_MINUTE,
                label: t.id,
              }),
            ),
            {
              leftAnnotations: [threshold(limits.heartbeatThreshold.toSeconds(), 'alarm')],
              leftYAxis: { min: 0 },
            },
          ),
        ]
      : []),
    graph(
      'Files replicated (S3 targets)',
      8,
      s3.map((t) =>
        targetMetric('FilesReplicated', t.id, { statistic: 'Sum', period: FIVE_MINUTES, label: t.id }),
      ),
    ),
    graph(
      'Commit to applied, p90 (ms, S3 targets)',
      8,
      s3.map((t) =>
        targetMetric('ReplicationLatency', t.id, { statistic: 'p90', period: FIVE_MINUTES, label: t.id }),
      ),
    ),
  ];
}

function checkOptions(o: MonitoringLimits): void {
  const problems: string[] = [];
  if (
    !Token.isUnresolved(o.lagPeriods) &&
    (!Number.isInteger(o.lagPeriods) || o.lagPeriods < 1 || o.lagPeriods > 1440)
  )
    problems.push(
      `lagEvaluationPeriods: ${o.lagPeriods} is not a whole number of one-minute periods from 1 to 1440`,
    );
  if (o.lagThreshold.toSeconds() <= 0) problems.push('lagThreshold: must be positive');
  if (o.heartbeatThreshold.toSeconds() <= 0) problems.push('heartbeatThreshold: must be positive');
  for (const key of ['rejectionThreshold', 'ingestErrorThreshold', 'pendingPastExpiryThreshold'] as const) {
    if (!Number.isFinite(o[key]) || o[key] < 0) problems.push(`${key}: must be 0 or more`);
  }
  if (o.ingestQueueAgeThreshold.toSeconds() <= 0) problems.push('ingestQueueAgeThreshold: must be positive');
  const minutes = o.reconcileInterval.toMinutes({ integral: false });
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440)
    problems.push(`reconcileInterval: ${minutes} min is not a whole number of minutes from 1 to 1440`);
  if (problems.length > 0) throw new Error(`invalid monitoring settings:\n  ${problems.join('\n  ')}`);
}
