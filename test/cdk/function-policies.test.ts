/**
 * Each function's IAM policy, action by action and resource by resource, against the table
 * docs/deploy.md ("What each function may do") states: a grant added, widened or dropped fails
 * here, and the table must change with it. Resources are named by what they are (`ledger`,
 * `origin/blobs/*`, `queue:<target>`, `replica:<target>/<keyPrefix>*`, `own log group`).
 */
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { MirrorApp } from '../../lib/mirror-app.js';
import {
  actionsOf,
  buildTestApp,
  fakeResolve,
  functionIdsWithEnv,
  resourcesOf,
  resourcesOfType,
  statementsOfFunction,
  testTopology,
} from './fixture.ts';

let mirror: MirrorApp;
let home: Template;

beforeAll(() => {
  mirror = buildTestApp(testTopology(), { nag: false });
  home = Template.fromStack(mirror.home);
});

/** Logical id prefixes of the home stack's resources, and what each one is. */
function nameOf(resource: string): string {
  const replica =
    /^arn:aws:s3:::(?:testmirror-(target-[a-z])-123456789012|explicit-replica-(c))(\/.*)?$/.exec(resource);
  if (replica) return `replica:${replica[1] ?? `target-${replica[2]}`}${replica[3] ?? ''}`;
  const attribute = /^att:([A-Za-z0-9]+)\.Arn(\/.*)?$/.exec(resource);
  if (!attribute) return resource;
  const [, id = '', suffix = ''] = attribute;
  if (/Logs[0-9A-F]{8}$/.test(id)) return `own log group${suffix}`;
  if (id.startsWith('LedgerTable')) return `ledger${suffix}`;
  if (id.startsWith('OriginBucket')) return `origin${suffix}`;
  if (id.startsWith('IngestQueue')) return `queue:ingest${suffix}`;
  if (id.startsWith('CompletionQueue')) return `queue:completion${suffix}`;
  const target = mirror.home.targets.find((t) => id.startsWith(`Target${t.id.replaceAll('-', '')}Queue`));
  return target ? `queue:${target.id}${suffix}` : resource;
}

/** A function's grants as sorted `action resource` lines; every statement must Allow, unconditioned. */
function grantsOf(functionId: string): string[] {
  const lines = new Set<string>();
  for (const statement of statementsOfFunction(home, functionId)) {
    expect(statement.Effect).toBe('Allow');
    expect(statement.Condition).toBeUndefined();
    for (const action of actionsOf(statement)) {
      for (const resource of resourcesOf(statement))
        lines.add(`${action} ${nameOf(String(fakeResolve(resource)))}`);
    }
  }
  return [...lines].sort();
}

function functionId(pattern: RegExp): string {
  const ids = Object.keys(resourcesOfType(home, 'AWS::Lambda::Function')).filter((id) => pattern.test(id));
  if (ids.length !== 1) throw new Error(`expected one function matching ${pattern}, found ${ids.join(', ')}`);
  return ids[0] as string;
}

const LOGS = ['logs:CreateLogStream own log group', 'logs:PutLogEvents own log group'];
const CONSUMES = (queue: string) =>
  [
    'sqs:ChangeMessageVisibility',
    'sqs:DeleteMessage',
    'sqs:GetQueueAttributes',
    'sqs:GetQueueUrl',
    'sqs:ReceiveMessage',
  ].map((action) => `${action} queue:${queue}`);
const FAN_OUT = ['onprem-dc1', 'target-a', 'target-b', 'target-c'].map((t) => `sqs:SendMessage queue:${t}`);
const ledger = (...actions: string[]) => actions.map((a) => `dynamodb:${a} ledger`);
const REPLICA_OBJECTS = ['target-a/*', 'target-b/*', 'target-c/media/*'];

const EXPECTED: Record<string, string[]> = {
  // ConditionCheckItem: a commit (delete, restore, a proven duplicate) checks each folder of the
  // path in its TransactWriteItems, and IAM authorizes a ConditionCheck by that action alone.
  api: [
    ...LOGS,
    ...ledger(
      'BatchGetItem',
      'ConditionCheckItem',
      'DeleteItem',
      'GetItem',
      'PutItem',
      'Query',
      'UpdateItem',
    ),
    'dynamodb:Query ledger/index/live-files',
    'dynamodb:Scan ledger/index/live-files',
    ...['AbortMultipartUpload', 'GetObject', 'GetObjectVersion', 'PutObject'].map(
      (a) => `s3:${a} origin/blobs/*`,
    ),
    ...FAN_OUT,
    ...REPLICA_OBJECTS.map((r) => `s3:GetObject replica:${r}`),
    // Multipart completions run in the complete-multipart function.
    'sqs:SendMessage queue:completion',
  ],
  ingest: [
    ...LOGS,
    ...ledger('ConditionCheckItem', 'DeleteItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'),
    'dynamodb:Query ledger/index/live-files',
    // Never PutObject: the ingest verifies bytes, it does not write them.
    ...['AbortMultipartUpload', 'DeleteObject', 'DeleteObjectVersion', 'GetObject', 'GetObjectVersion'].map(
      (a) => `s3:${a} origin/blobs/*`,
    ),
    's3:ListBucket origin',
    ...FAN_OUT,
    ...CONSUMES('ingest'),
    // A verification too long for one invocation goes on in a message to its own queue.
    'sqs:SendMessage queue:ingest',
  ],
  // Reads the upload and its parts, rejects one S3 refuses; PutObject is CompleteMultipartUpload,
  // GetObject the HEAD that tells "completed already" from "expired".
  'complete-multipart': [
    ...LOGS,
    ...ledger('DeleteItem', 'GetItem', 'Query', 'UpdateItem'),
    ...['AbortMultipartUpload', 'GetObject', 'PutObject'].map((a) => `s3:${a} origin/blobs/*`),
    's3:ListBucket origin',
    ...CONSUMES('completion'),
  ],
  'replicate target-a': [
    ...LOGS,
    // BatchGetItem: head, target row and blob in one read (readForReplication).
    ...ledger('BatchGetItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'),
    's3:GetObject origin/blobs/*',
    's3:GetObjectVersion origin/blobs/*',
    ...['AbortMultipartUpload', 'DeleteObject', 'GetObject', 'ListMultipartUploadParts', 'PutObject'].map(
      (a) => `s3:${a} replica:target-a/*`,
    ),
    's3:ListBucket replica:target-a',
    ...CONSUMES('target-a'),
  ],
  'replicate target-b': [
    ...LOGS,
    // BatchGetItem: head, target row and blob in one read (readForReplication).
    ...ledger('BatchGetItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'),
    's3:GetObject origin/blobs/*',
    's3:GetObjectVersion origin/blobs/*',
    ...['AbortMultipartUpload', 'DeleteObject', 'GetObject', 'ListMultipartUploadParts', 'PutObject'].map(
      (a) => `s3:${a} replica:target-b/*`,
    ),
    's3:ListBucket replica:target-b',
    ...CONSUMES('target-b'),
  ],
  'replicate target-c': [
    ...LOGS,
    // BatchGetItem: head, target row and blob in one read (readForReplication).
    ...ledger('BatchGetItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'),
    's3:GetObject origin/blobs/*',
    's3:GetObjectVersion origin/blobs/*',
    ...['AbortMultipartUpload', 'DeleteObject', 'GetObject', 'ListMultipartUploadParts', 'PutObject'].map(
      (a) => `s3:${a} replica:target-c/media/*`,
    ),
    's3:ListBucket replica:target-c',
    ...CONSUMES('target-c'),
  ],
  'lag-monitor': [
    ...LOGS,
    ...ledger('BatchGetItem', 'GetItem', 'PutItem', 'Query', 'UpdateItem'),
    ...FAN_OUT,
  ],
  reconcile: [
    ...LOGS,
    ...ledger('DeleteItem', 'GetItem', 'Query', 'Scan', 'UpdateItem'),
    ...FAN_OUT,
    ...REPLICA_OBJECTS.map((r) => `s3:GetObject replica:${r}`),
    ...['target-a', 'target-b', 'target-c'].map((t) => `s3:ListBucket replica:${t}`),
  ],
  // Reads pending uploads and its checkpoint row, HEADs and lists blob versions, sends their events
  // and lost multipart completions.
  'pending-sweep': [
    ...LOGS,
    ...ledger('GetItem', 'Scan', 'UpdateItem'),
    's3:GetObject origin/blobs/*',
    's3:GetObjectVersion origin/blobs/*',
    's3:ListBucket origin',
    's3:ListBucketVersions origin',
    'sqs:SendMessage queue:ingest',
    'sqs:SendMessage queue:completion',
  ],
};

describe('each function’s policy, exactly', () => {
  const functions: Record<string, () => string> = {
    api: () => functionId(/^ApiHandlerFunction/),
    ingest: () => functionId(/^IngestFunction/),
    'complete-multipart': () => functionId(/^Completion.*Function/),
    'replicate target-a': () => functionIdsWithEnv(home, 'MIRROR_TARGET_ID', 'target-a')[0] ?? '',
    'replicate target-b': () => functionIdsWithEnv(home, 'MIRROR_TARGET_ID', 'target-b')[0] ?? '',
    'replicate target-c': () => functionIdsWithEnv(home, 'MIRROR_TARGET_ID', 'target-c')[0] ?? '',
    'lag-monitor': () => functionId(/LagMonitorFunction/),
    reconcile: () => functionId(/ReconcileFunction/),
    'pending-sweep': () => functionId(/^PendingSweep.*Function/),
  };

  for (const [name, find] of Object.entries(functions)) {
    it(`${name}: exactly the actions and resources of the table`, () => {
      expect(grantsOf(find())).toEqual([...(EXPECTED[name] ?? [])].sort());
    });
  }

  it('every function of the home stack is in the table', () => {
    const named = new Set(Object.values(functions).map((find) => find()));
    const all = Object.keys(resourcesOfType(home, 'AWS::Lambda::Function')).filter(
      (id) => !id.startsWith('CustomS3AutoDeleteObjects') && !id.startsWith('BucketNotificationsHandler'),
    );
    expect(all.filter((id) => !named.has(id))).toEqual([]);
  });
});
