/**
 * Settings a first deploy into a real account needs (docs/deploy.md): stateful resources that a
 * failed first deploy does not leave behind, and replica buckets a browser can read from.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { QueueWithDlq } from '../../lib/constructs/queue-with-dlq.js';
import {
  AGENT_TRUST_CONTEXT,
  buildMirrorApp,
  createMirrorApp,
  LEDGER_DELETION_PROTECTION_CONTEXT,
  TERMINATION_PROTECTION_CONTEXT,
} from '../../lib/mirror-app.js';
import {
  actionsOf,
  buildTestApp,
  fakeResolve,
  props,
  resourcesOf,
  resourcesOfType,
  type Statement,
  TEST_CONTEXT,
  testTopology,
} from './fixture.ts';

// Queues too: a replaced or deleted queue takes its messages (and a DLQ the failures waiting for a
// redrive) with it, and a pull target's agent is configured with its queue's URL.
const STATEFUL = ['AWS::S3::Bucket', 'AWS::DynamoDB::Table', 'AWS::Logs::LogGroup', 'AWS::SQS::Queue'];

describe('retention', () => {
  const mirror = buildTestApp(testTopology(), { nag: false });
  const stacks = [mirror.home, ...mirror.replicas.values()];

  it('every bucket, table, log group and queue is kept on delete and on replacement, but not after a failed create', () => {
    const seen: string[] = [];
    for (const stack of stacks) {
      const template = Template.fromStack(stack);
      for (const type of STATEFUL) {
        for (const [id, resource] of Object.entries(resourcesOfType(template, type))) {
          // RETAIN_ON_UPDATE_OR_DELETE: a first deploy that rolls back deletes what it created, so
          // its retry does not fail on names that already exist.
          expect({ id, deletion: resource.DeletionPolicy, replace: resource.UpdateReplacePolicy }).toEqual({
            id,
            deletion: 'RetainExceptOnCreate',
            replace: 'Retain',
          });
          seen.push(type);
        }
      }
    }
    for (const type of STATEFUL) expect(seen).toContain(type);
  });
});

describe('replica buckets and browsers', () => {
  it('allow GET and HEAD from the API’s CORS origins, and nothing else', () => {
    const mirror = buildTestApp(testTopology(), { nag: false });
    for (const stack of mirror.replicas.values()) {
      const template = Template.fromStack(stack);
      for (const bucket of stack.buckets.values()) {
        const id = stack.getLogicalId(bucket.bucket.node.defaultChild as never);
        const rules = (
          props(resourcesOfType(template, 'AWS::S3::Bucket')[id] ?? {}).CorsConfiguration as {
            CorsRules: { AllowedMethods: string[]; AllowedOrigins: string[]; ExposedHeaders: string[] }[];
          }
        ).CorsRules;
        expect(rules).toHaveLength(1);
        expect(rules[0]?.AllowedMethods.sort()).toEqual(['GET', 'HEAD']);
        expect(rules[0]?.AllowedOrigins).toEqual(['https://cms.example.com']);
        expect(rules[0]?.ExposedHeaders).toEqual(
          expect.arrayContaining(['ETag', 'x-amz-meta-mirror-sha256']),
        );
      }
    }
  });

  it('have no CORS rule when the API names no origin', () => {
    const mirror = buildTestApp(testTopology({ api: { auth: 'iam', corsOrigins: [] } }), { nag: false });
    for (const stack of mirror.replicas.values()) {
      for (const bucket of Object.values(resourcesOfType(Template.fromStack(stack), 'AWS::S3::Bucket'))) {
        expect(props(bucket).CorsConfiguration).toBeUndefined();
      }
    }
  });
});

describe('concurrency', () => {
  it('every SQS event source caps its concurrency: ingest 10, multipart completion 5, each replicate 5', () => {
    const mirror = buildTestApp(testTopology(), { nag: false });
    const template = Template.fromStack(mirror.home);
    const caps = Object.values(resourcesOfType(template, 'AWS::Lambda::EventSourceMapping')).map((m) => {
      const p = props(m);
      const fn = String((p.FunctionName as { Ref?: string }).Ref ?? '');
      const kind = fn.startsWith('IngestFunction')
        ? 'ingest'
        : fn.startsWith('Completion')
          ? 'completion'
          : 'replicate';
      return [kind, (p.ScalingConfig as { MaximumConcurrency?: number })?.MaximumConcurrency];
    });
    expect(caps.sort()).toEqual([
      ['completion', 5],
      ['ingest', 10],
      ['replicate', 5],
      ['replicate', 5],
      ['replicate', 5],
    ]);
  });

  it('the topology raises them: ingest.maxConcurrency, and maxConcurrency of an S3 target (AWS review 9, B8)', () => {
    const topology = testTopology({
      ingest: { maxConcurrency: 50 },
      targets: [
        { id: 'target-a', kind: 's3', region: 'eu-west-1', maxConcurrency: 20 },
        { id: 'target-b', kind: 's3', region: 'ap-south-1' },
        { id: 'onprem-dc1', kind: 'pull' },
      ],
    });
    const template = Template.fromStack(buildTestApp(topology, { nag: false }).home);
    const caps = Object.values(resourcesOfType(template, 'AWS::Lambda::EventSourceMapping')).map(
      (m) => (props(m).ScalingConfig as { MaximumConcurrency?: number })?.MaximumConcurrency,
    );
    expect(caps.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([5, 5, 20, 50]);
    // Lambda's range for an SQS event source's maximum concurrency.
    expect(() => testTopology({ ingest: { maxConcurrency: 1 } })).toThrow(/maxConcurrency/);
    expect(() => testTopology({ ingest: { maxConcurrency: 1001 } })).toThrow(/maxConcurrency/);
  });
});

describe('the ledger’s deletion protection', () => {
  const protection = (context: Record<string, unknown>) => {
    const app = createMirrorApp({ context: { ...TEST_CONTEXT, ...context } });
    const mirror = buildMirrorApp(testTopology(), { app, nag: false });
    const tables = Object.values(resourcesOfType(Template.fromStack(mirror.home), 'AWS::DynamoDB::Table'));
    expect(tables).toHaveLength(1);
    return props(tables[0] ?? {}).DeletionProtectionEnabled;
  };

  it('is off by default: the rollback of a failed first deploy must be able to delete the table it created', () => {
    expect(protection({})).toBe(false);
  });

  it('is turned on with -c mirror:ledgerDeletionProtection=true once the first deploy succeeded', () => {
    expect(protection({ [LEDGER_DELETION_PROTECTION_CONTEXT]: 'true' })).toBe(true);
    expect(protection({ [LEDGER_DELETION_PROTECTION_CONTEXT]: true })).toBe(true);
    expect(protection({ [LEDGER_DELETION_PROTECTION_CONTEXT]: 'false' })).toBe(false);
  });

  it('anything but true or false fails the synth, naming the key', () => {
    expect(() => protection({ [LEDGER_DELETION_PROTECTION_CONTEXT]: 'yes' })).toThrow(
      /mirror:ledgerDeletionProtection .* expected true or false, got "yes"/,
    );
  });
});

describe('termination protection', () => {
  const build = (context: Record<string, unknown>) => {
    const app = createMirrorApp({ context: { ...TEST_CONTEXT, ...context } });
    return buildMirrorApp(testTopology(), { app, nag: false });
  };
  const warnings = (mirror: ReturnType<typeof build>) =>
    Annotations.fromStack(mirror.home).findWarning(
      '*',
      Match.stringLikeRegexp('Not protected against deletion'),
    );

  it('is off by default on every stack (a first deploy that rolled back must be deletable), and the synth says how to turn both protections on', () => {
    const mirror = build({});
    expect([mirror.home, ...mirror.replicas.values()].map((s) => s.terminationProtection)).toEqual(
      Array(1 + mirror.replicas.size).fill(false),
    );
    expect(mirror.replicas.size).toBeGreaterThan(0);
    const [warning] = warnings(mirror);
    expect(String(warning?.entry.data)).toContain(
      `-c ${LEDGER_DELETION_PROTECTION_CONTEXT}=true -c ${TERMINATION_PROTECTION_CONTEXT}=true`,
    );
  });

  it('-c mirror:terminationProtection=true protects every stack; with the ledger protected too, no warning', () => {
    const mirror = build({ [TERMINATION_PROTECTION_CONTEXT]: 'true' });
    for (const stack of [mirror.home, ...mirror.replicas.values()])
      expect(stack.terminationProtection).toBe(true);
    expect(String(warnings(mirror)[0]?.entry.data)).not.toContain(TERMINATION_PROTECTION_CONTEXT);
    const both = build({
      [TERMINATION_PROTECTION_CONTEXT]: true,
      [LEDGER_DELETION_PROTECTION_CONTEXT]: true,
    });
    expect(warnings(both)).toEqual([]);
    expect(() => build({ [TERMINATION_PROTECTION_CONTEXT]: 'yes' })).toThrow(
      /mirror:terminationProtection .* expected true or false, got "yes"/,
    );
  });
});

describe('agents trusting any trust anchor', () => {
  const anchorWarnings = (context: Record<string, unknown>) => {
    const app = createMirrorApp({ context: { ...TEST_CONTEXT, ...context } });
    const mirror = buildMirrorApp(testTopology(), { app, nag: false });
    return Annotations.fromStack(mirror.home).findWarning('*', Match.stringLikeRegexp('any trust anchor'));
  };

  it('mirror:agentTrustAnyAnchor=true warns at synth, naming the pull targets and what to set (AWS review 8, A3)', () => {
    const [warning, ...more] = anchorWarnings({});
    expect(more).toEqual([]);
    expect(String(warning?.entry.data)).toMatch(
      /agent roles of onprem-dc1 trust any trust anchor of the account.*mirror:agentTrustAnchorArn.*mirror:agentCertificateCommonNames/,
    );
  });

  it('a named trust anchor, with certificate CNs, does not warn', () => {
    expect(
      anchorWarnings({
        [AGENT_TRUST_CONTEXT.anyTrustAnchor]: false,
        [AGENT_TRUST_CONTEXT.trustAnchorArn]: 'arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/abc',
        [AGENT_TRUST_CONTEXT.anyCertificate]: true,
      }),
    ).toEqual([]);
  });
});

describe('CORS origins of the local stack', () => {
  const corsWarnings = (corsOrigins: string[]) => {
    const app = createMirrorApp({ context: TEST_CONTEXT });
    const topology = testTopology({ api: { auth: 'iam', corsOrigins } });
    const mirror = buildMirrorApp(topology, { app, nag: false });
    return Annotations.fromStack(mirror.home).findWarning(
      '*',
      Match.stringLikeRegexp('api.corsOrigins allows'),
    );
  };

  it('plain-HTTP or loopback origins in a deployed topology warn, naming them; https origins do not', () => {
    const [warning] = corsWarnings(['http://localhost:8787', 'https://cms.example.com', 'https://127.0.0.1']);
    expect(String(warning?.entry.data)).toContain('allows http://localhost:8787, https://127.0.0.1 (');
    expect(corsWarnings(['https://cms.example.com'])).toEqual([]);
  });

  it("'*' warns as any origin, not as plain HTTP or this machine", () => {
    const [warning, ...more] = corsWarnings(['*', 'https://cms.example.com']);
    expect(more).toEqual([]);
    expect(String(warning?.entry.data)).toMatch(/api\.corsOrigins allows any origin \('\*'\): any web page/);
    expect(String(warning?.entry.data)).not.toContain('plain HTTP');
  });
});

describe('queue retention', () => {
  it('a standard queue whose DLQ would not outlive it is refused; a FIFO queue may match its DLQ', () => {
    const stack = new Stack();
    expect(
      () =>
        new QueueWithDlq(stack, 'Same', {
          visibilityTimeout: Duration.minutes(1),
          retentionPeriod: Duration.days(14),
          deadLetterRetentionPeriod: Duration.days(14),
        }),
    ).toThrow(/dead-letter queue must keep messages longer/);
    expect(
      () =>
        new QueueWithDlq(stack, 'Fifo', {
          visibilityTimeout: Duration.minutes(1),
          fifo: true,
          retentionPeriod: Duration.days(14),
          deadLetterRetentionPeriod: Duration.days(14),
        }),
    ).not.toThrow();
  });
});

describe('who may name a queue as its dead-letter queue', () => {
  // SQS asks nothing of a queue that another names in its RedrivePolicy: without a RedriveAllowPolicy,
  // anyone in the account who may create a queue could make ours its dead-letter queue and have SQS
  // move messages into the ingest, a target's or the completion queue, past every SendMessage grant.
  it('every queue the mirror feeds refuses to be any queue’s dead-letter queue (RedriveAllowPolicy denyAll)', () => {
    const home = Template.fromStack(buildTestApp(testTopology(), { nag: false }).home);
    const queues = resourcesOfType(home, 'AWS::SQS::Queue');
    const deadLetterIds = new Set(
      Object.values(queues).flatMap((q) => {
        const target = (props(q).RedrivePolicy as { deadLetterTargetArn?: { 'Fn::GetAtt': [string] } })
          ?.deadLetterTargetArn;
        return target ? [target['Fn::GetAtt'][0]] : [];
      }),
    );
    const fed = Object.entries(queues).filter(([id]) => !deadLetterIds.has(id));
    // ingest, completion and the four targets' queues of the test topology
    expect(fed).toHaveLength(6);
    for (const [id, queue] of fed)
      expect({ id, allow: props(queue).RedriveAllowPolicy }).toEqual({
        id,
        allow: { redrivePermission: 'denyAll' },
      });
  });

  // A dead-letter queue cannot name its source queue in its own properties (the source's
  // RedrivePolicy names the DLQ's ARN: a cycle), so a custom resource sets it once both exist.
  const home = Template.fromStack(buildTestApp(testTopology(), { nag: false }).home);
  const queues = resourcesOfType(home, 'AWS::SQS::Queue');
  /** Source queue id → its dead-letter queue's id. */
  const deadLetterOf = new Map(
    Object.entries(queues).flatMap(([id, q]) => {
      const target = (props(q).RedrivePolicy as { deadLetterTargetArn?: { 'Fn::GetAtt': [string] } })
        ?.deadLetterTargetArn;
      return target ? [[id, target['Fn::GetAtt'][0]] as const] : [];
    }),
  );
  type SdkCall = { service: string; action: string; parameters: Record<string, unknown> };
  /** Every SQS SetQueueAttributes a custom resource of the stack makes, by phase. */
  const attributeCalls = Object.entries(home.toJSON().Resources as Record<string, Record<string, unknown>>)
    .filter(([, r]) => String(r.Type).startsWith('Custom::'))
    .flatMap(([id, r]) =>
      (['Create', 'Update', 'Delete'] as const).flatMap((phase) => {
        const raw = props(r)[phase];
        if (raw === undefined) return [];
        const call = JSON.parse(String(fakeResolve(raw))) as SdkCall;
        if (call.service.toLowerCase() !== 'sqs' || !/^setQueueAttributes$/i.test(call.action)) return [];
        return [{ id, phase, resource: r, parameters: call.parameters }];
      }),
    );

  it('each dead-letter queue accepts only its own source queue (RedriveAllowPolicy byQueue, on create and update)', () => {
    // ingest, completion and the four targets of the test topology
    expect(deadLetterOf.size).toBe(6);
    const set = new Map<string, unknown[]>();
    for (const { phase, parameters } of attributeCalls) {
      expect(phase).not.toBe('Delete');
      const attributes = parameters.Attributes as Record<string, string>;
      expect(Object.keys(attributes)).toEqual(['RedriveAllowPolicy']);
      const key = `${phase} ${String(parameters.QueueUrl)}`;
      set.set(key, [...(set.get(key) ?? []), JSON.parse(attributes.RedriveAllowPolicy ?? '')]);
    }
    const expected = new Map(
      [...deadLetterOf].flatMap(([source, dlq]) =>
        ['Create', 'Update'].map((phase) => [
          `${phase} ref:${dlq}`,
          [{ redrivePermission: 'byQueue', sourceQueueArns: [`att:${source}.Arn`] }],
        ]),
      ),
    );
    expect(Object.fromEntries(set)).toEqual(Object.fromEntries(expected));
  });

  it('one provider function for the whole stack; each call may set the attributes of its own dead-letter queue only', () => {
    const creates = attributeCalls.filter((c) => c.phase === 'Create');
    expect(creates).toHaveLength(deadLetterOf.size);
    const tokens = new Set(creates.map((c) => JSON.stringify(props(c.resource).ServiceToken)));
    expect(tokens.size).toBe(1);
    const policies = resourcesOfType(home, 'AWS::IAM::Policy');
    for (const { id, resource, parameters } of creates) {
      const dlq = /^ref:(.+)$/.exec(String(parameters.QueueUrl))?.[1];
      // The policy the call was given: CloudFormation creates it before the call runs.
      const own = ((resource.DependsOn ?? []) as string[]).filter((d) => d in policies);
      expect(own, id).toHaveLength(1);
      const statements = (
        props(policies[own[0] as string] ?? {}).PolicyDocument as { Statement: Statement[] }
      ).Statement;
      expect(
        statements.map((s) => ({ effect: s.Effect, actions: actionsOf(s), resources: resourcesOf(s) })),
        id,
      ).toEqual([
        { effect: 'Allow', actions: ['sqs:SetQueueAttributes'], resources: [{ 'Fn::GetAtt': [dlq, 'Arn'] }] },
      ]);
    }
  });
});

describe("Lambda's 4 KB of environment variables", () => {
  const s3Targets = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ id: `region-copy-${i}`, kind: 's3', region: 'eu-west-1' }));

  it('the shipped size of topology synthesizes; one whose MIRROR_TARGETS would pass 4 KB once deployed fails the synth, naming the function', () => {
    const fits = buildTestApp(testTopology({ targets: s3Targets(8) }), { nag: false });
    expect(() => fits.app.synth()).not.toThrow();
    const tooMany = buildTestApp(testTopology({ targets: s3Targets(24) }), { nag: false });
    expect(() => tooMany.app.synth()).toThrow(
      /environment of .*Api\/Handler would take about \d+ bytes once deployed; Lambda allows 4096 in all \(largest: MIRROR_TARGETS/,
    );
  });
});

describe('access log buckets', () => {
  it('are versioned, so a log overwritten or deleted stays recoverable for 90 days; current logs expire after a year', () => {
    const mirror = buildTestApp(testTopology(), { nag: false });
    let seen = 0;
    for (const stack of [mirror.home, ...mirror.replicas.values()]) {
      const buckets = resourcesOfType(Template.fromStack(stack), 'AWS::S3::Bucket');
      const logBuckets = new Set(
        Object.values(buckets).flatMap((bucket) => {
          const logging = props(bucket).LoggingConfiguration as
            | { DestinationBucketName?: { Ref?: string } }
            | undefined;
          return logging?.DestinationBucketName?.Ref ? [logging.DestinationBucketName.Ref] : [];
        }),
      );
      expect(logBuckets.size).toBeGreaterThan(0);
      for (const id of logBuckets) {
        const bucket = props(buckets[id] ?? {});
        expect({ id, versioning: bucket.VersioningConfiguration }).toEqual({
          id,
          versioning: { Status: 'Enabled' },
        });
        const rules = (bucket.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
        expect(rules).toContainEqual(expect.objectContaining({ ExpirationInDays: 365, Status: 'Enabled' }));
        expect(rules).toContainEqual(
          expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 90 }, Status: 'Enabled' }),
        );
        expect(rules).toContainEqual(
          expect.objectContaining({ ExpiredObjectDeleteMarker: true, Status: 'Enabled' }),
        );
        seen++;
      }
    }
    expect(seen).toBeGreaterThanOrEqual(2);
  });
});
