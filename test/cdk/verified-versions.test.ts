/**
 * Verified bytes are pinned by object version (docs/design-notes.md, "Verified bytes are
 * pinned"): the origin keeps versions, and every role that reads a blob may read it by
 * version id, while only the ingest may delete a version.
 */
import { App, CliCredentialsStackSynthesizer, type Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ORIGIN_CONFIGURATION_UNGUARDED } from '../../lib/constructs/origin-store.js';
import {
  buildMirrorApp,
  createMirrorApp,
  type MirrorApp,
  ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT,
  originConfigurationPrincipalsFromContext,
} from '../../lib/mirror-app.js';
import {
  actionsOf,
  buildTestApp,
  fakeResolve,
  functionIdsWithEnv,
  props,
  resourcesOf,
  resourcesOfType,
  type Statement,
  statementsOfFunction,
  TEST_CONTEXT,
  testTopology,
} from './fixture.js';

let mirror: MirrorApp;
let home: Template;
let originId: string;

const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
  mirror.home.getLogicalId(construct.node.defaultChild as never);
const text = (value: unknown) => JSON.stringify(fakeResolve(value));
/** The statements of the origin bucket's policy in a home stack. */
const originPolicyStatements = (stack: Stack): Record<string, unknown>[] => {
  const template = Template.fromStack(stack);
  const bucket = stack.getLogicalId((stack as MirrorApp['home']).origin.bucket.node.defaultChild as never);
  return Object.values(resourcesOfType(template, 'AWS::S3::BucketPolicy'))
    .filter((p) => text((props(p as never).Bucket as unknown) ?? '') === text({ Ref: bucket }))
    .flatMap((p) => (props(p as never).PolicyDocument as { Statement: Record<string, unknown>[] }).Statement);
};
const CONFIGURATION_ACTIONS = [
  's3:DeleteBucketPolicy',
  's3:PutBucketPolicy',
  's3:PutBucketVersioning',
  's3:PutLifecycleConfiguration',
];
const configurationDeny = (stack: Stack) =>
  originPolicyStatements(stack).find(
    (s) => s.Effect === 'Deny' && [s.Action].flat().includes('s3:PutBucketVersioning'),
  );
/** The bootstrap's execution role as the DefaultStackSynthesizer names it (fakeResolve's account and region). */
const PLACEHOLDER = { partition: '$' + '{AWS::Partition}', account: '$' + '{AWS::AccountId}' };
const execRole = (qualifier: string) =>
  `arn:aws:iam::123456789012:role/cdk-${qualifier}-cfn-exec-role-123456789012-us-east-1`;
const originBlobActions = (statements: Statement[]) =>
  statements
    .filter((s) => text(resourcesOf(s)).includes(`att:${originId}.Arn/blobs/*`))
    .flatMap(actionsOf)
    .sort();

beforeAll(() => {
  mirror = buildTestApp(testTopology(), { nag: false });
  home = Template.fromStack(mirror.home);
  originId = logicalId(mirror.home.origin.bucket);
}, 300_000);

describe('verified bytes pinned by object version', () => {
  it('the origin bucket is versioned, and no lifecycle rule expires a version (a pinned one is noncurrent while another lies over it)', () => {
    const bucket = resourcesOfType(home, 'AWS::S3::Bucket')[originId];
    expect(bucket && props(bucket).VersioningConfiguration).toEqual({ Status: 'Enabled' });
    const rules = (props(bucket as never).LifecycleConfiguration as { Rules: Record<string, unknown>[] })
      .Rules;
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      expect(rule, String(rule.Id)).not.toHaveProperty('NoncurrentVersionExpiration');
      expect(rule, String(rule.Id)).not.toHaveProperty('NoncurrentVersionTransitions');
      expect(rule, String(rule.Id)).not.toHaveProperty('ExpirationInDays');
    }
  });

  it('no one writes a delete marker over a blob: the bucket policy denies s3:DeleteObject on blobs/* to every principal', () => {
    const policies = Object.values(resourcesOfType(home, 'AWS::S3::BucketPolicy')).filter(
      (p) => text((props(p as never).Bucket as unknown) ?? '') === text({ Ref: originId }),
    );
    const statements = policies.flatMap(
      (p) => (props(p as never).PolicyDocument as { Statement: Record<string, unknown>[] }).Statement,
    );
    const deny = statements.find((s) => s.Sid === 'NoDeleteMarkersOverBlobs');
    expect(deny).toMatchObject({ Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:DeleteObject' });
    expect(text(deny?.Resource)).toContain(`${originId}.Arn/blobs/*`);
  });

  it('no one but the ingest deletes a blob version: the bucket policy denies s3:DeleteObjectVersion on blobs/* to every other principal (AWS review 9, B1)', () => {
    const policies = Object.values(resourcesOfType(home, 'AWS::S3::BucketPolicy')).filter(
      (p) => text((props(p as never).Bucket as unknown) ?? '') === text({ Ref: originId }),
    );
    const statements = policies.flatMap(
      (p) => (props(p as never).PolicyDocument as { Statement: Record<string, unknown>[] }).Statement,
    );
    const deny = statements.find((s) => s.Effect === 'Deny' && s.Action === 's3:DeleteObjectVersion');
    expect(deny).toMatchObject({ Principal: { AWS: '*' } });
    expect(text(deny?.Resource)).toContain(`${originId}.Arn/blobs/*`);
    // Its one exception is the ingest's role, by its ARN.
    const ingestRole = logicalId(mirror.home.ingest.ingest.role);
    expect(deny?.Condition).toEqual({
      ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [ingestRole, 'Arn'] } },
    });
  });

  it('every function that reads origin blobs may read them by version id', () => {
    const readers = Object.keys(resourcesOfType(home, 'AWS::Lambda::Function')).filter((id) =>
      originBlobActions(statementsOfFunction(home, id)).includes('s3:GetObject'),
    );
    const api = logicalId(mirror.home.api.handler.function);
    const ingest = logicalId(mirror.home.ingest.ingest.function);
    const replicates = functionIdsWithEnv(home, 'MIRROR_TARGET_ID');
    expect(replicates.length).toBeGreaterThan(0);
    // At least these read blobs (others may, e.g. a sweep that HEADs them): all of them by version too.
    for (const id of [api, ingest, ...replicates]) expect(readers, id).toContain(id);
    // The multipart completion only HEADs the current object (has S3 completed it already?): it
    // reads no bytes, so it has no use for a pinned version.
    const completion = logicalId(mirror.home.completion.completer.function);
    for (const id of readers.filter((r) => r !== completion)) {
      expect(originBlobActions(statementsOfFunction(home, id)), id).toContain('s3:GetObjectVersion');
    }
  });

  it('only the ingest deletes a blob version; no other function deletes anything in the origin', () => {
    const ingest = logicalId(mirror.home.ingest.ingest.function);
    expect(originBlobActions(statementsOfFunction(home, ingest))).toEqual(
      expect.arrayContaining(['s3:DeleteObjectVersion', 's3:GetObject', 's3:GetObjectVersion']),
    );
    // By version id only: a DeleteObject without one writes a delete marker over the pinned version.
    expect(originBlobActions(statementsOfFunction(home, ingest))).not.toContain('s3:DeleteObject');
    for (const id of Object.keys(resourcesOfType(home, 'AWS::Lambda::Function'))) {
      if (id === ingest) continue;
      const actions = originBlobActions(statementsOfFunction(home, id));
      expect(actions, id).not.toContain('s3:DeleteObject');
      expect(actions, id).not.toContain('s3:DeleteObjectVersion');
    }
  });

  it('each agent role reads the verified version: s3:GetObjectVersion on blobs/*, GetItem on B#* only', () => {
    expect(mirror.home.agentAccess.size).toBeGreaterThan(0);
    for (const [target, access] of mirror.home.agentAccess) {
      const role = resourcesOfType(home, 'AWS::IAM::Role')[logicalId(access.role)];
      const statements = (
        props(role as never).Policies as { PolicyDocument: { Statement: Statement[] } }[]
      ).flatMap((p) => p.PolicyDocument.Statement);
      expect(originBlobActions(statements), target).toEqual(['s3:GetObject', 's3:GetObjectVersion']);
      const records = statements.find((s) => s.Sid === 'LedgerReadBlobRecords');
      expect(records && actionsOf(records), target).toEqual(['dynamodb:GetItem']);
      expect(records?.Condition, target).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['B#*'] },
      });
      // A version read with its blob record (BatchGetItem) is by key too.
      const batch = statements.find((s) => s.Sid === 'LedgerBatchRead');
      expect(batch && actionsOf(batch), target).toEqual(['dynamodb:BatchGetItem']);
      // Nothing else of the agent's may touch B#* rows (no Query listing the uploads waiting there).
      for (const s of statements.filter((x) => x !== records && x !== batch))
        expect(text(s.Condition ?? {})).not.toContain('B#');
    }
  });
});

describe('the origin bucket configuration that undoes verified bytes (AWS review 9, B1)', () => {
  const build = (context: Record<string, unknown>, appProps: ConstructorParameters<typeof App>[0] = {}) =>
    buildMirrorApp(testTopology(), {
      app: createMirrorApp({ ...appProps, context: { ...TEST_CONTEXT, ...context } }),
      nag: false,
    });
  const unguarded = (stack: Stack) =>
    Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('are not guarded'));

  it('no one but the role CloudFormation deploys with may suspend versioning, change lifecycle rules, or put or delete the bucket policy', () => {
    const deny = configurationDeny(mirror.home);
    expect(deny).toMatchObject({
      Sid: 'OnlyTheDeployChangesBucketConfiguration',
      Principal: { AWS: '*' },
      Resource: { 'Fn::GetAtt': [originId, 'Arn'] },
    });
    expect([deny?.Action].flat().sort()).toEqual(CONFIGURATION_ACTIONS);
    // The DefaultStackSynthesizer's execution role, the one `cdk deploy` hands CloudFormation.
    expect(fakeResolve(deny?.Condition)).toEqual({
      ArnNotLike: { 'aws:PrincipalArn': execRole('hnb659fds') },
    });
    // The synthesizer leaves its placeholders to the deploy; the template has the pseudo parameters.
    expect(mirror.home.synthesizer.cloudFormationExecutionRole).toBe(
      `arn:${PLACEHOLDER.partition}:iam::${PLACEHOLDER.account}:role/cdk-hnb659fds-cfn-exec-role-${PLACEHOLDER.account}-us-east-1`,
    );
    expect(text(deny?.Condition)).not.toContain('AWS::');
    expect(unguarded(mirror.home)).toEqual([]);
  });

  it('follows the bootstrap qualifier, and keeps the execution role beside principals named in the context (cdk deploy --role-arn)', () => {
    const deployer = 'arn:aws:iam::123456789012:role/media-mirror-deployer';
    const { home } = build({
      '@aws-cdk/core:bootstrapQualifier': 'mirror1',
      [ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT]: deployer,
    });
    expect(fakeResolve(configurationDeny(home)?.Condition)).toEqual({
      ArnNotLike: { 'aws:PrincipalArn': [execRole('mirror1'), deployer] },
    });
  });

  it('a synthesizer that names no execution role (CliCredentialsStackSynthesizer) denies nothing and warns with an acknowledgeable id, until the deploying principal is named', () => {
    const cliCredentials = { defaultStackSynthesizer: new CliCredentialsStackSynthesizer() };
    const { home } = build({}, cliCredentials);
    expect(home.synthesizer.cloudFormationExecutionRole).toBeUndefined();
    // Denying everyone would refuse the stack's own next update of the bucket or its policy.
    expect(configurationDeny(home)).toBeUndefined();
    const [warning, ...more] = unguarded(home);
    expect(more).toEqual([]);
    expect(String(warning?.entry.data)).toContain(ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT);
    expect(String(warning?.entry.data)).toContain(`[ack: ${ORIGIN_CONFIGURATION_UNGUARDED}]`);

    const deployers = [
      'arn:aws:iam::123456789012:role/ci-deploy',
      'arn:aws:iam::123456789012:user/release-admin',
    ];
    const named = build({ [ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT]: deployers }, cliCredentials).home;
    expect(configurationDeny(named)?.Condition).toEqual({
      ArnNotLike: { 'aws:PrincipalArn': deployers },
    });
    expect(unguarded(named)).toEqual([]);
  });

  it('the context key takes IAM role or user ARNs, comma-separated or as a JSON array, and refuses anything else', () => {
    const parse = (value: unknown) =>
      originConfigurationPrincipalsFromContext(
        new App({ context: { [ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT]: value } }),
      );
    expect(originConfigurationPrincipalsFromContext(new App())).toEqual([]);
    expect(parse('arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/path/b')).toEqual([
      'arn:aws:iam::123456789012:role/a',
      'arn:aws:iam::123456789012:role/path/b',
    ]);
    for (const bad of ['', 'media-mirror-deployer', ['arn:aws:sts::123456789012:assumed-role/a/s'], 42]) {
      expect(() => parse(bad), JSON.stringify(bad)).toThrow(/mirror:originConfigurationPrincipalArns/);
    }
  });
});
