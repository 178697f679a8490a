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
  buildTestApp,
  functionIdOf,
  grantsOf,
  resourcesOfType,
  sdkCallFunctionId,
  testTopology,
} from './fixture.ts';

let mirror: MirrorApp;
let home: Template;

beforeAll(() => {
  mirror = buildTestApp(testTopology(), { nag: false });
  home = Template.fromStack(mirror.home);
});

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
/** Writes confined to partitions (`dynamodb:LeadingKeys`). */
const ledgerWrites = (keys: string, ...actions: string[]) =>
  actions.map((a) => `dynamodb:${a} ledger keys:${keys}`);
// Pending pointers (W#) but never a blob pin (B#): only the ingest may say which object version
// holds a SHA-256's verified bytes (AWS review 9, B4).
const CONTENT = 'P#*,U#*,W#*,FEED#*';
const REPLICA_OBJECTS = ['target-a/*', 'target-b/*', 'target-c/media/*'];

const EXPECTED: Record<string, string[]> = {
  // ConditionCheckItem: a commit (delete, restore, a proven duplicate) checks each folder of the
  // path in its TransactWriteItems, and IAM authorizes a ConditionCheck by that action alone.
  api: [
    ...LOGS,
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    // Writes the content's partitions and its idempotency records: never a target's or an agent's
    // row, a lag watermark or a checkpoint.
    ...ledgerWrites(`${CONTENT},IDEM#*`, 'ConditionCheckItem', 'PutItem', 'UpdateItem'),
    // It deletes pending pointers and idempotency claims only: never a version or the feed (AWS
    // review 9, B9).
    ...ledgerWrites('W#*,IDEM#*', 'DeleteItem'),
    'dynamodb:Query ledger/index/live-files',
    'dynamodb:Scan ledger/index/live-files',
    ...['AbortMultipartUpload', 'GetObject', 'GetObjectVersion', 'PutObject'].map(
      (a) => `s3:${a} origin/blobs/*`,
    ),
    ...FAN_OUT,
    // ListBucket: a presigned GET of a missing copy answers 404, not 403.
    's3:ListBucket origin',
    ...REPLICA_OBJECTS.map((r) => `s3:GetObject replica:${r}`),
    ...['target-a', 'target-b', 'target-c'].map((t) => `s3:ListBucket replica:${t}`),
    // Multipart completions run in the complete-multipart function.
    'sqs:SendMessage queue:completion',
  ],
  ingest: [
    ...LOGS,
    // BatchGetItem: the blob's pin and the sender's pending pointer in one read.
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    // And the blob pins and its verifications part-way through: no other function may write a pin
    // or a hash state.
    ...ledgerWrites(`${CONTENT},B#*,VERIFY#*`, 'ConditionCheckItem', 'PutItem', 'UpdateItem'),
    // It deletes blob records and pending pointers only (AWS review 9, B9).
    ...ledgerWrites('B#*,W#*', 'DeleteItem'),
    'dynamodb:Query ledger/index/live-files',
    // Never PutObject: the ingest verifies bytes, it does not write them.
    ...['AbortMultipartUpload', 'DeleteObjectVersion', 'GetObject', 'GetObjectVersion'].map(
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
    ...ledger('GetItem', 'Query'),
    // Ends uploads (their rows) and deletes their pending pointers: it never updates a pointer.
    ...ledgerWrites('U#*', 'UpdateItem'),
    ...ledgerWrites('W#*', 'DeleteItem'),
    ...['AbortMultipartUpload', 'GetObject', 'PutObject'].map((a) => `s3:${a} origin/blobs/*`),
    's3:ListBucket origin',
    ...CONSUMES('completion'),
  ],
  'replicate target-a': [
    ...LOGS,
    // BatchGetItem: head, target row and blob in one read (readForReplication). Its writes only in
    // its own target's rows (AWS review 6, L1).
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    ...['PutItem', 'UpdateItem'].map((a) => `dynamodb:${a} ledger keys:T#target-a#*`),
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
    // BatchGetItem: head, target row and blob in one read (readForReplication). Its writes only in
    // its own target's rows (AWS review 6, L1).
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    ...['PutItem', 'UpdateItem'].map((a) => `dynamodb:${a} ledger keys:T#target-b#*`),
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
    // BatchGetItem: head, target row and blob in one read (readForReplication). Its writes only in
    // its own target's rows (AWS review 6, L1).
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    ...['PutItem', 'UpdateItem'].map((a) => `dynamodb:${a} ledger keys:T#target-c#*`),
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
    // Writes its watermark rows and the feed's fanned-out marks only.
    ...ledger('BatchGetItem', 'GetItem', 'Query'),
    // Replaces only its watermark rows whole; marks feed entries (AWS review 9, B9).
    'dynamodb:PutItem ledger keys:LAG#*',
    'dynamodb:UpdateItem ledger keys:LAG#*,FEED#*',
    ...FAN_OUT,
  ],
  reconcile: [
    ...LOGS,
    // BatchGetItem: the heads of a replica bucket's listing page, 100 a call (foreign objects).
    ...ledger('BatchGetItem', 'GetItem', 'Query', 'Scan'),
    // Forgets a target's row for a file it lost (and moves the target's lag watermark back below
    // it), saves its checkpoint, ends expired uploads.
    // Target rows it only deletes (forgets): it never marks a target as holding a version.
    ...ledgerWrites('LAG#*,RECONCILE,U#*', 'UpdateItem'),
    ...ledgerWrites('T#*,W#*', 'DeleteItem'),
    'dynamodb:Query ledger/index/pending-uploads',
    ...FAN_OUT,
    ...REPLICA_OBJECTS.map((r) => `s3:GetObject replica:${r}`),
    // ListBucket: HeadObject on a missing key answers 404, and the listing for foreign objects.
    ...['target-a', 'target-b', 'target-c'].map((t) => `s3:ListBucket replica:${t}`),
  ],
  // Reads pending uploads and its checkpoint row, HEADs and lists blob versions, sends their events
  // and lost multipart completions.
  'pending-sweep': [
    ...LOGS,
    // The pending pointers through their index: no Scan of the whole table every 15 minutes.
    // Writes its checkpoint row only.
    ...ledger('GetItem'),
    'dynamodb:UpdateItem ledger keys:SWEEP',
    'dynamodb:Query ledger/index/pending-uploads',
    's3:GetObject origin/blobs/*',
    's3:GetObjectVersion origin/blobs/*',
    's3:ListBucket origin',
    's3:ListBucketVersions origin',
    'sqs:SendMessage queue:ingest',
    'sqs:SendMessage queue:completion',
  ],
  // CDK's AwsCustomResource function: sets each dead-letter queue's RedriveAllowPolicy (QueueWithDlq).
  // One policy per call, each on its own dead-letter queue; the role holds them all.
  'AwsCustomResource (dead-letter sources)': [
    ...LOGS,
    ...['ingest', 'completion', 'onprem-dc1', 'target-a', 'target-b', 'target-c'].map(
      (queue) => `sqs:SetQueueAttributes dlq:${queue}`,
    ),
  ],
};

describe('each function’s policy, exactly', () => {
  const functions: Record<string, () => string> = {
    api: () => functionIdOf(home, 'api'),
    ingest: () => functionIdOf(home, 'ingest'),
    'complete-multipart': () => functionIdOf(home, 'complete-multipart'),
    'replicate target-a': () => functionIdOf(home, 'replicate-target-a'),
    'replicate target-b': () => functionIdOf(home, 'replicate-target-b'),
    'replicate target-c': () => functionIdOf(home, 'replicate-target-c'),
    'lag-monitor': () => functionIdOf(home, 'lag-monitor'),
    reconcile: () => functionIdOf(home, 'reconcile'),
    'pending-sweep': () => functionIdOf(home, 'pending-sweep'),
    'AwsCustomResource (dead-letter sources)': () => sdkCallFunctionId(home),
  };

  for (const [name, find] of Object.entries(functions)) {
    it(`${name}: exactly the actions and resources of the table`, () => {
      expect(grantsOf(mirror, home, find())).toEqual([...(EXPECTED[name] ?? [])].sort());
    });
  }

  // A pending pointer (W#<sha256> U#<upload>) carries its upload's claim, and the ingest commits the
  // bytes by that claim (path, size, time window) without reading the upload (docs/design-notes.md).
  // The code never updates a pointer: a claim writes it whole (PutItem), its end deletes it. An
  // UpdateItem there would upsert one, so a role that may not write a pointer whole could still
  // rewrite a pending upload's path and have the ingest commit its bytes there.
  it('no function may update a pending pointer (W#) that it may not write whole', () => {
    const leadingKeys = (line: string) => line.match(/ keys:(\S+)$/)?.[1]?.split(',') ?? ['*'];
    const reaches = (lines: string[], action: string) =>
      lines.some(
        (l) =>
          l.startsWith(`${action} ledger`) &&
          !l.includes('/index/') &&
          leadingKeys(l).some((k) => k === '*' || k === 'W#*'),
      );
    for (const [name, find] of Object.entries(functions)) {
      const lines = grantsOf(mirror, home, find());
      if (reaches(lines, 'dynamodb:UpdateItem'))
        expect(reaches(lines, 'dynamodb:PutItem'), `${name} updates pointers it may not put`).toBe(true);
    }
  });

  // A target row (T#<target>#<path>) says which version the target holds: the replicate skips a
  // version its row already has and the lag monitor counts it applied, so a row marked by anyone
  // but the target's own writer hides a version the target lacks (a pull target's files are checked
  // by nothing else). Forgetting a row (DeleteItem) only makes the version be sent again.
  it("no function but a target's own replicate may write (put or update) that target's rows", () => {
    const ownRows = (name: string) => (name.startsWith('replicate ') ? `T#${name.slice(10)}#*` : undefined);
    for (const [name, find] of Object.entries(functions)) {
      const marks = grantsOf(mirror, home, find())
        .filter((l) => /^dynamodb:(PutItem|UpdateItem) ledger( |$)/.test(l))
        .flatMap((l) => l.match(/ keys:(\S+)$/)?.[1]?.split(',') ?? ['*'])
        .filter((k) => k === '*' || k.startsWith('T#'));
      expect({ name, marks: [...new Set(marks)] }).toEqual({
        name,
        marks: ownRows(name) ? [ownRows(name)] : [],
      });
    }
  });

  it('every function of the home stack is in the table', () => {
    const named = new Set(Object.values(functions).map((find) => find()));
    const all = Object.keys(resourcesOfType(home, 'AWS::Lambda::Function')).filter(
      (id) => !id.startsWith('CustomS3AutoDeleteObjects') && !id.startsWith('BucketNotificationsHandler'),
    );
    expect(all.filter((id) => !named.has(id))).toEqual([]);
  });
});
