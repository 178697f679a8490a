/**
 * Operations on AWS: the lag monitor and reconcile functions with their
 * schedules and roles, the alarms (thresholds from the topology), the alarm
 * topic, and the dashboard.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeMetrics, metricsPort, NAMESPACE, publishMetrics } from '../../functions/adapters/powertools.js';
import {
  lagMonitorConfigSchema,
  readConfig,
  reconcileConfigSchema,
} from '../../functions/adapters/runtime-config.js';
import { METRICS_NAMESPACE, SERVICE_METRICS, TARGET_METRICS } from '../../lib/metrics.js';
import type { MirrorApp } from '../../lib/mirror-app.js';
import { REPO_ROOT } from '../../lib/paths.js';
import {
  actionsOf,
  buildTestApp,
  environmentOf,
  fakeResolve,
  props,
  resourcesOf,
  resourcesOfType,
  type Statement,
  statementsOfFunction,
  TEST_TOPOLOGY_INPUT,
  testTopology,
} from './fixture.js';

type Json = Record<string, unknown>;

/** Non-default thresholds everywhere, an alarm email, and target-b in dry run. */
const MONITORING = {
  lagAlarmSeconds: 600,
  lagAlarmPeriods: 5,
  heartbeatAlarmSeconds: 120,
  rejectionAlarmThreshold: 3,
  reconcileEveryMinutes: 30,
  alarmEmail: 'mirror-ops@example.com',
};
const monitoredTopology = () =>
  testTopology({
    monitoring: MONITORING,
    targets: TEST_TOPOLOGY_INPUT.targets.map((t) => (t.id === 'target-b' ? { ...t, dryRun: true } : t)),
  });
const TARGETS = TEST_TOPOLOGY_INPUT.targets.map((t) => t.id);
const S3_TARGETS = TEST_TOPOLOGY_INPUT.targets.filter((t) => t.kind === 's3').map((t) => t.id);
const PULL_TARGETS = TEST_TOPOLOGY_INPUT.targets.filter((t) => t.kind === 'pull').map((t) => t.id);

const logicalId = (stack: MirrorApp['home'], construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as never);
const text = (value: unknown) => JSON.stringify(fakeResolve(value));

const alarmsOf = (template: Template): (Json & { id: string })[] =>
  Object.entries(resourcesOfType(template, 'AWS::CloudWatch::Alarm')).map(([id, a]) => ({ id, ...props(a) }));
const dimensions = (alarm: Json) =>
  Object.fromEntries(
    ((alarm.Dimensions ?? []) as { Name: string; Value: unknown }[]).map((d) => [d.Name, d.Value]),
  );
const customAlarms = (template: Template, metricName: string) =>
  alarmsOf(template).filter((a) => a.Namespace === 'MediaMirror' && a.MetricName === metricName);

let mirror: MirrorApp;
let home: Template;

beforeAll(() => {
  mirror = buildTestApp(monitoredTopology());
  home = Template.fromStack(mirror.home);
}, 300_000);

describe('metrics the alarms watch are the metrics the handlers emit', () => {
  const lines: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    lines.length = 0;
  });
  const emitted = (service: string, emit: (port: ReturnType<typeof metricsPort>) => void) => {
    lines.length = 0;
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const metrics = makeMetrics(service);
    emit(metricsPort(metrics));
    publishMetrics(metrics);
    vi.restoreAllMocks();
    return lines
      .flatMap((l) => l.split('\n'))
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l));
  };

  it('namespace MediaMirror; per-target metrics carry exactly service + target, the others service only', () => {
    expect(METRICS_NAMESPACE).toBe(NAMESPACE);
    for (const [name, service] of Object.entries(TARGET_METRICS)) {
      const [emf] = emitted(service, (port) => port.count(name, 1, { target: 'target-a' }));
      expect(emf._aws.CloudWatchMetrics[0].Namespace, name).toBe('MediaMirror');
      expect(emf._aws.CloudWatchMetrics[0].Dimensions, name).toEqual([['service', 'target']]);
      expect(emf).toMatchObject({ service, target: 'target-a' });
    }
    for (const [name, service] of Object.entries(SERVICE_METRICS)) {
      const [emf] = emitted(service, (port) => port.count(name));
      expect(emf._aws.CloudWatchMetrics[0].Dimensions, name).toEqual([['service']]);
      expect(emf).toMatchObject({ service });
    }
  });

  it('each service name is the one its handler gives Powertools, and the handler (or its core) emits the metric', () => {
    const source = (file: string) => readFileSync(path.join(REPO_ROOT, 'functions', file), 'utf8');
    const core = [
      'core/lag.ts',
      'core/replicate.ts',
      'core/ingest.ts',
      'core/commit.ts',
      'core/expiry.ts',
      'core/pending-sweep.ts',
    ]
      .map(source)
      .join('\n');
    for (const [name, service] of [...Object.entries(TARGET_METRICS), ...Object.entries(SERVICE_METRICS)]) {
      const handler = source(`handlers/${service}.ts`);
      expect(handler, service).toContain(`makeMetrics('${service}')`);
      const factory = source(`handlers/${service}-handler.ts`);
      expect(`${factory}\n${core}`, name).toContain(`'${name}'`);
    }
  });

  it("docs/deploy.md's metric table names every metric the functions emit, and no other", () => {
    const sources = readdirSync(path.join(REPO_ROOT, 'functions'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => readFileSync(path.join(REPO_ROOT, 'functions', file), 'utf8'));
    const emittedNames = new Set(
      sources.flatMap((text) =>
        [
          ...text.matchAll(/metrics\??\.(?:count|countAtOnce|bytes|seconds|milliseconds)\(\s*'([A-Za-z]+)'/g),
        ].map((m) => m[1]),
      ),
    );
    const deployDoc = readFileSync(path.join(REPO_ROOT, 'docs', 'deploy.md'), 'utf8');
    const section = deployDoc.split('\n### Metrics\n')[1]?.split('\n### ')[0] ?? '';
    const documented = new Set(
      section
        .split('\n')
        .filter((line) => line.startsWith('| `'))
        .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1])),
    );
    expect(emittedNames.size).toBeGreaterThan(20);
    expect([...documented].sort()).toEqual([...emittedNames].sort());
  });
});

describe('alarms', () => {
  it('exactly one lag alarm per target: maximum lag > lagAlarmSeconds for lagAlarmPeriods minutes, missing data breaching', () => {
    const lag = customAlarms(home, 'ReplicationLagSeconds');
    expect(lag).toHaveLength(TARGETS.length);
    for (const target of TARGETS) {
      const mine = lag.filter((a) => dimensions(a).target === target);
      expect(mine, target).toHaveLength(1);
      expect(dimensions(mine[0] as Json)).toEqual({ service: 'lag-monitor', target });
      expect(mine[0], target).toMatchObject({
        Statistic: 'Maximum',
        Period: 60,
        Threshold: 600,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 5,
        DatapointsToAlarm: 5,
        TreatMissingData: 'breaching',
        AlarmName: `TestMirror-Home-target-${target}-lag`,
      });
    }
  });

  it('a dry-run target keeps its lag alarm but with actions disabled (its lag grows by design)', () => {
    const lag = customAlarms(home, 'ReplicationLagSeconds');
    for (const alarm of lag) {
      const dryRun = dimensions(alarm).target === 'target-b';
      expect(alarm.ActionsEnabled, String(dimensions(alarm).target)).toBe(!dryRun);
    }
    // Its other alarms still notify.
    const dlq = alarmsOf(home).find((a) => a.AlarmName === 'TestMirror-Home-target-target-b-dead-letters');
    expect(dlq?.ActionsEnabled).not.toBe(false);
  });

  it('one dead-letter alarm per target queue, one for the ingest and one for completions: any visible message', () => {
    const sqsAlarms = alarmsOf(home).filter(
      (a) => a.Namespace === 'AWS/SQS' && a.MetricName === 'ApproximateNumberOfMessagesVisible',
    );
    const dlqs = [
      ['ingest', mirror.home.ingest.deadLetterQueue],
      ['completion', mirror.home.completion.deadLetterQueue],
      ...mirror.home.targets.map((t) => [t.id, t.deadLetterQueue] as const),
    ] as const;
    expect(sqsAlarms).toHaveLength(dlqs.length);
    for (const [name, dlq] of dlqs) {
      const queueName = { 'Fn::GetAtt': [logicalId(mirror.home, dlq), 'QueueName'] };
      const mine = sqsAlarms.filter(
        (a) => JSON.stringify(dimensions(a).QueueName) === JSON.stringify(queueName),
      );
      expect(mine, name).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Statistic: 'Maximum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
    // No alarm watches a target queue: a backlog there is what the lag alarm measures.
    const anySqs = alarmsOf(home).filter((a) => a.Namespace === 'AWS/SQS');
    for (const target of mirror.home.targets) {
      const queueName = JSON.stringify({ 'Fn::GetAtt': [logicalId(mirror.home, target.queue), 'QueueName'] });
      expect(anySqs.filter((a) => JSON.stringify(dimensions(a).QueueName) === queueName)).toEqual([]);
    }
  });

  it('one heartbeat alarm per pull target and none for S3 targets', () => {
    const heartbeat = customAlarms(home, 'AgentHeartbeatAgeSeconds');
    expect(heartbeat.map((a) => dimensions(a).target)).toEqual(PULL_TARGETS);
    for (const alarm of heartbeat) {
      expect(dimensions(alarm)).toEqual({ service: 'lag-monitor', target: 'onprem-dc1' });
      expect(alarm).toMatchObject({
        Statistic: 'Maximum',
        Period: 60,
        Threshold: 120,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
    for (const target of S3_TARGETS) {
      expect(mirror.home.monitoring.targetAlarms.get(target)?.heartbeat, target).toBeUndefined();
    }
  });

  it('ingest rejections: IngestRejected summed over 5 minutes above the threshold', () => {
    const rejections = customAlarms(home, 'IngestRejected');
    expect(rejections).toHaveLength(1);
    expect(dimensions(rejections[0] as Json)).toEqual({ service: 'ingest' });
    expect(rejections[0]).toMatchObject({
      Statistic: 'Sum',
      Period: 300,
      Threshold: 3,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('a failed reconcile run alarms until the next one succeeds (one period per run)', () => {
    const reconcileId = logicalId(mirror.home, mirror.home.monitoring.reconciler.function);
    const errors = alarmsOf(home).filter(
      (a) =>
        a.Namespace === 'AWS/Lambda' &&
        a.MetricName === 'Errors' &&
        JSON.stringify(dimensions(a).FunctionName).includes(reconcileId),
    );
    expect(errors).toHaveLength(1);
    expect(dimensions(errors[0] as Json)).toEqual({ FunctionName: { Ref: reconcileId } });
    expect(errors[0]).toMatchObject({ MetricName: 'Errors', Statistic: 'Sum', Period: 1800, Threshold: 1 });
  });

  it('a sweep failing run after run alarms (2 of its last 3 runs): its resend alarms stay silent when it emits nothing', () => {
    const sweepId = logicalId(mirror.home, mirror.home.pendingSweep.sweeper.function);
    const errors = alarmsOf(home).filter(
      (a) =>
        a.Namespace === 'AWS/Lambda' &&
        a.MetricName === 'Errors' &&
        JSON.stringify(dimensions(a).FunctionName).includes(sweepId),
    );
    expect(errors).toHaveLength(1);
    expect(dimensions(errors[0] as Json)).toEqual({ FunctionName: { Ref: sweepId } });
    expect(errors[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-pending-sweep-errors',
      MetricName: 'Errors',
      Statistic: 'Sum',
      Period: 900,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
      TreatMissingData: 'notBreaching',
    });
  });

  it('a safety net that stops running alarms (its Lambda Invocations missing breach): the pending sweep and reconcile', () => {
    // A run throttled past its maxEventAge is dropped, and a disabled schedule or a removed permission
    // starts none: Errors stays empty and not breaching, so only the missing invocations can tell.
    const cases = [
      {
        fn: mirror.home.pendingSweep.sweeper.function,
        name: 'TestMirror-Home-pending-sweep-not-running',
        period: 900,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
      },
      {
        fn: mirror.home.monitoring.reconciler.function,
        name: 'TestMirror-Home-reconcile-not-running',
        period: MONITORING.reconcileEveryMinutes * 60,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
      },
    ];
    for (const c of cases) {
      const fnId = logicalId(mirror.home, c.fn);
      const runs = alarmsOf(home).filter(
        (a) =>
          a.Namespace === 'AWS/Lambda' &&
          a.MetricName === 'Invocations' &&
          text(dimensions(a).FunctionName) === text({ Ref: fnId }),
      );
      expect(runs, c.name).toHaveLength(1);
      expect(runs[0]).toMatchObject({
        AlarmName: c.name,
        Statistic: 'Sum',
        Period: c.period,
        Threshold: 1,
        ComparisonOperator: 'LessThanThreshold',
        EvaluationPeriods: c.evaluationPeriods,
        DatapointsToAlarm: c.datapointsToAlarm,
        TreatMissingData: 'breaching',
      });
      // CloudWatch evaluates at most 7 days of periods of an hour or more, one day of shorter ones.
      expect(c.period * c.evaluationPeriods).toBeLessThanOrEqual(c.period >= 3600 ? 7 * 86_400 : 86_400);
    }
  });

  it('ingest errors: failed ingest invocations (Lambda Errors) summed over 5 minutes, any', () => {
    const ingestId = logicalId(mirror.home, mirror.home.ingest.ingest.function);
    const errors = alarmsOf(home).filter((a) => a.Namespace === 'AWS/Lambda' && a.MetricName === 'Errors');
    // Reconcile's, the pending sweep's and the ingest's: no other function alarms on its errors.
    expect(errors).toHaveLength(3);
    const mine = errors.filter(
      (a) => JSON.stringify(dimensions(a).FunctionName) === JSON.stringify({ Ref: ingestId }),
    );
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-ingest-errors',
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      TreatMissingData: 'notBreaching',
    });
  });

  it('ingest queue age: the oldest event in the ingest queue (not its DLQ) older than 30 minutes', () => {
    const ages = alarmsOf(home).filter((a) => a.MetricName === 'ApproximateAgeOfOldestMessage');
    expect(ages).toHaveLength(1);
    expect(dimensions(ages[0] as Json)).toEqual({
      QueueName: { 'Fn::GetAtt': [logicalId(mirror.home, mirror.home.ingest.queue), 'QueueName'] },
    });
    expect(ages[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-ingest-queue-age',
      Namespace: 'AWS/SQS',
      Statistic: 'Maximum',
      Period: 300,
      Threshold: 1800,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
  });

  it('uploads pending past their expiry: the sweep’s count, one period per reconcile run, any', () => {
    const pending = customAlarms(home, 'UploadsPendingPastExpiry');
    expect(pending).toHaveLength(1);
    expect(dimensions(pending[0] as Json)).toEqual({ service: 'reconcile' });
    expect(pending[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-uploads-pending-past-expiry',
      Statistic: 'Maximum',
      Period: 1800,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
  });

  it.each([
    ['LostNotificationsResent', 'lost-notifications-resent'],
    ['LostCompletionsResent', 'lost-completions-resent'],
  ])(
    '%s: the pending sweep resending in 3 of its last 4 runs (one period per run), not a one-off loss',
    (metric, name) => {
      const resent = customAlarms(home, metric);
      expect(resent).toHaveLength(1);
      expect(dimensions(resent[0] as Json)).toEqual({ service: 'pending-sweep' });
      expect(resent[0]).toMatchObject({
        AlarmName: `TestMirror-Home-${name}`,
        Statistic: 'Sum',
        Period: 900,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 4,
        DatapointsToAlarm: 3,
        TreatMissingData: 'notBreaching',
      });
      expect(String(resent[0]?.AlarmDescription)).toMatch(/3 of the last 4 runs/);
    },
  );

  it('the API: any 5xx within 5 minutes, and the api function throttled (its reserved executions all busy)', () => {
    const apiId = logicalId(mirror.home, mirror.home.api.httpApi);
    const fnId = logicalId(mirror.home, mirror.home.api.handler.function);
    const serverErrors = alarmsOf(home).filter((a) => a.Namespace === 'AWS/ApiGateway');
    expect(serverErrors).toHaveLength(1);
    expect(serverErrors[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-api-server-errors',
      MetricName: '5xx',
      Statistic: 'Sum',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    expect(dimensions(serverErrors[0] as Json)).toEqual({ ApiId: { Ref: apiId } });
    const throttles = alarmsOf(home).filter(
      (a) => a.Namespace === 'AWS/Lambda' && a.MetricName === 'Throttles',
    );
    expect(throttles).toHaveLength(1);
    expect(throttles[0]).toMatchObject({
      AlarmName: 'TestMirror-Home-api-throttles',
      Statistic: 'Sum',
      Threshold: 1,
    });
    expect(dimensions(throttles[0] as Json)).toEqual({ FunctionName: { Ref: fnId } });
  });

  it('nothing else: per target lag + dead letters (+ heartbeat); ingest dead letters, rejections, errors, queue age; completion dead letters; uploads past expiry; reconcile’s errors and runs; the sweep’s errors, runs and the lost notifications and completions it resent; the API’s 5xx and throttles', () => {
    expect(alarmsOf(home)).toHaveLength(TARGETS.length * 2 + PULL_TARGETS.length + 14);
    expect(mirror.home.monitoring.alarms).toHaveLength(alarmsOf(home).length);
  });

  it("docs/deploy.md's alarm table names every alarm the home stack has, and no other", () => {
    const deployDoc = readFileSync(path.join(REPO_ROOT, 'docs', 'deploy.md'), 'utf8');
    const section = deployDoc.split('\n### Alarms\n')[1]?.split('\n### ')[0] ?? '';
    const documented = [...section.matchAll(/^\| `([a-z<>-]+)` \|/gm)].map((m) => m[1]);
    const prefix = 'TestMirror-Home-';
    const synthesized = alarmsOf(home).map((a) => {
      const name = String(a.AlarmName);
      expect(name.startsWith(prefix)).toBe(true);
      return name.slice(prefix.length).replace(new RegExp(`^target-(${TARGETS.join('|')})-`), 'target-<id>-');
    });
    expect(documented.length).toBeGreaterThan(10);
    expect([...new Set(documented)].sort()).toEqual([...new Set(synthesized)].sort());
  });
});

describe('alarm topic', () => {
  it('with alarmEmail: one topic, KMS-encrypted with a rotated key of its own, and the email subscribed', () => {
    const topics = resourcesOfType(home, 'AWS::SNS::Topic');
    expect(Object.keys(topics)).toHaveLength(1);
    const [topicId, topic] = Object.entries(topics)[0] as [string, Json];
    const keyId = logicalId(mirror.home, mirror.home.monitoring.alarmTopic?.key as never);
    expect(props(topic).KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    home.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    home.resourceCountIs('AWS::SNS::Subscription', 1);
    home.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'mirror-ops@example.com',
      TopicArn: { Ref: topicId },
    });
  });

  it('CloudWatch may use the key and publish to the topic only for the mirror’s alarms in this account', () => {
    const [keyStatements] = Object.values(resourcesOfType(home, 'AWS::KMS::Key')).map(
      (k) => (props(k).KeyPolicy as { Statement: Statement[] }).Statement,
    );
    const cw = keyStatements?.find((s) => JSON.stringify(s).includes('cloudwatch.amazonaws.com'));
    expect(cw && actionsOf(cw).sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey*']);
    const mirrorAlarmsOnly = {
      StringEquals: { 'aws:SourceAccount': '123456789012' },
      ArnLike: { 'aws:SourceArn': 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:TestMirror-Home-*' },
    };
    // The key too serves only the mirror's alarms (confused deputy: another account's alarm, or
    // another of this account's, cannot have CloudWatch use it).
    expect(fakeResolve(cw?.Condition)).toEqual(mirrorAlarmsOnly);

    const [policy] = Object.values(resourcesOfType(home, 'AWS::SNS::TopicPolicy')).map(
      (p) => (props(p).PolicyDocument as { Statement: (Statement & { Principal: unknown })[] }).Statement,
    );
    const tls = policy?.find((s) => s.Effect === 'Deny');
    expect(tls?.Condition).toEqual({ Bool: { 'aws:SecureTransport': 'false' } });
    const publish = policy?.find((s) => s.Effect === 'Allow');
    expect(publish?.Principal).toEqual({ Service: 'cloudwatch.amazonaws.com' });
    expect(publish && actionsOf(publish)).toEqual(['sns:Publish']);
    expect(fakeResolve(publish?.Condition)).toEqual(mirrorAlarmsOnly);
    // ...which every alarm name matches.
    for (const alarm of alarmsOf(home)) expect(String(alarm.AlarmName)).toMatch(/^TestMirror-Home-/);
  });

  it('every alarm notifies the topic, on alarm and on recovery', () => {
    const [topicId] = Object.keys(resourcesOfType(home, 'AWS::SNS::Topic'));
    for (const alarm of alarmsOf(home)) {
      expect(alarm.AlarmActions, alarm.id).toEqual([{ Ref: topicId }]);
      expect(alarm.OKActions, alarm.id).toEqual([{ Ref: topicId }]);
    }
  });

  it('with alarmTopicArn: every alarm notifies that existing topic (on alarm and on recovery), none created', () => {
    const arn = 'arn:aws:sns:us-east-1:123456789012:ops-pager';
    const withTopic = Template.fromStack(
      buildTestApp(testTopology({ monitoring: { alarmTopicArn: arn } }), { nag: false }).home,
    );
    withTopic.resourceCountIs('AWS::SNS::Topic', 0);
    withTopic.resourceCountIs('AWS::KMS::Key', 0);
    const alarms = alarmsOf(withTopic);
    expect(alarms.length).toBeGreaterThan(0);
    for (const alarm of alarms) {
      expect(alarm.AlarmActions, alarm.id).toEqual([arn]);
      expect(alarm.OKActions, alarm.id).toEqual([arn]);
    }
  });

  it('with both: every alarm notifies the created topic and the existing one', () => {
    const arn = 'arn:aws:sns:us-east-1:123456789012:ops-pager';
    const both = Template.fromStack(
      buildTestApp(testTopology({ monitoring: { alarmTopicArn: arn, alarmEmail: 'ops@example.com' } }), {
        nag: false,
      }).home,
    );
    const [topicId] = Object.keys(resourcesOfType(both, 'AWS::SNS::Topic'));
    for (const alarm of alarmsOf(both)) {
      expect(alarm.AlarmActions, alarm.id).toEqual([{ Ref: topicId }, arn]);
    }
  });

  it('the alarm topic refuses every request without TLS, not only publishing (AWS review 9, B7)', () => {
    const template = Template.fromStack(buildTestApp(monitoredTopology(), { nag: false }).home);
    const statements = Object.values(resourcesOfType(template, 'AWS::SNS::TopicPolicy')).flatMap(
      (p) => (props(p).PolicyDocument as { Statement: Json[] }).Statement,
    );
    const denied = statements
      .filter((st) => st.Effect === 'Deny' && JSON.stringify(st.Condition).includes('aws:SecureTransport'))
      .flatMap((st) => [st.Action].flat());
    for (const action of [
      'sns:Publish',
      'sns:Subscribe',
      'sns:SetTopicAttributes',
      'sns:GetTopicAttributes',
      'sns:DeleteTopic',
    ])
      expect(denied, action).toContain(action);
  });

  it('an alarm topic ARN that is not an SNS topic ARN is refused by the topology', () => {
    expect(() => testTopology({ monitoring: { alarmTopicArn: 'ops-pager' } })).toThrow(/alarmTopicArn/);
  });

  it('without a destination the synth warns that no alarm notifies anyone', () => {
    const plain = buildTestApp(testTopology(), { nag: false }).home;
    const warnings = Annotations.fromStack(plain).findWarning('*', Match.stringLikeRegexp('notif'));
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.entry.data)).toMatch(/alarmEmail.*alarmTopicArn/);
    // Acknowledged by its own id, not the generic one every unnamed warning shares (AWS review 9, B7).
    expect(String(warnings[0]?.entry.data)).toMatch(/\[ack: mirror:noAlarmDestination\]/);
    const wired = buildTestApp(monitoredTopology(), { nag: false }).home;
    expect(Annotations.fromStack(wired).findWarning('*', Match.stringLikeRegexp('notif'))).toHaveLength(0);
  });

  it('without alarmEmail: no topic, no subscription, no key, and alarms without actions', () => {
    const plain = Template.fromStack(buildTestApp(testTopology(), { nag: false }).home);
    plain.resourceCountIs('AWS::SNS::Topic', 0);
    plain.resourceCountIs('AWS::SNS::Subscription', 0);
    plain.resourceCountIs('AWS::KMS::Key', 0);
    const alarms = alarmsOf(plain);
    expect(alarms.length).toBeGreaterThan(0);
    for (const alarm of alarms) {
      expect(alarm.AlarmActions, alarm.id).toBeUndefined();
      expect(alarm.OKActions, alarm.id).toBeUndefined();
    }
    // The defaults: 900 s for 3 minutes, heartbeat 300 s, any rejection, reconcile hourly.
    expect(customAlarms(plain, 'ReplicationLagSeconds')[0]).toMatchObject({
      Threshold: 900,
      EvaluationPeriods: 3,
    });
    expect(customAlarms(plain, 'AgentHeartbeatAgeSeconds')[0]).toMatchObject({ Threshold: 300 });
    expect(customAlarms(plain, 'IngestRejected')[0]).toMatchObject({ Threshold: 0 });
    // Reconcile hourly: the pending-past-expiry alarm looks at one run per period.
    expect(customAlarms(plain, 'UploadsPendingPastExpiry')[0]).toMatchObject({ Threshold: 0, Period: 3600 });
    plain.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 hour)' });
  });
});

describe('dashboard', () => {
  const body = () => {
    const dashboards = Object.values(resourcesOfType(home, 'AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    expect(props(dashboards[0] as Json).DashboardName).toBe('TestMirror-Home');
    return JSON.parse(String(fakeResolve(props(dashboards[0] as Json).DashboardBody))) as {
      widgets: { type: string; properties: { title?: string; metrics?: unknown[][] } }[];
    };
  };
  const graphs = () => body().widgets.filter((w) => w.type === 'metric');
  /** The metrics of a graph as [namespace, name, ...dimension pairs] without the rendering options. */
  const metricsOf = (w: { properties: { metrics?: unknown[][] } }) =>
    (w.properties.metrics ?? []).map((m) => m.filter((x) => typeof x === 'string'));

  it('one lag graph per target, with that target’s lag metric', () => {
    for (const target of TARGETS) {
      const lagMetric = ['MediaMirror', 'ReplicationLagSeconds', 'service', 'lag-monitor', 'target', target];
      const withIt = graphs().filter((g) =>
        metricsOf(g).some((m) => JSON.stringify(m) === JSON.stringify(lagMetric)),
      );
      expect(withIt, target).toHaveLength(1);
      expect(metricsOf(withIt[0] as never), target).toHaveLength(1);
    }
  });

  it('backlog: pending replications per target and the depth of every target queue', () => {
    const all = graphs().flatMap(metricsOf);
    const names = (ns: string, metric: string) =>
      all.filter((m) => m[0] === ns && m[1] === metric).map((m) => m.slice(2));
    expect(names('MediaMirror', 'PendingReplications')).toEqual(
      TARGETS.map((t) => ['service', 'lag-monitor', 'target', t]),
    );
    const visible = JSON.stringify(names('AWS/SQS', 'ApproximateNumberOfMessagesVisible'));
    for (const target of mirror.home.targets) {
      expect(visible, target.id).toContain(`att:${logicalId(mirror.home, target.queue)}.QueueName`);
      expect(visible, target.id).toContain(`att:${logicalId(mirror.home, target.deadLetterQueue)}.QueueName`);
    }
  });

  it("the lag monitor's own work: ledger calls and time per run, and whether each target caught up", () => {
    const all = graphs().flatMap(metricsOf);
    expect(all).toContainEqual(['MediaMirror', 'LagMonitorLedgerCalls', 'service', 'lag-monitor']);
    expect(all).toContainEqual(['MediaMirror', 'LagMonitorRunMilliseconds', 'service', 'lag-monitor']);
    expect(all.filter((m) => m[1] === 'LagMonitorCaughtUp')).toEqual(
      TARGETS.map((t) => ['MediaMirror', 'LagMonitorCaughtUp', 'service', 'lag-monitor', 'target', t]),
    );
  });

  it('ingest: failed invocations, the age of the oldest queued event, uploads pending past expiry', () => {
    const all = graphs().flatMap(metricsOf);
    const ingestId = logicalId(mirror.home, mirror.home.ingest.ingest.function);
    expect(all).toContainEqual(['AWS/Lambda', 'Errors', 'FunctionName', `ref:${ingestId}`]);
    expect(all).toContainEqual([
      'AWS/SQS',
      'ApproximateAgeOfOldestMessage',
      'QueueName',
      `att:${logicalId(mirror.home, mirror.home.ingest.queue)}.QueueName`,
    ]);
    expect(all).toContainEqual(['MediaMirror', 'UploadsPendingPastExpiry', 'service', 'reconcile']);
  });

  it('failures: replication failures per S3 target, dead-letter queues, ingest rejections', () => {
    const all = graphs().flatMap(metricsOf);
    expect(all.filter((m) => m[1] === 'ReplicationFailures').map((m) => m[5])).toEqual(S3_TARGETS);
    expect(all.filter((m) => m[1] === 'IngestRejected')).toEqual([
      ['MediaMirror', 'IngestRejected', 'service', 'ingest'],
    ]);
    const visible = JSON.stringify(all.filter((m) => m[1] === 'ApproximateNumberOfMessagesVisible'));
    expect(visible).toContain(`att:${logicalId(mirror.home, mirror.home.ingest.deadLetterQueue)}.QueueName`);
    expect(body().widgets.some((w) => w.type === 'alarm')).toBe(true);
  });
});

describe('dashboard: the pending sweep', () => {
  it('a row with the lost notifications and completions it resent (per run, the alarm line at 1) and its failed runs', () => {
    const dashboards = Object.values(resourcesOfType(home, 'AWS::CloudWatch::Dashboard'));
    const widgets = (
      JSON.parse(String(fakeResolve(props(dashboards[0] as Json).DashboardBody))) as {
        widgets: {
          type: string;
          y: number;
          properties: { title?: string; metrics?: unknown[][]; annotations?: { horizontal?: Json[] } };
        }[];
      }
    ).widgets.filter((w) => w.type === 'metric' && /pending sweep/i.test(w.properties.title ?? ''));
    expect(widgets).toHaveLength(2);
    expect(new Set(widgets.map((w) => w.y)).size).toBe(1);
    const strings = (w: (typeof widgets)[number]) =>
      (w.properties.metrics ?? []).map((m) => m.filter((x) => typeof x === 'string'));
    const [resent, failed] = widgets as [(typeof widgets)[number], (typeof widgets)[number]];
    expect(strings(resent)).toEqual([
      ['MediaMirror', 'LostNotificationsResent', 'service', 'pending-sweep'],
      ['MediaMirror', 'LostCompletionsResent', 'service', 'pending-sweep'],
    ]);
    expect(JSON.stringify(resent.properties.metrics)).toContain('"period":900');
    expect(resent.properties.annotations?.horizontal?.[0]).toMatchObject({ value: 1 });
    const sweepId = logicalId(mirror.home, mirror.home.pendingSweep.sweeper.function);
    expect(strings(failed)).toEqual([['AWS/Lambda', 'Errors', 'FunctionName', `ref:${sweepId}`]]);
  });
});

describe('lag monitor and reconcile functions', () => {
  const fnId = (which: 'lagMonitor' | 'reconciler') =>
    logicalId(mirror.home, mirror.home.monitoring[which].function);
  const grants = (which: 'lagMonitor' | 'reconciler') =>
    statementsOfFunction(home, fnId(which)).filter((s) => !actionsOf(s).some((a) => a.startsWith('logs:')));
  const tableArn = () => ({ 'Fn::GetAtt': [logicalId(mirror.home, mirror.home.ledger.table), 'Arn'] });

  it('the lag monitor runs every minute, reconcile every reconcileEveryMinutes', () => {
    for (const [which, expression] of [
      ['lagMonitor', 'rate(1 minute)'],
      ['reconciler', 'rate(30 minutes)'],
    ] as const) {
      const rules = Object.values(resourcesOfType(home, 'AWS::Events::Rule'))
        .map((r) => props(r))
        .filter((r) =>
          (r.Targets as Json[]).some(
            (t) => JSON.stringify(t.Arn) === JSON.stringify({ 'Fn::GetAtt': [fnId(which), 'Arn'] }),
          ),
        );
      expect(rules, which).toHaveLength(1);
      expect(rules[0]).toMatchObject({ ScheduleExpression: expression, State: 'ENABLED' });
      home.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        Principal: 'events.amazonaws.com',
        FunctionName: { 'Fn::GetAtt': [fnId(which), 'Arn'] },
      });
      // A failed run is not retried: the next scheduled one is. A throttled one is dropped once the
      // next is due, not kept by Lambda for 6 hours and run stale (AWS review 9, B2).
      home.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: fnId(which) },
        MaximumRetryAttempts: 0,
        MaximumEventAgeInSeconds: which === 'lagMonitor' ? 60 : 30 * 60,
      });
    }
  });

  it('reconcile runs never overlap: with an interval under 15 minutes the function times out within it (AWS review 9, B2)', () => {
    const often = Template.fromStack(
      buildTestApp(testTopology({ monitoring: { reconcileEveryMinutes: 5 } }), { nag: false }).home,
    );
    const reconcile = Object.values(resourcesOfType(often, 'AWS::Lambda::Function'))
      .map((f) => props(f))
      .filter((p) => String(p.Description ?? '').startsWith('Anti-entropy'));
    expect(reconcile).toHaveLength(1);
    expect(reconcile[0]?.Timeout).toBe(300);
    expect(
      props(
        Object.values(resourcesOfType(home, 'AWS::Lambda::Function')).find((f) =>
          String(props(f).Description ?? '').startsWith('Anti-entropy'),
        ) ?? {},
      ).Timeout,
    ).toBe(900);
  });

  it('lag monitor: GetItem, BatchGetItem, Query, PutItem, UpdateItem on the table, SendMessage to the target queues (the outbox), no S3, no DeleteItem', () => {
    const statements = grants('lagMonitor');
    const actions = statements.flatMap(actionsOf);
    expect(actions.filter((a) => a.startsWith('dynamodb:')).sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
    ]);
    const table = statements.find((s) => actionsOf(s).includes('dynamodb:GetItem')) as Statement;
    expect(resourcesOf(table)[0]).toEqual(tableArn());
    const send = statements.find((s) => actionsOf(s).includes('sqs:SendMessage')) as Statement;
    expect(actions.filter((a) => a.startsWith('sqs:'))).toEqual(['sqs:SendMessage']);
    expect(resourcesOf(send).map(text).sort()).toEqual(
      mirror.home.targets.map((t) => JSON.stringify(`att:${logicalId(mirror.home, t.queue)}.Arn`)).sort(),
    );
    expect(actions.some((a) => a.startsWith('s3:'))).toBe(false);
    expect(actions).not.toContain('dynamodb:DeleteItem');
    // No event source: it consumes no queue.
    expect(
      Object.values(resourcesOfType(home, 'AWS::Lambda::EventSourceMapping')).filter(
        (m) => JSON.stringify(props(m).FunctionName) === JSON.stringify({ Ref: fnId('lagMonitor') }),
      ),
    ).toEqual([]);
  });

  it('reconcile: Scan/Query/GetItem/BatchGetItem/DeleteItem/UpdateItem, SendMessage to every target queue, HEAD and list on the replicas', () => {
    const statements = grants('reconciler');
    const actions = statements.flatMap(actionsOf);
    // UpdateItem: the sweep ends pending uploads a day past their expiry, found through the
    // pending-uploads index (the second Query). BatchGetItem: the heads of a replica listing's page.
    expect(actions.filter((a) => a.startsWith('dynamodb:')).sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:DeleteItem',
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:Query',
      'dynamodb:Scan',
      'dynamodb:UpdateItem',
    ]);
    const pendingIndex = statements.find((s) => s.Sid === 'LedgerPendingUploadsIndex') as Statement;
    expect(text(resourcesOf(pendingIndex))).toContain('/index/pending-uploads');
    expect(actions.filter((a) => a.startsWith('sqs:'))).toEqual(['sqs:SendMessage']);
    const send = statements.find((s) => actionsOf(s).includes('sqs:SendMessage')) as Statement;
    expect(resourcesOf(send).map(text).sort()).toEqual(
      mirror.home.targets.map((t) => JSON.stringify(`att:${logicalId(mirror.home, t.queue)}.Arn`)).sort(),
    );
    const s3Actions = [...new Set(actions.filter((a) => a.startsWith('s3:')))].sort();
    expect(s3Actions).toEqual(['s3:GetObject', 's3:ListBucket']);
    const objects = statements.filter((s) => actionsOf(s).join() === 's3:GetObject');
    expect(objects.flatMap((s) => resourcesOf(s).map((r) => fakeResolve(r))).sort()).toEqual([
      'arn:aws:s3:::explicit-replica-c/media/*',
      'arn:aws:s3:::testmirror-target-a-123456789012/*',
      'arn:aws:s3:::testmirror-target-b-123456789012/*',
    ]);
    // HeadObject's 404 and the listing for foreign objects: one statement, whole buckets.
    const list = statements.find((s) => s.Sid === 'ReplicasList') as Statement;
    expect(actionsOf(list)).toEqual(['s3:ListBucket']);
    expect(
      resourcesOf(list)
        .map((r) => fakeResolve(r))
        .sort(),
    ).toEqual([
      'arn:aws:s3:::explicit-replica-c',
      'arn:aws:s3:::testmirror-target-a-123456789012',
      'arn:aws:s3:::testmirror-target-b-123456789012',
    ]);
    // The table, the queues, the replicas: never the origin.
    const originId = logicalId(mirror.home, mirror.home.origin.bucket);
    expect(text(statements)).not.toContain(originId);
    expect(text(statements)).not.toContain('testmirror-origin');
  });

  it('each is told what its own configuration reads: the table and the targets; reconcile the origin name too', () => {
    const lagEnv = environmentOf(home, fnId('lagMonitor'));
    const lag = readConfig(lagMonitorConfigSchema, { ...lagEnv, AWS_REGION: 'us-east-1' });
    const reconcile = readConfig(reconcileConfigSchema, {
      ...environmentOf(home, fnId('reconciler')),
      AWS_REGION: 'us-east-1',
    });
    for (const [which, config] of [
      ['lagMonitor', lag],
      ['reconciler', reconcile],
    ] as const) {
      expect(
        config.targets.map((t) => t.id),
        which,
      ).toEqual(TARGETS);
      expect(config.targets.find((t) => t.id === 'target-b')?.dryRun, which).toBe(true);
      expect(config.table, which).toMatch(/^ref:/);
    }
    expect(lag.feedShards).toBe(8);
    // The lag monitor reads no bucket name: it is not told the origin's.
    expect(lagEnv).not.toHaveProperty('MIRROR_ORIGIN_BUCKET');
    // Named, not granted (see the grants above): reconcile's replica stores are built with it.
    expect(reconcile.originBucket).toBe(`ref:${logicalId(mirror.home, mirror.home.origin.bucket)}`);
    const fns = resourcesOfType(home, 'AWS::Lambda::Function');
    expect(props(fns[fnId('lagMonitor')] as Json)).toMatchObject({ Timeout: 60 });
    expect(props(fns[fnId('reconciler')] as Json)).toMatchObject({ Timeout: 900 });
  });
});

describe('cdk-nag', () => {
  it('reports nothing on the app with the alarm topic, its key and a dry-run target', () => {
    const report = new AwsSolutionsChecks().validateScope(mirror.app);
    expect(
      report.violations.map(
        (v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
      ),
    ).toEqual([]);
    expect(() => mirror.app.synth()).not.toThrow();
  });

  it('the reconcile role’s object wildcards are acknowledged one by one, with the reason', () => {
    const role = mirror.home.monitoring.reconciler.role;
    const acknowledged = role.node.metadata
      .filter((m) => m.type === 'aws:cdk:acknowledged-rules')
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acknowledged.map(([id]) => id).sort()).toEqual(
      [
        'arn:aws:s3:::explicit-replica-c/media/*',
        'arn:aws:s3:::testmirror-target-a-<AWS::AccountId>/*',
        'arn:aws:s3:::testmirror-target-b-<AWS::AccountId>/*',
      ]
        .map((r) => `Annotation::AwsSolutions-IAM5[Resource::${r}]`)
        .sort(),
    );
    for (const [, reason] of acknowledged) expect(reason).toMatch(/^Reconcile checks each file by path/);
  });
});
