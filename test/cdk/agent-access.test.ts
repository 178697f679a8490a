/**
 * The on-prem agents' roles (lib/constructs/agent-access.ts): one per pull target,
 * exactly the policy docs/agent.md lists, confined to the target's own queue and
 * ledger rows, trusted through IAM Roles Anywhere unless told otherwise.
 */
import { readFileSync } from 'node:fs';
import type { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_BLOB_RECORD_KEYS,
  agentReadableKeys,
  agentRowKey,
  agentWritableKeys,
  blobKey,
  targetStateKey,
} from '../../contracts/ledger-keys.ts';
import type { AgentAccess, AgentTrust } from '../../lib/constructs/agent-access.js';
import {
  AGENT_TRUST_CONTEXT,
  agentTrustFromContext,
  buildMirrorApp,
  createMirrorApp,
  type MirrorApp,
} from '../../lib/mirror-app.js';
import {
  actionsOf,
  buildTestApp,
  fakeResolve,
  props,
  resourcesOf,
  resourcesOfType,
  type Statement,
  stringLike,
  TEST_CONTEXT,
  TEST_TOPOLOGY_INPUT,
  testTopology,
} from './fixture.js';

type Json = Record<string, unknown>;

/** The test topology with a second pull target whose id starts like the first one's. */
const TWO_PULL_TARGETS = [...TEST_TOPOLOGY_INPUT.targets, { id: 'onprem-dc1-b', kind: 'pull' }];
const PULL = ['onprem-dc1', 'onprem-dc1-b'];
const S3 = ['target-a', 'target-b', 'target-c'];

const ANCHOR =
  'arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0a1b2c3d-4e5f-6789-abcd-ef0123456789';
const USER = 'arn:aws:iam::123456789012:user/media-mirror-dc1';

function buildWith(options: {
  targets?: readonly unknown[];
  context?: Record<string, unknown>;
  agentTrust?: AgentTrust;
  agentTrustByTarget?: Record<string, AgentTrust>;
  nag?: boolean;
}): MirrorApp {
  const app: App = createMirrorApp({
    context: { ...TEST_CONTEXT, ...options.context },
  });
  return buildMirrorApp(testTopology({ targets: options.targets ?? TWO_PULL_TARGETS }), {
    app,
    nag: options.nag ?? false,
    ...(options.agentTrust ? { agentTrust: options.agentTrust } : {}),
    ...(options.agentTrustByTarget ? { agentTrustByTarget: options.agentTrustByTarget } : {}),
  });
}

const agentOf = (mirror: MirrorApp, target: string): AgentAccess => {
  const agent = mirror.home.agentAccess.get(target);
  if (!agent) throw new Error(`no agent access for ${target}`);
  return agent;
};
const logicalId = (mirror: MirrorApp, construct: { node: { defaultChild?: unknown } }) =>
  mirror.home.getLogicalId(construct.node.defaultChild as never);
const queueIdOf = (mirror: MirrorApp, target: string) => {
  const t = mirror.home.targets.find((x) => x.id === target);
  if (!t) throw new Error(target);
  return logicalId(mirror, t.queue);
};
const roleOf = (mirror: MirrorApp, target: string): Json => {
  const id = logicalId(mirror, agentOf(mirror, target).role);
  const role = resourcesOfType(Template.fromStack(mirror.home), 'AWS::IAM::Role')[id];
  if (!role) throw new Error(`no role ${id}`);
  return props(role);
};
const policyOf = (mirror: MirrorApp, target: string): Statement[] => {
  const policies = roleOf(mirror, target).Policies as { PolicyDocument: { Statement: Statement[] } }[];
  expect(policies).toHaveLength(1);
  return (policies[0] as { PolicyDocument: { Statement: Statement[] } }).PolicyDocument.Statement;
};
const trustOf = (mirror: MirrorApp, target: string): Statement[] =>
  (roleOf(mirror, target).AssumeRolePolicyDocument as { Statement: Statement[] }).Statement;
const text = (value: unknown) => JSON.stringify(fakeResolve(value));
const sorted = (values: string[]) => [...values].sort();

/** `ForAllValues:StringLike` on LeadingKeys with one key, as DynamoDB evaluates an item request. */
const allows = (patterns: string[], leadingKey: string) => patterns.some((p) => stringLike(p, leadingKey));

let mirror: MirrorApp;
let home: Template;

beforeAll(() => {
  mirror = buildWith({ nag: true });
  home = Template.fromStack(mirror.home);
}, 300_000);

describe('one role per pull target', () => {
  it('an AgentAccess per pull target, in topology order, and none for S3 targets', () => {
    expect([...mirror.home.agentAccess.keys()]).toEqual(PULL);
    for (const target of S3) expect(mirror.home.agentAccess.has(target)).toBe(false);
    for (const id of PULL) expect(agentOf(mirror, id).targetId).toBe(id);
  });

  it('exactly those roles are assumable from outside AWS (Roles Anywhere), all others by Lambda only', () => {
    const roles = resourcesOfType(home, 'AWS::IAM::Role');
    const agentRoles = PULL.map((t) => logicalId(mirror, agentOf(mirror, t).role)).sort();
    const external = Object.entries(roles)
      .filter(([, r]) => !text(props(r).AssumeRolePolicyDocument).includes('lambda.amazonaws.com'))
      .map(([id]) => id)
      .sort();
    expect(external).toEqual(agentRoles);
  });

  it('the home stack outputs each agent role ARN as AgentRole<id>', () => {
    const outputs = home.toJSON().Outputs as Record<string, { Value: unknown; Description: string }>;
    const agentOutputs = Object.keys(outputs).filter((k) => k.startsWith('AgentRole'));
    expect(agentOutputs.sort()).toEqual(['AgentRoleonpremdc1', 'AgentRoleonpremdc1b']);
    for (const [target, key] of [
      ['onprem-dc1', 'AgentRoleonpremdc1'],
      ['onprem-dc1-b', 'AgentRoleonpremdc1b'],
    ] as const) {
      const output = outputs[key];
      expect(output?.Value).toEqual({
        'Fn::GetAtt': [logicalId(mirror, agentOf(mirror, target).role), 'Arn'],
      });
      expect(output?.Description).toContain(target);
      expect(output?.Description).toContain('IAM Roles Anywhere');
    }
  });

  it('the test topology (one pull target) and a pull-only topology each get one', () => {
    expect([...buildTestApp(testTopology(), { nag: false }).home.agentAccess.keys()]).toEqual(['onprem-dc1']);
    const pullOnly = buildWith({ targets: [{ id: 'onprem-dc1', kind: 'pull' }] });
    expect([...pullOnly.home.agentAccess.keys()]).toEqual(['onprem-dc1']);
  });

  it('an S3-only topology has no agent role and no AgentRole output', () => {
    const s3Only = buildWith({ targets: TEST_TOPOLOGY_INPUT.targets.filter((t) => t.kind === 's3') });
    expect(s3Only.home.agentAccess.size).toBe(0);
    const template = Template.fromStack(s3Only.home);
    expect(Object.keys(template.toJSON().Outputs).filter((k) => k.startsWith('AgentRole'))).toEqual([]);
    expect(text(template.toJSON())).not.toContain('rolesanywhere');
  });
});

describe('the policy of an agent role', () => {
  it('exactly six statements: its queue, the origin blobs, their listing, ledger reads, blob records, ledger writes', () => {
    for (const target of PULL) {
      expect(policyOf(mirror, target).map((s) => s.Sid)).toEqual([
        'OwnQueue',
        'OriginBlobs',
        'OriginListBlobs',
        'LedgerRead',
        'LedgerReadBlobRecords',
        'LedgerBatchRead',
        'LedgerWriteOwnRows',
      ]);
      for (const s of policyOf(mirror, target)) expect(s.Effect).toBe('Allow');
    }
  });

  it('SQS: receive, delete, change visibility, attributes on its own queue only', () => {
    for (const target of PULL) {
      const statements = policyOf(mirror, target);
      const sqs = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('sqs:')));
      expect(sqs.map((s) => s.Sid)).toEqual(['OwnQueue']);
      const [own] = sqs as [Statement];
      expect(sorted(actionsOf(own))).toEqual([
        'sqs:ChangeMessageVisibility',
        'sqs:DeleteMessage',
        'sqs:GetQueueAttributes',
        'sqs:ReceiveMessage',
      ]);
      expect(resourcesOf(own)).toEqual([{ 'Fn::GetAtt': [queueIdOf(mirror, target), 'Arn'] }]);
      expect(own.Condition).toBeUndefined();
      // No other queue (another pull target's, an S3 target's, a DLQ, the ingest's) appears anywhere.
      const all = text(statements);
      for (const other of [...PULL, ...S3].filter((t) => t !== target)) {
        expect(all).not.toContain(queueIdOf(mirror, other));
      }
      const deadLetter = mirror.home.targets.find((t) => t.id === target)?.deadLetterQueue;
      expect(all).not.toContain(logicalId(mirror, deadLetter as never));
      expect(all).not.toContain(logicalId(mirror, mirror.home.ingest.queue));
    }
  });

  it('S3: GetObject and GetObjectVersion (the verified version) on the origin blobs/* only, listing limited to blobs/, nothing on replicas', () => {
    const originId = logicalId(mirror, mirror.home.origin.bucket);
    for (const target of PULL) {
      const statements = policyOf(mirror, target);
      const s3 = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
      expect(s3.map((s) => s.Sid)).toEqual(['OriginBlobs', 'OriginListBlobs']);
      const [blobs, list] = s3 as [Statement, Statement];
      expect(sorted(actionsOf(blobs))).toEqual(['s3:GetObject', 's3:GetObjectVersion']);
      expect(text(resourcesOf(blobs))).toBe(JSON.stringify([`att:${originId}.Arn/blobs/*`]));
      // Buckets of this account only (AWS review 8, A2).
      expect(blobs.Condition).toEqual({ StringEquals: { 'aws:ResourceAccount': { Ref: 'AWS::AccountId' } } });
      // ListBucket only so that an absent blob answers 404 (missing-blob), not 403; an explicit
      // listing is confined to blobs/, and a GET (no s3:prefix) still meets the IfExists condition.
      expect(actionsOf(list)).toEqual(['s3:ListBucket']);
      expect(text(resourcesOf(list))).toBe(JSON.stringify([`att:${originId}.Arn`]));
      expect(list.Condition).toEqual({
        StringEquals: { 'aws:ResourceAccount': { Ref: 'AWS::AccountId' } },
        StringLikeIfExists: { 's3:prefix': ['blobs/*'] },
      });
      expect(text(statements)).not.toContain('arn:aws:s3:::');
    }
  });

  it('DynamoDB: GetItem + Query on P#*, FEED#*, its own agent row; GetItem on B#*; BatchGetItem on both; PutItem + UpdateItem on its own rows', () => {
    const tableArn = { 'Fn::GetAtt': [logicalId(mirror, mirror.home.ledger.table), 'Arn'] };
    for (const target of PULL) {
      const statements = policyOf(mirror, target);
      const dynamo = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
      expect(dynamo.map((s) => s.Sid)).toEqual([
        'LedgerRead',
        'LedgerReadBlobRecords',
        'LedgerBatchRead',
        'LedgerWriteOwnRows',
      ]);
      const [read, blobRecords, batchRead, write] = dynamo as [Statement, Statement, Statement, Statement];
      // A version and its blob record in one request: by key only, the keys of both reads.
      expect(actionsOf(batchRead)).toEqual(['dynamodb:BatchGetItem']);
      expect(resourcesOf(batchRead)).toEqual([tableArn]);
      expect(batchRead.Condition).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['P#*', 'FEED#*', `AGENT#${target}`, 'B#*'] },
      });
      expect(sorted(actionsOf(read))).toEqual(['dynamodb:GetItem', 'dynamodb:Query']);
      expect(resourcesOf(read)).toEqual([tableArn]);
      expect(read.Condition).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['P#*', 'FEED#*', `AGENT#${target}`] },
      });
      // A blob's record tells which object version was verified; no Query (it would list waiting uploads).
      expect(actionsOf(blobRecords)).toEqual(['dynamodb:GetItem']);
      expect(resourcesOf(blobRecords)).toEqual([tableArn]);
      expect(blobRecords.Condition).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['B#*'] },
      });
      expect(sorted(actionsOf(write))).toEqual(['dynamodb:PutItem', 'dynamodb:UpdateItem']);
      expect(resourcesOf(write)).toEqual([tableArn]);
      expect(write.Condition).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`T#${target}#*`, `AGENT#${target}`] },
        'ForAllValues:StringNotEquals': {
          'dynamodb:Attributes': ['folderPk', 'folderSk', 'pendingPk', 'pendingSk'],
        },
      });
      // Never Scan, DeleteItem, batch writes or transactional calls, never an index; the one batch
      // read is by key, on keys it may GetItem anyway.
      expect(statements.flatMap(actionsOf).filter((a) => a.startsWith('dynamodb:'))).toHaveLength(6);
      expect(text(statements)).not.toContain('/index/');
    }
  });

  it('its writes may not set a secondary index key: its rows join neither the listings nor the sweeps', () => {
    // An item that carries an index's keys is in that index: the API lists the live-files index and
    // the sweeps read every pending-uploads pointer. The agent's own rows, by LeadingKeys alone,
    // could hold them (a Scan of the listing padded with its rows, the sweeps made to read millions).
    const [table] = Object.values(resourcesOfType(home, 'AWS::DynamoDB::Table')) as [Json];
    const indexes = props(table).GlobalSecondaryIndexes as { KeySchema: { AttributeName: string }[] }[];
    const indexKeys = sorted(indexes.flatMap((i) => i.KeySchema.map((k) => k.AttributeName)));
    expect(indexKeys).toEqual(['folderPk', 'folderSk', 'pendingPk', 'pendingSk']);
    expect(sorted([...mirror.home.ledger.indexKeyAttributes])).toEqual(indexKeys);
    for (const target of PULL) {
      const writes = policyOf(mirror, target).filter((s) =>
        actionsOf(s).some((a) => ['dynamodb:PutItem', 'dynamodb:UpdateItem'].includes(a)),
      );
      expect(writes.map((s) => s.Sid)).toEqual(['LedgerWriteOwnRows']);
      for (const write of writes) {
        const condition = write.Condition as Record<string, Record<string, unknown>>;
        const refused = condition['ForAllValues:StringNotEquals']?.['dynamodb:Attributes'] as
          | string[]
          | undefined;
        expect(sorted(refused ?? [])).toEqual(indexKeys);
      }
    }
  });

  it('the LeadingKeys conditions admit the keys the agent uses, and no other target’s rows', () => {
    const [dc1, dc1b] = PULL as [string, string];
    const read = agentReadableKeys(dc1);
    const write = agentWritableKeys(dc1);
    // What the agent reads (agent/aws.ts, functions/adapters/dynamo-ledger.ts).
    expect(allows(read, 'P#photos/2024/a b.jpg')).toBe(true);
    expect(allows(read, 'FEED#0')).toBe(true);
    expect(allows(read, agentRowKey(dc1).pk)).toBe(true);
    // What it writes.
    expect(allows(write, targetStateKey(dc1, 'photos/a.jpg'))).toBe(true);
    expect(allows(write, agentRowKey(dc1).pk)).toBe(true);
    // Another target's rows, even one whose id starts with this one's: neither read nor written.
    for (const key of [
      agentRowKey(dc1b).pk,
      targetStateKey(dc1b, 'photos/a.jpg'),
      targetStateKey('target-a', 'x'),
    ]) {
      expect(allows(read, key), key).toBe(false);
      expect(allows(write, key), key).toBe(false);
    }
    // Nor uploads, blobs, lag watermarks, or the version records and feed (writes).
    for (const key of ['U#upload-1', 'B#abc', 'LAG#onprem-dc1', 'P#a.jpg', 'FEED#0']) {
      expect(allows(write, key), key).toBe(false);
    }
    for (const key of ['U#upload-1', 'B#abc', 'LAG#onprem-dc1', targetStateKey(dc1, 'a.jpg')]) {
      expect(allows(read, key), key).toBe(false);
    }
    // The blob record (verified object version) it reads by GetItem: blobs only, no other row.
    expect(allows(AGENT_BLOB_RECORD_KEYS, `B#${'ab'.repeat(32)}`)).toBe(true);
    for (const key of ['U#upload-1', 'P#a.jpg', agentRowKey(dc1b).pk, targetStateKey(dc1, 'a.jpg')]) {
      expect(allows(AGENT_BLOB_RECORD_KEYS, key), key).toBe(false);
    }
    // The blob key the agent GETs is under the granted prefix.
    expect(stringLike('blobs/*', blobKey('ab'.repeat(32)))).toBe(true);
  });

  it('is the policy docs/agent.md documents, statement for statement', () => {
    const doc = readFileSync(new URL('../../docs/agent.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Credentials and what the role allows'));
    const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    expect(json).toBeDefined();
    const documented = JSON.parse(json as string).Statement as Statement[];
    // The doc writes the account as `<account>`.
    const account = (condition: unknown) =>
      condition === undefined
        ? undefined
        : JSON.parse(JSON.stringify(condition).replaceAll('{"Ref":"AWS::AccountId"}', '"<account>"'));
    const normalize = (s: Statement) => ({
      Sid: s.Sid,
      Effect: s.Effect,
      Action: sorted(actionsOf(s)),
      Condition: account(s.Condition),
    });
    expect(policyOf(mirror, 'onprem-dc1').map(normalize)).toEqual(documented.map(normalize));
  });

  it('no managed policy and no other policy is attached to an agent role', () => {
    const roleIds = PULL.map((t) => logicalId(mirror, agentOf(mirror, t).role));
    for (const target of PULL) expect(roleOf(mirror, target).ManagedPolicyArns).toBeUndefined();
    for (const policy of Object.values(resourcesOfType(home, 'AWS::IAM::Policy'))) {
      const roles = ((props(policy).Roles ?? []) as Json[]).map((r) => r.Ref);
      for (const id of roleIds) expect(roles).not.toContain(id);
    }
    home.resourceCountIs('AWS::IAM::ManagedPolicy', 0);
    home.resourceCountIs('AWS::IAM::User', 0);
    home.resourceCountIs('AWS::IAM::AccessKey', 0);
  });
});

describe('trust', () => {
  it('without a trust anchor, a principal or an explicit "any anchor", the synth fails naming the keys', () => {
    const bare = { [AGENT_TRUST_CONTEXT.anyTrustAnchor]: false };
    expect(() => buildWith({ context: bare })).toThrow(
      /pull target "onprem-dc1":\n.*without a trust anchor.*mirror:agentTrustAnchorArn.*mirror:agentPrincipalArns.*mirror:agentTrustAnyAnchor=true/,
    );
    // Principals for every pull target: nothing left to trust Roles Anywhere.
    const principals = { 'onprem-dc1': USER, 'onprem-dc1-b': USER };
    expect(() =>
      buildWith({ context: { ...bare, [AGENT_TRUST_CONTEXT.principalArns]: principals } }),
    ).not.toThrow();
    expect(() =>
      buildWith({
        context: {
          [AGENT_TRUST_CONTEXT.trustAnchorArn]: ANCHOR,
          [AGENT_TRUST_CONTEXT.anyTrustAnchor]: 'true',
        },
      }),
    ).toThrow(/set one, not both/);
  });

  it('any anchor on purpose (mirror:agentTrustAnyAnchor): Roles Anywhere from this account only may AssumeRole, TagSession and SetSourceIdentity; sessions last 1 h', () => {
    for (const target of PULL) {
      expect(trustOf(mirror, target)).toEqual([
        {
          Effect: 'Allow',
          Principal: { Service: 'rolesanywhere.amazonaws.com' },
          Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession'],
          Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
        },
      ]);
      expect(roleOf(mirror, target).MaxSessionDuration).toBe(3600);
      expect(agentOf(mirror, target).trust).toEqual({ kind: 'roles-anywhere', anyTrustAnchor: true });
    }
  });

  it('with a trust anchor and a certificate CN: conditioned on aws:SourceArn and the subject CN; an anchor without a CN only on purpose', () => {
    const app = buildWith({
      agentTrust: { kind: 'roles-anywhere', trustAnchorArn: ANCHOR, anyCertificate: true },
      agentTrustByTarget: {
        'onprem-dc1': {
          kind: 'roles-anywhere',
          trustAnchorArn: ANCHOR,
          certificateCommonName: 'dc1.example.com',
        },
      },
    });
    expect(trustOf(app, 'onprem-dc1')).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'rolesanywhere.amazonaws.com' },
        Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession'],
        Condition: {
          ArnEquals: { 'aws:SourceArn': ANCHOR },
          StringEquals: { 'aws:PrincipalTag/x509Subject/CN': 'dc1.example.com' },
        },
      },
    ]);
    expect(trustOf(app, 'onprem-dc1-b')).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'rolesanywhere.amazonaws.com' },
        Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession'],
        Condition: { ArnEquals: { 'aws:SourceArn': ANCHOR } },
      },
    ]);
    // A later deploy that names the anchor but forgets the CNs fails instead of widening the trust.
    expect(() =>
      buildWith({
        context: {
          [AGENT_TRUST_CONTEXT.anyTrustAnchor]: false,
          [AGENT_TRUST_CONTEXT.trustAnchorArn]: ANCHOR,
        },
      }),
    ).toThrow(
      /pull target "onprem-dc1":\n.*trust anchor without a certificate CN.*mirror:agentCertificateCommonNames.*mirror:agentTrustAnyCertificate=true/,
    );
    expect(() =>
      buildWith({
        context: {
          [AGENT_TRUST_CONTEXT.anyTrustAnchor]: false,
          [AGENT_TRUST_CONTEXT.trustAnchorArn]: ANCHOR,
          [AGENT_TRUST_CONTEXT.certificateCommonNames]: { 'onprem-dc1': 'dc1.example.com' },
          [AGENT_TRUST_CONTEXT.anyCertificate]: 'true',
        },
      }),
    ).not.toThrow();
  });

  it('with a principal ARN (an access-key user): that principal may AssumeRole, nothing else, no Roles Anywhere', () => {
    const app = buildWith({
      agentTrustByTarget: { 'onprem-dc1': { kind: 'principal', principalArn: USER } },
    });
    // Of this account only (AWS review 9, B6): a mistyped or pasted ARN of another account is no way in.
    expect(trustOf(app, 'onprem-dc1')).toEqual([
      {
        Effect: 'Allow',
        Principal: { AWS: USER },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:PrincipalAccount': { Ref: 'AWS::AccountId' } } },
      },
    ]);
    expect(roleOf(app, 'onprem-dc1').MaxSessionDuration).toBe(3600);
    // The other pull target keeps the default.
    expect(text(trustOf(app, 'onprem-dc1-b'))).toContain('rolesanywhere.amazonaws.com');
    const outputs = Template.fromStack(app.home).toJSON().Outputs as Record<string, { Description: string }>;
    expect(outputs.AgentRoleonpremdc1?.Description).toContain('from its IAM principal');
    // The policy does not depend on the trust.
    expect(policyOf(app, 'onprem-dc1')).toEqual(policyOf(mirror, 'onprem-dc1'));
  });

  it("a principal ARN of another account than the stack's fails the synth, naming both (AWS review 9, B6)", () => {
    const app = createMirrorApp({ context: { ...TEST_CONTEXT } });
    expect(() =>
      buildMirrorApp(testTopology({ targets: TWO_PULL_TARGETS }), {
        app,
        nag: false,
        account: '999999999999',
        agentTrustByTarget: { 'onprem-dc1': { kind: 'principal', principalArn: USER } },
      }),
    ).toThrow(/is of account 123456789012, not of this stack's 999999999999/);
  });

  it('from the CDK context: a trust anchor, CNs per target, principals per target (JSON text from -c)', () => {
    const app = buildWith({
      context: {
        [AGENT_TRUST_CONTEXT.anyTrustAnchor]: false,
        [AGENT_TRUST_CONTEXT.trustAnchorArn]: ANCHOR,
        [AGENT_TRUST_CONTEXT.certificateCommonNames]: JSON.stringify({ 'onprem-dc1': 'dc1.example.com' }),
        [AGENT_TRUST_CONTEXT.principalArns]: { 'onprem-dc1-b': USER },
      },
    });
    expect(agentOf(app, 'onprem-dc1').trust).toEqual({
      kind: 'roles-anywhere',
      trustAnchorArn: ANCHOR,
      certificateCommonName: 'dc1.example.com',
    });
    expect(agentOf(app, 'onprem-dc1-b').trust).toEqual({ kind: 'principal', principalArn: USER });
    expect(trustOf(app, 'onprem-dc1-b')).toEqual([
      {
        Effect: 'Allow',
        Principal: { AWS: USER },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:PrincipalAccount': { Ref: 'AWS::AccountId' } } },
      },
    ]);
  });

  it('refuses a bad context, naming the key', () => {
    const contextApp = (context: Record<string, unknown>) => createMirrorApp({ context });
    expect(() =>
      agentTrustFromContext(contextApp({ [AGENT_TRUST_CONTEXT.certificateCommonNames]: '{not json' })),
    ).toThrow(/mirror:agentCertificateCommonNames: not JSON/);
    expect(() => agentTrustFromContext(contextApp({ [AGENT_TRUST_CONTEXT.principalArns]: ['arn'] }))).toThrow(
      /mirror:agentPrincipalArns: expected an object of strings/,
    );
    expect(() =>
      agentTrustFromContext(
        contextApp({
          [AGENT_TRUST_CONTEXT.certificateCommonNames]: { 'onprem-dc1': 'dc1' },
          [AGENT_TRUST_CONTEXT.principalArns]: { 'onprem-dc1': USER },
        }),
      ),
    ).toThrow(/"onprem-dc1": a certificate CN and a principal ARN both set/);
  });

  it('refuses a trust for a target that is not a pull target, and malformed ARNs', () => {
    expect(() =>
      buildWith({ agentTrustByTarget: { 'target-a': { kind: 'principal', principalArn: USER } } }),
    ).toThrow(/"target-a" is not a pull target/);
    expect(() =>
      buildWith({ agentTrust: { kind: 'roles-anywhere', trustAnchorArn: 'arn:aws:iam::1:role/x' } }),
    ).toThrow(/trustAnchorArn: .* is not a trust anchor ARN/);
    expect(() =>
      buildWith({ agentTrust: { kind: 'principal', principalArn: 'arn:aws:iam::123456789012:root' } }),
    ).toThrow(/principalArn: .* is not the ARN of an IAM user or role/);
    expect(() => buildWith({ agentTrust: { kind: 'principal', principalArn: '*' } })).toThrow(/principalArn/);
    expect(() => buildWith({ agentTrust: { kind: 'roles-anywhere', certificateCommonName: 'dc*' } })).toThrow(
      /certificateCommonName/,
    );
  });
});

describe('cdk-nag', () => {
  it('reports nothing on an app with two pull targets', () => {
    const report = new AwsSolutionsChecks().validateScope(mirror.app);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}`)).toEqual([]);
    expect(report.success).toBe(true);
    expect(() => mirror.app.synth()).not.toThrow();
  });

  it('each agent role acknowledges only its blobs/* wildcard (IAM5), with a reason naming its target', () => {
    const originId = logicalId(mirror, mirror.home.origin.bucket);
    for (const target of PULL) {
      const acknowledged: [string, string][] = [];
      for (const construct of agentOf(mirror, target).node.findAll()) {
        for (const entry of construct.node.metadata) {
          if (entry.type !== 'aws:cdk:acknowledged-rules') continue;
          acknowledged.push(...Object.entries(entry.data as Record<string, string>));
        }
      }
      expect(acknowledged.map(([id]) => id)).toEqual([
        `Annotation::AwsSolutions-IAM5[Resource::<${originId}.Arn>/blobs/*]`,
      ]);
      const reason = acknowledged[0]?.[1] ?? '';
      expect(reason).toContain(`"${target}"`);
      expect(reason).toContain('blobs/');
      expect(reason.length).toBeGreaterThan(60);
    }
  });
});
