import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPLICA_MAX_RECEIVES } from '../../contracts/replica-copy.js';
import {
  completeMultipartConfigSchema,
  readConfig,
  readRuntimeConfig,
} from '../../functions/adapters/runtime-config.js';
import type { MirrorApp } from '../../lib/mirror-app.js';
import type { Statement } from './fixture.js';
import {
  actionsOf,
  buildTestApp,
  environmentOf,
  fakeResolve,
  functionIdsWithEnv,
  mirrorFunctionIds,
  props,
  resourcesOf,
  resourcesOfType,
  sdkCallFunctionId,
  statementsOfFunction,
  testTopology,
} from './fixture.js';

let mirror: MirrorApp;
let home: Template;

const logicalId = (construct: { node: { defaultChild?: unknown } }, template: MirrorApp['home']) =>
  template.getLogicalId(construct.node.defaultChild as never);

beforeAll(() => {
  // The one app of this file: bundled for real with esbuild, checked by cdk-nag.
  mirror = buildTestApp(testTopology(), { bundle: true });
  home = Template.fromStack(mirror.home);
  // Synchronous: vitest fails a hook that returns after its timeout. Bundling every function and
  // cdk-nag took ~120 s on a loaded 2-core machine: the margin is for the CI run, not the work.
}, 300_000);

describe('origin bucket', () => {
  it('is versioned, SSE-S3 encrypted, private, access-logged, with lifecycle and CORS', () => {
    const originId = logicalId(mirror.home.origin.bucket, mirror.home);
    const origin = resourcesOfType(home, 'AWS::S3::Bucket')[originId];
    expect(origin).toBeDefined();
    expect(props(origin as never)).toMatchObject({
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LoggingConfiguration: { DestinationBucketName: { Ref: expect.any(String) } },
    });
    home.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' }),
        ]),
      },
      CorsConfiguration: {
        CorsRules: [
          {
            AllowedOrigins: ['https://cms.example.com'],
            AllowedMethods: ['PUT', 'GET', 'HEAD'],
            AllowedHeaders: [
              'content-type',
              'content-length',
              'x-amz-checksum-sha256',
              'x-amz-meta-mirror-upload',
            ],
            ExposedHeaders: ['ETag'],
          },
        ],
      },
      BucketName: { 'Fn::Join': ['', ['testmirror-origin-', { Ref: 'AWS::AccountId' }]] },
    });
  });

  it('every bucket of every stack is encrypted, private and denies non-TLS requests', () => {
    for (const stack of [mirror.home, ...mirror.replicas.values()]) {
      const template = Template.fromStack(stack);
      const buckets = resourcesOfType(template, 'AWS::S3::Bucket');
      expect(Object.keys(buckets).length).toBeGreaterThan(0);
      for (const [id, bucket] of Object.entries(buckets)) {
        expect(props(bucket).BucketEncryption, id).toBeDefined();
        expect(props(bucket).PublicAccessBlockConfiguration, id).toEqual({
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        });
        expectDenyAll(template, id, { Bool: { 'aws:SecureTransport': 'false' } });
      }
    }
  });

  /** The origin and every replica bucket (the logged ones: not the access-log buckets). */
  const servingBuckets = () => {
    const buckets = [
      [mirror.home, logicalId(mirror.home.origin.bucket, mirror.home)],
      ...[...mirror.replicas.values()].flatMap((stack) =>
        Object.entries(resourcesOfType(Template.fromStack(stack), 'AWS::S3::Bucket'))
          .filter(([, bucket]) => props(bucket).LoggingConfiguration !== undefined)
          .map(([id]) => [stack, id] as const),
      ),
    ] as const;
    expect(buckets.length).toBeGreaterThan(1);
    return buckets;
  };

  it('the origin and every replica bucket refuse requests under TLS 1.2, presigned ones included', () => {
    for (const [stack, id] of servingBuckets()) {
      expectDenyAll(Template.fromStack(stack), id, { NumericLessThan: { 's3:TlsVersion': 1.2 } });
    }
  });

  it("the origin and every replica bucket refuse a presigned URL signed longer ago than the API's URLs live, and SigV2", () => {
    const ttlMs = testTopology().limits.presignTtlSeconds * 1000;
    for (const [stack, id] of servingBuckets()) {
      expectDenyAll(Template.fromStack(stack), id, {
        StringEquals: { 's3:authType': 'REST-QUERY-STRING' },
        NumericGreaterThan: { 's3:signatureAge': ttlMs },
      });
      expectDenyAll(Template.fromStack(stack), id, { StringEquals: { 's3:signatureversion': 'AWS' } });
    }
    // A topology with shorter URLs gets the shorter cap.
    const short = buildTestApp({
      ...testTopology(),
      limits: { ...testTopology().limits, presignTtlSeconds: 120 },
    });
    expectDenyAll(Template.fromStack(short.home), logicalId(short.home.origin.bucket, short.home), {
      StringEquals: { 's3:authType': 'REST-QUERY-STRING' },
      NumericGreaterThan: { 's3:signatureAge': 120_000 },
    });
  });

  it('notifies the ingest queue of objects created under blobs/, after the queue policy lets S3 send', () => {
    const originId = logicalId(mirror.home.origin.bucket, mirror.home);
    const queueId = logicalId(mirror.home.ingest.queue, mirror.home);
    const origin = home.findResources('AWS::S3::Bucket')[originId];
    expect(origin?.Properties.NotificationConfiguration).toEqual({
      QueueConfigurations: [
        {
          Event: 's3:ObjectCreated:*',
          Filter: { S3Key: { Rules: [{ Name: 'prefix', Value: 'blobs/' }] } },
          Queue: { 'Fn::GetAtt': [queueId, 'Arn'] },
        },
      ],
    });
    const [policyId] = Object.entries(resourcesOfType(home, 'AWS::SQS::QueuePolicy')).find(([, p]) =>
      (props(p).Queues as unknown[]).some((q) => JSON.stringify(q) === JSON.stringify({ Ref: queueId })),
    ) ?? [undefined];
    expect(policyId).toBeDefined();
    expect(origin?.DependsOn).toContain(policyId);
    home.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queueId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 's3.amazonaws.com' },
            Action: 'sqs:SendMessage',
            Condition: {
              ArnEquals: {
                'aws:SourceArn': {
                  'Fn::Join': [
                    '',
                    [
                      'arn:',
                      { Ref: 'AWS::Partition' },
                      ':s3:::testmirror-origin-',
                      { Ref: 'AWS::AccountId' },
                    ],
                  ],
                },
              },
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            },
          }),
        ]),
      },
    });
    // No custom-resource Lambda for notifications.
    expect(Object.keys(home.findResources('Custom::S3BucketNotifications'))).toHaveLength(0);
  });
});

describe('ledger', () => {
  it('is one table pk/sk, on demand, PITR, encrypted, protected and retained, with the keys-only live-files and pending-uploads indexes', () => {
    home.resourceCountIs('AWS::DynamoDB::Table', 1);
    home.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'RetainExceptOnCreate',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
          { AttributeName: 'folderPk', AttributeType: 'S' },
          { AttributeName: 'folderSk', AttributeType: 'S' },
          { AttributeName: 'pendingPk', AttributeType: 'S' },
          { AttributeName: 'pendingSk', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        // Idempotency records carry `ttl` (their expiry, epoch seconds): without the rule they pile
        // up, one per mutating call, forever.
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        SSESpecification: { SSEEnabled: true },
        // Off by default: a protected table would fail the rollback of a failed first deploy.
        DeletionProtectionEnabled: false,
        GlobalSecondaryIndexes: [
          {
            IndexName: 'live-files',
            KeySchema: [
              { AttributeName: 'folderPk', KeyType: 'HASH' },
              { AttributeName: 'folderSk', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'KEYS_ONLY' },
          },
          {
            // The pending pointers alone, so that the sweeps query them instead of scanning the table.
            IndexName: 'pending-uploads',
            KeySchema: [
              { AttributeName: 'pendingPk', KeyType: 'HASH' },
              { AttributeName: 'pendingSk', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'KEYS_ONLY' },
          },
        ],
        LocalSecondaryIndexes: Match.absent(),
      },
    });
  });
});

describe('queues', () => {
  it('ingest: standard queue, SSE, visibility 6x the 15-minute function timeout, DLQ after 5 receives', () => {
    const queueId = logicalId(mirror.home.ingest.queue, mirror.home);
    const dlqId = logicalId(mirror.home.ingest.deadLetterQueue, mirror.home);
    const queues = resourcesOfType(home, 'AWS::SQS::Queue');
    expect(props(queues[queueId] as never)).toMatchObject({
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 5400,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 5 },
    });
    expect(props(queues[queueId] as never).FifoQueue).toBeUndefined();
    expect(props(queues[dlqId] as never)).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1209600,
    });
    // A standard queue's DLQ counts a message's age from its first enqueue: a week in the queue
    // leaves at least a week in the DLQ.
    expect(props(queues[queueId] as never).MessageRetentionPeriod).toBe(7 * 86400);
    const ingestFn = resourcesOfType(home, 'AWS::Lambda::Function')[
      logicalId(mirror.home.ingest.ingest.function, mirror.home)
    ];
    expect(props(ingestFn as never)).toMatchObject({ Timeout: 900, MemorySize: 1024 });
  });

  it('completion: standard queue, SSE, visibility 6x the 5-minute function timeout, DLQ after 5 receives', () => {
    const queueId = logicalId(mirror.home.completion.queue, mirror.home);
    const dlqId = logicalId(mirror.home.completion.deadLetterQueue, mirror.home);
    const queues = resourcesOfType(home, 'AWS::SQS::Queue');
    expect(props(queues[queueId] as never)).toMatchObject({
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 1800,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 5 },
    });
    expect(props(queues[queueId] as never).FifoQueue).toBeUndefined();
    expect(props(queues[dlqId] as never)).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1209600,
    });
    // A standard queue's DLQ counts a message's age from its first enqueue: a week in the queue
    // leaves at least a week in the DLQ.
    expect(props(queues[queueId] as never).MessageRetentionPeriod).toBe(7 * 86400);
    const fn = resourcesOfType(home, 'AWS::Lambda::Function')[
      logicalId(mirror.home.completion.completer.function, mirror.home)
    ];
    expect(props(fn as never)).toMatchObject({ Timeout: 300, MemorySize: 256 });
  });

  it('one FIFO queue and one FIFO DLQ per target, high-throughput, no content-based dedup', () => {
    const queues = resourcesOfType(home, 'AWS::SQS::Queue');
    const fifo = Object.entries(queues).filter(([, q]) => props(q).FifoQueue === true);
    expect(fifo).toHaveLength(2 * 4);
    for (const target of mirror.home.targets) {
      const q = props(queues[logicalId(target.queue, mirror.home)] as never);
      const dlqId = logicalId(target.deadLetterQueue, mirror.home);
      const dlq = props(queues[dlqId] as never);
      for (const settings of [q, dlq]) {
        expect(settings, target.id).toMatchObject({
          FifoQueue: true,
          ContentBasedDeduplication: false,
          DeduplicationScope: 'messageGroup',
          FifoThroughputLimit: 'perMessageGroupId',
          SqsManagedSseEnabled: true,
        });
      }
      expect(q.RedrivePolicy, target.id).toEqual({
        deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] },
        // An S3 target's large copy continues over many invocations, each a receive.
        maxReceiveCount: target.kind === 's3' ? REPLICA_MAX_RECEIVES : 5,
      });
    }
  });

  it('every queue denies non-TLS requests', () => {
    const queues = Object.keys(resourcesOfType(home, 'AWS::SQS::Queue'));
    for (const id of queues) {
      home.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 'sqs:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });
});

describe('functions', () => {
  it('every function runs nodejs24.x on arm64, bundled as ESM, with its own role and log group', () => {
    const functions = resourcesOfType(home, 'AWS::Lambda::Function');
    // api, ingest, complete-multipart, one replicate per S3 target, lag monitor, reconcile, the
    // lost-notification sweep; and CDK's AwsCustomResource function (below)
    const own = mirrorFunctionIds(home);
    expect(own).toHaveLength(1 + 1 + 1 + 3 + 2 + 1);
    expect(Object.keys(functions)).toHaveLength(own.length + 1);
    for (const id of own) {
      expect(props(functions[id] ?? {}), id).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        LoggingConfig: { LogGroup: { Ref: expect.any(String) } },
      });
    }
    // CDK's own handler, which names no architecture (x86_64): the runtime, its own role and its own
    // log group hold all the same.
    expect(props(functions[sdkCallFunctionId(home)] ?? {})).toMatchObject({
      Runtime: 'nodejs24.x',
      LoggingConfig: { LogGroup: { Ref: expect.any(String) } },
    });
    const roles = new Set(Object.values(functions).map((fn) => JSON.stringify(props(fn).Role)));
    expect(roles.size).toBe(Object.keys(functions).length);
    for (const group of Object.values(resourcesOfType(home, 'AWS::Logs::LogGroup'))) {
      expect(props(group).RetentionInDays).toBeGreaterThan(0);
    }
    // No role carries a managed policy (AWSLambdaBasicExecutionRole grants logs on every group).
    for (const role of Object.values(resourcesOfType(home, 'AWS::IAM::Role'))) {
      expect(props(role).ManagedPolicyArns).toBeUndefined();
    }
  });

  it('one replicate function per S3 target, none for the pull target', () => {
    for (const target of ['target-a', 'target-b', 'target-c']) {
      expect(functionIdsWithEnv(home, 'MIRROR_TARGET_ID', target), target).toHaveLength(1);
    }
    expect(functionIdsWithEnv(home, 'MIRROR_TARGET_ID', 'onprem-dc1')).toHaveLength(0);
    const pull = mirror.home.targets.find((t) => t.id === 'onprem-dc1');
    expect(pull?.replicator).toBeUndefined();
  });

  it('SQS event sources: batch 10 (completions: 1) with partial batch failures, each function on its own queue', () => {
    const mappings = Object.values(resourcesOfType(home, 'AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(1 + 1 + 3);
    const completer = { Ref: logicalId(mirror.home.completion.completer.function, mirror.home) };
    for (const m of mappings) {
      const batchSize = JSON.stringify(props(m).FunctionName) === JSON.stringify(completer) ? 1 : 10;
      expect(props(m)).toMatchObject({
        BatchSize: batchSize,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
    }
    // One CompleteMultipartUpload per invocation, at most 5 at once.
    home.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: completer,
      EventSourceArn: { 'Fn::GetAtt': [logicalId(mirror.home.completion.queue, mirror.home), 'Arn'] },
      BatchSize: 1,
      ScalingConfig: { MaximumConcurrency: 5 },
    });
    for (const target of mirror.home.targets) {
      const fn = target.replicator;
      if (!fn) continue;
      home.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: logicalId(fn.function, mirror.home) },
        EventSourceArn: { 'Fn::GetAtt': [logicalId(target.queue, mirror.home), 'Arn'] },
      });
    }
    home.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(mirror.home.ingest.ingest.function, mirror.home) },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(mirror.home.ingest.queue, mirror.home), 'Arn'] },
    });
  });

  it("every function's environment satisfies readRuntimeConfig (the handlers' own parser)", () => {
    const accountBucket = (id: string) => `testmirror-${id}-123456789012`;
    // The lag monitor reads no bucket and is told none: monitoring.test.ts checks it with its own schema.
    const lagMonitor = logicalId(mirror.home.monitoring.lagMonitor.function, mirror.home);
    // Nor does the lost-notification sweep learn the targets or the limits: pending-sweep.test.ts.
    const sweep = logicalId(mirror.home.pendingSweep.sweeper.function, mirror.home);
    // Nor does the multipart completion: see below, with its own schema.
    const completer = logicalId(mirror.home.completion.completer.function, mirror.home);
    for (const id of mirrorFunctionIds(home)) {
      if (id === lagMonitor || id === sweep || id === completer) continue;
      const env = environmentOf(home, id);
      expect(env.MIRROR_S3_FORCE_PATH_STYLE, id).toBeUndefined();
      const config = readRuntimeConfig({ ...env, AWS_REGION: 'us-east-1' });
      expect(config.feedShards).toBe(8);
      expect(config.maxUploadBytes).toBe(1073741824);
      expect(config.presignTtlSeconds).toBe(600);
      expect(config.contentTypes).toEqual(['image/*', 'application/pdf']);
      expect(config.originBucket).toMatch(/^ref:/);
      expect(config.table).toMatch(/^ref:/);
      if (config.targetId === undefined) {
        expect(config.targets.map((t) => t.id)).toEqual(['target-a', 'target-b', 'target-c', 'onprem-dc1']);
        expect(config.targets[0]).toMatchObject({
          kind: 's3',
          region: 'eu-west-1',
          bucket: accountBucket('target-a'),
          keyPrefix: '',
        });
        expect(config.targets[1]).toMatchObject({ region: 'ap-south-1', pathPrefix: 'images/' });
        expect(config.targets[2]).toMatchObject({ bucket: 'explicit-replica-c', keyPrefix: 'media/' });
        expect(config.targets[3]).toMatchObject({ kind: 'pull', keyPrefix: '' });
        expect(config.targets[3]?.bucket).toBeUndefined();
      } else {
        // A replicate function learns its own target only.
        expect(config.targets.map((t) => t.id)).toEqual([config.targetId]);
        expect(config.targets[0]?.bucket).toBeDefined();
      }
      for (const t of config.targets) expect(t.queueUrl).toMatch(/^ref:/);
    }
  });
});

describe('least privilege', () => {
  const replicateOf = (target: string) => {
    const [id] = functionIdsWithEnv(home, 'MIRROR_TARGET_ID', target);
    if (!id) throw new Error(`no replicate function for ${target}`);
    return id;
  };
  const queueIdOf = (target: string) => {
    const t = mirror.home.targets.find((x) => x.id === target);
    if (!t) throw new Error(target);
    return logicalId(t.queue, mirror.home);
  };
  const text = (value: unknown) => JSON.stringify(fakeResolve(value));

  it('no policy anywhere has a wildcard action or a "*" resource', () => {
    const statements = [mirror.home, ...mirror.replicas.values()].flatMap((stack) =>
      Object.values(resourcesOfType(Template.fromStack(stack), 'AWS::IAM::Policy')).flatMap(
        (policy) => (props(policy).PolicyDocument as { Statement: Statement[] }).Statement,
      ),
    );
    expect(statements.length).toBeGreaterThan(0);
    for (const action of statements.flatMap(actionsOf)) expect(action).not.toContain('*');
    for (const resource of statements.flatMap(resourcesOf)) expect(resource).not.toBe('*');
  });

  it('replicate for target A reaches its own bucket and queue, never those of B or C', () => {
    const statements = statementsOfFunction(home, replicateOf('target-a'));
    const all = text(statements);
    expect(all).toContain('testmirror-target-a-123456789012');
    expect(all).toContain(queueIdOf('target-a'));
    expect(all).not.toContain('target-b');
    expect(all).not.toContain('explicit-replica-c');
    expect(all).not.toContain(queueIdOf('target-b'));
    expect(all).not.toContain(queueIdOf('target-c'));
    expect(all).not.toContain(queueIdOf('onprem-dc1'));
    // Objects: the four actions the issue lists and ListParts; the bucket: ListBucket only (HEAD on a missing key → 404).
    const objects = statements.find((s) => s.Sid === 'ReplicaObjects');
    expect(objects && actionsOf(objects).sort()).toEqual([
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetObject',
      // A large copy the deadline stopped is continued from the parts its upload holds.
      's3:ListMultipartUploadParts',
      's3:PutObject',
    ]);
    expect(objects && text(resourcesOf(objects))).toBe(
      JSON.stringify(['arn:aws:s3:::testmirror-target-a-123456789012/*']),
    );
    const list = statements.find((s) => s.Sid === 'ReplicaHeadMissingAs404');
    expect(list && actionsOf(list)).toEqual(['s3:ListBucket']);
    expect(list && text(resourcesOf(list))).toBe(
      JSON.stringify(['arn:aws:s3:::testmirror-target-a-123456789012']),
    );
    // No SendMessage: a replicate function consumes, it does not fan out.
    expect(statements.flatMap(actionsOf)).not.toContain('sqs:SendMessage');
    expect(statements.flatMap(actionsOf)).not.toContain('dynamodb:DeleteItem');
  });

  it('replicate with a key prefix is confined to it', () => {
    const statements = statementsOfFunction(home, replicateOf('target-c'));
    const objects = statements.find((s) => s.Sid === 'ReplicaObjects');
    expect(objects && text(resourcesOf(objects))).toBe(
      JSON.stringify(['arn:aws:s3:::explicit-replica-c/media/*']),
    );
  });

  it('origin access is on blobs/* only, with the actions each function needs', () => {
    const originId = logicalId(mirror.home.origin.bucket, mirror.home);
    const blobs = JSON.stringify([`att:${originId}.Arn/blobs/*`]);
    const expectations: [string, string[]][] = [
      [
        logicalId(mirror.home.api.handler.function, mirror.home),
        ['s3:AbortMultipartUpload', 's3:GetObject', 's3:GetObjectVersion', 's3:PutObject'],
      ],
      [
        logicalId(mirror.home.ingest.ingest.function, mirror.home),
        // AbortMultipartUpload: a multipart upload the ingest finds expired is aborted.
        ['s3:AbortMultipartUpload', 's3:DeleteObjectVersion', 's3:GetObject', 's3:GetObjectVersion'],
      ],
      [replicateOf('target-a'), ['s3:GetObject', 's3:GetObjectVersion']],
    ];
    for (const [fn, actions] of expectations) {
      const statements = statementsOfFunction(home, fn);
      const origin = statements.find((s) => s.Sid === 'OriginBlobs');
      expect(origin && actionsOf(origin).sort(), fn).toEqual(actions);
      expect(origin && text(resourcesOf(origin)), fn).toBe(blobs);
      // Nothing else names the origin's objects.
      const others = statements.filter(
        (s) => s !== origin && text(resourcesOf(s)).includes(`${originId}.Arn/`),
      );
      expect(others, fn).toEqual([]);
    }
  });

  it('the api role has no delete on any bucket, and reads replicas, sends to every target queue and the completion queue', () => {
    const statements = statementsOfFunction(home, logicalId(mirror.home.api.handler.function, mirror.home));
    const actions = statements.flatMap(actionsOf);
    expect(actions).not.toContain('s3:DeleteObject');
    expect(actions).not.toContain('s3:DeleteObjectVersion');
    // ListBucket on the buckets alone: a content URL of a missing copy answers 404, not 403.
    for (const s of statements.filter((st) => actionsOf(st).includes('s3:ListBucket'))) {
      expect(actionsOf(s)).toEqual(['s3:ListBucket']);
      expect(text(resourcesOf(s))).not.toContain('/');
    }
    expect(new Set(actions.filter((a) => a.startsWith('sqs:')))).toEqual(new Set(['sqs:SendMessage']));
    // Multipart completions: SendMessage on the completion queue alone, in a statement of its own.
    const completions = statements.find((s) => s.Sid === 'SendCompletions') as Statement;
    expect(actionsOf(completions)).toEqual(['sqs:SendMessage']);
    expect(resourcesOf(completions).map((r) => text(r))).toEqual([
      JSON.stringify(`att:${logicalId(mirror.home.completion.queue, mirror.home)}.Arn`),
    ]);
    const send = statements.find(
      (s) => actionsOf(s).includes('sqs:SendMessage') && s.Sid !== 'SendCompletions',
    );
    expect(
      resourcesOf(send as never)
        .map((r) => text(r))
        .sort(),
    ).toEqual(
      ['target-a', 'target-b', 'target-c', 'onprem-dc1']
        .map((t) => JSON.stringify(`att:${queueIdOf(t)}.Arn`))
        .sort(),
    );
    const reads = statements.filter((s) => actionsOf(s).join() === 's3:GetObject' && s.Sid !== 'OriginBlobs');
    expect(reads.flatMap((s) => resourcesOf(s).map((r) => fakeResolve(r))).sort()).toEqual([
      'arn:aws:s3:::explicit-replica-c/media/*',
      'arn:aws:s3:::testmirror-target-a-123456789012/*',
      'arn:aws:s3:::testmirror-target-b-123456789012/*',
    ]);
    const table = statements.find((s) => s.Sid === 'Ledger') as Statement;
    expect([...actionsOf(table)].sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:GetItem',
      'dynamodb:Query',
    ]);
    // Its writes only under the content's partitions (test/cdk/function-policies.test.ts has the keys).
    const writes = statements.find((s) => s.Sid === 'LedgerWrites') as Statement;
    expect([...actionsOf(writes)].sort()).toEqual([
      'dynamodb:ConditionCheckItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
    ]);
    // Its deletes in a statement of their own, under narrower partitions (AWS review 9, B9).
    const deletes = statements.find((s) => s.Sid === 'LedgerWritesDeleteItem') as Statement;
    expect(actionsOf(deletes)).toEqual(['dynamodb:DeleteItem']);
    // The path policy's folder rule and the file listing: the live-files index alone, not every index.
    const index = statements.find((s) => s.Sid === 'LedgerLiveFilesIndex') as Statement;
    expect(actionsOf(index)).toEqual(['dynamodb:Query', 'dynamodb:Scan']);
    expect(JSON.stringify(resourcesOf(index))).toContain('/index/live-files');
    expect(JSON.stringify(statements)).not.toContain('/index/*');
  });

  it('the ingest sends to every target queue and consumes only the ingest queue', () => {
    const statements = statementsOfFunction(home, logicalId(mirror.home.ingest.ingest.function, mirror.home));
    const consume = statements.filter((s) => actionsOf(s).includes('sqs:ReceiveMessage'));
    expect(consume.flatMap((s) => resourcesOf(s).map(text))).toEqual([
      JSON.stringify(`att:${logicalId(mirror.home.ingest.queue, mirror.home)}.Arn`),
    ]);
    const send = statements.filter((s) => actionsOf(s).includes('sqs:SendMessage'));
    // The four target queues, and its own queue: a verification continues there.
    expect(send.flatMap((s) => resourcesOf(s))).toHaveLength(5);
    expect(send.flatMap((s) => resourcesOf(s).map(text))).toContain(
      JSON.stringify(`att:${logicalId(mirror.home.ingest.queue, mirror.home)}.Arn`),
    );
    expect(statements.flatMap(actionsOf)).not.toContain('s3:PutObject');
  });

  it('the multipart completion learns the ledger and the origin only; the API, its queue', () => {
    const completer = logicalId(mirror.home.completion.completer.function, mirror.home);
    const env = environmentOf(home, completer);
    const config = readConfig(completeMultipartConfigSchema, { ...env, AWS_REGION: 'us-east-1' });
    expect(config.table).toMatch(/^ref:/);
    expect(config.originBucket).toMatch(/^ref:/);
    expect(
      Object.keys(env)
        .filter((k) => k.startsWith('MIRROR_'))
        .sort(),
    ).toEqual(['MIRROR_ORIGIN_BUCKET', 'MIRROR_TABLE']);
    const api = resourcesOfType(home, 'AWS::Lambda::Function')[
      logicalId(mirror.home.api.handler.function, mirror.home)
    ];
    const apiEnv = (props(api as never).Environment as { Variables: Record<string, unknown> }).Variables;
    expect(apiEnv.MIRROR_COMPLETION_QUEUE_URL).toEqual({
      Ref: logicalId(mirror.home.completion.queue, mirror.home),
    });
    expect(apiEnv.MIRROR_INGEST_QUEUE_URL).toBeUndefined();
  });

  it('among the background functions only the multipart completion may write the origin blobs', () => {
    const completer = logicalId(mirror.home.completion.completer.function, mirror.home);
    const ingest = logicalId(mirror.home.ingest.ingest.function, mirror.home);
    expect(statementsOfFunction(home, completer).flatMap(actionsOf)).toContain('s3:PutObject');
    expect(statementsOfFunction(home, ingest).flatMap(actionsOf)).not.toContain('s3:PutObject');
    // It consumes its own queue only, and sends nowhere.
    const statements = statementsOfFunction(home, completer);
    const consume = statements.filter((s) => actionsOf(s).includes('sqs:ReceiveMessage'));
    expect(consume.flatMap((s) => resourcesOf(s).map(text))).toEqual([
      JSON.stringify(`att:${logicalId(mirror.home.completion.queue, mirror.home)}.Arn`),
    ]);
    expect(statements.flatMap(actionsOf)).not.toContain('sqs:SendMessage');
  });

  it('the ingest knows its own queue, where a verification too long for one invocation goes on', () => {
    const fn = resourcesOfType(home, 'AWS::Lambda::Function')[
      logicalId(mirror.home.ingest.ingest.function, mirror.home)
    ];
    const env = (props(fn as never).Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.MIRROR_INGEST_QUEUE_URL).toEqual({ Ref: logicalId(mirror.home.ingest.queue, mirror.home) });
    // That chain may run past Lambda's loop detection (about 16 links): the ingest alone is allowed.
    expect(props(fn as never).RecursiveLoop).toBe('Allow');
    const others = Object.entries(resourcesOfType(home, 'AWS::Lambda::Function')).filter(
      ([, other]) => other !== fn && props(other as never).RecursiveLoop !== undefined,
    );
    expect(others.map(([id]) => id)).toEqual([]);
  });

  it('each function writes only its own log group', () => {
    for (const id of Object.keys(resourcesOfType(home, 'AWS::Lambda::Function'))) {
      const fn = resourcesOfType(home, 'AWS::Lambda::Function')[id];
      const group = (props(fn as never).LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      const logs = statementsOfFunction(home, id).filter((s) =>
        actionsOf(s).some((a) => a.startsWith('logs:')),
      );
      expect(logs.flatMap((s) => resourcesOf(s))).toEqual([{ 'Fn::GetAtt': [group, 'Arn'] }]);
    }
  });
});

describe('upload API', () => {
  it('routes /v1/* to one Lambda integration behind IAM, and GET /v1/health without auth', () => {
    home.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    home.resourceCountIs('AWS::ApiGatewayV2::Integration', 1);
    home.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
    });
    const routes = Object.values(resourcesOfType(home, 'AWS::ApiGatewayV2::Route')).map((r) => props(r));
    const byKey = new Map(routes.map((r) => [r.RouteKey as string, r]));
    const open = ['GET /v1/health', 'HEAD /v1/health'];
    expect([...byKey.keys()].sort()).toEqual(
      [...open, ...['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT'].map((m) => `${m} /v1/{proxy+}`)].sort(),
    );
    for (const key of open) expect(byKey.get(key)?.AuthorizationType).toBe('NONE');
    for (const [key, route] of byKey) {
      if (open.includes(key)) continue;
      expect(route.AuthorizationType, key).toBe('AWS_IAM');
    }
    home.resourceCountIs('AWS::ApiGatewayV2::Authorizer', 0);
  });

  it('the open health routes have a throttle of their own, far below the API’s: anonymous callers take little of the api function (AWS review 6, L2)', () => {
    home.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      RouteSettings: {
        'GET /v1/health': { ThrottlingRateLimit: 5, ThrottlingBurstLimit: 10 },
        'HEAD /v1/health': { ThrottlingRateLimit: 5, ThrottlingBurstLimit: 10 },
      },
    });
  });

  it('the $default stage is auto-deployed, throttled and access-logged, naming the caller (IAM ARN or JWT subject)', () => {
    home.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      AccessLogSettings: {
        DestinationArn: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] },
        Format: Match.stringLikeRegexp('\\$context\\.requestId'),
      },
    });
    const stage = Object.values(resourcesOfType(home, 'AWS::ApiGatewayV2::Stage'))[0] as {
      Properties: { AccessLogSettings: { Format: string } };
    };
    expect(JSON.parse(stage.Properties.AccessLogSettings.Format)).toMatchObject({
      callerArn: '$context.identity.userArn',
      callerAccount: '$context.identity.accountId',
      tokenSubject: '$context.authorizer.claims.sub',
    });
  });

  it('CORS allows the topology origins', () => {
    home.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: Match.objectLike({ AllowOrigins: ['https://cms.example.com'] }),
    });
  });

  it("CORS lets a page read the answers' Date: a signer on a computer whose clock is off signs with the API's time", () => {
    home.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: Match.objectLike({ ExposeHeaders: Match.arrayWith(['date']) }),
    });
  });
});

describe('alarms', () => {
  it('one alarm per dead-letter queue: visible messages >= 1, missing data not breaching', () => {
    const dlqs = [
      mirror.home.ingest.deadLetterQueue,
      mirror.home.completion.deadLetterQueue,
      ...mirror.home.targets.map((t) => t.deadLetterQueue),
    ];
    const alarms = Object.values(resourcesOfType(home, 'AWS::CloudWatch::Alarm'))
      .map((a) => props(a))
      // The ingest queue's age alarm is the other SQS alarm (test/cdk/monitoring.test.ts).
      .filter((a) => a.Namespace === 'AWS/SQS' && a.MetricName === 'ApproximateNumberOfMessagesVisible');
    expect(alarms).toHaveLength(dlqs.length);
    for (const dlq of dlqs) {
      const dlqId = logicalId(dlq, mirror.home);
      const matching = alarms.filter((a) =>
        JSON.stringify(a.Dimensions).includes(JSON.stringify({ 'Fn::GetAtt': [dlqId, 'QueueName'] })),
      );
      expect(matching, dlqId).toHaveLength(1);
      expect(matching[0]).toMatchObject({
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Namespace: 'AWS/SQS',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
  });
});

/** The bucket's policy denies every S3 action to everyone under `condition`. */
function expectDenyAll(template: Template, bucketId: string, condition: Record<string, unknown>): void {
  template.hasResourceProperties('AWS::S3::BucketPolicy', {
    Bucket: { Ref: bucketId },
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({ Effect: 'Deny', Action: 's3:*', Principal: { AWS: '*' }, Condition: condition }),
      ]),
    },
  });
}
