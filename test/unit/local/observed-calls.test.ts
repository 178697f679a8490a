/** The emulators' requests as IAM authorizes them (local/observed-calls.ts), on request shapes from the AWS API references. */
import { describe, expect, it } from 'vitest';
import { callerOf, dynamoCalls, s3Calls, sqsCalls } from '../../../local/observed-calls.ts';

const UA =
  'aws-sdk-js/3.1161.0 ua/2.1 os/linux#6.1 lang/js md/nodejs#20.20.2 api/dynamodb#3.1161.0 m/N,E,P,e';

describe('callerOf', () => {
  it('reads the app id of the SDK user agent, without the mark Powertools adds to it', () => {
    expect(callerOf({ 'user-agent': `${UA} app/replicate-eu-west-1` })).toBe('replicate-eu-west-1');
    expect(callerOf({ 'user-agent': `${UA} app/ingest-PT-NO-OP-2.36.0-PTEnv-NA` })).toBe('ingest');
  });

  it('names no caller for a client without an app id (a browser, a test, the bench)', () => {
    expect(callerOf({ 'user-agent': UA })).toBeUndefined();
    expect(callerOf({ 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/156' })).toBeUndefined();
    expect(callerOf({})).toBeUndefined();
  });
});

describe('dynamoCalls', () => {
  it('names each element of a write transaction by its own action', () => {
    const calls = dynamoCalls('TransactWriteItems', {
      TransactItems: [
        { ConditionCheck: { TableName: 'ledger', Key: {}, ConditionExpression: 'attribute_not_exists(pk)' } },
        { Put: { TableName: 'ledger', Item: {} } },
        { Update: { TableName: 'ledger', Key: {}, UpdateExpression: 'SET a = :a' } },
        { Delete: { TableName: 'other', Key: {} } },
      ],
    });
    expect(calls).toEqual([
      { action: 'dynamodb:ConditionCheckItem', resource: 'dynamodb:ledger' },
      { action: 'dynamodb:PutItem', resource: 'dynamodb:ledger' },
      { action: 'dynamodb:UpdateItem', resource: 'dynamodb:ledger', attributes: ['a'] },
      { action: 'dynamodb:DeleteItem', resource: 'dynamodb:other' },
    ]);
    expect(
      dynamoCalls('TransactGetItems', { TransactItems: [{ Get: { TableName: 'ledger', Key: {} } }] }),
    ).toEqual([{ action: 'dynamodb:GetItem', resource: 'dynamodb:ledger' }]);
  });

  it('names the partition key an item request or a query touches (IAM’s dynamodb:LeadingKeys)', () => {
    expect(
      dynamoCalls('GetItem', { TableName: 't', Key: { pk: { S: 'P#a.png' }, sk: { S: 'V#1' } } }),
    ).toEqual([{ action: 'dynamodb:GetItem', resource: 'dynamodb:t', leadingKey: 'P#a.png' }]);
    expect(dynamoCalls('PutItem', { TableName: 't', Item: { pk: { S: 'AGENT#dc1' } } })[0]?.leadingKey).toBe(
      'AGENT#dc1',
    );
    const query = {
      TableName: 't',
      KeyConditionExpression: '#pk = :pk AND sk > :after',
      ExpressionAttributeNames: { '#pk': 'pk' },
      ExpressionAttributeValues: { ':pk': { S: 'FEED#3' }, ':after': { S: 'S#0' } },
    };
    expect(dynamoCalls('Query', query)[0]?.leadingKey).toBe('FEED#3');
    expect(
      dynamoCalls('Query', {
        TableName: 't',
        IndexName: 'live-files',
        KeyConditionExpression: 'lf = :lf',
        ExpressionAttributeValues: { ':lf': { S: 'x' } },
      })[0],
    ).not.toHaveProperty('leadingKey');
    expect(
      dynamoCalls('BatchGetItem', {
        RequestItems: { t: { Keys: [{ pk: { S: 'P#a' } }, { pk: { S: 'B#b' } }] } },
      }).map((c) => c.leadingKey),
    ).toEqual(['P#a', 'B#b']);
  });

  it('names the attributes an item write sets or removes (IAM’s dynamodb:Attributes)', () => {
    const key = { pk: { S: 'T#dc1#a' }, sk: { S: 'STATE' } };
    expect(
      dynamoCalls('UpdateItem', {
        TableName: 't',
        Key: key,
        UpdateExpression: 'SET #status = :s, appliedVersion = if_not_exists(#v, :v) REMOVE failedAt',
        ConditionExpression: 'attribute_not_exists(other)',
        ExpressionAttributeNames: { '#status': 'status', '#v': 'appliedVersion' },
      })[0]?.attributes,
    ).toEqual(['pk', 'sk', 'status', 'appliedVersion', 'failedAt']);
    expect(
      dynamoCalls('PutItem', { TableName: 't', Item: { ...key, folderPk: { S: 'D#a' } } })[0]?.attributes,
    ).toEqual(['pk', 'sk', 'folderPk']);
    expect(
      dynamoCalls('TransactWriteItems', {
        TransactItems: [{ Put: { TableName: 't', Item: { ...key, pendingPk: { S: 'PENDING#1' } } } }],
      })[0]?.attributes,
    ).toEqual(['pk', 'sk', 'pendingPk']);
    expect(dynamoCalls('GetItem', { TableName: 't', Key: key })[0]).not.toHaveProperty('attributes');
    expect(dynamoCalls('DeleteItem', { TableName: 't', Key: key })[0]).not.toHaveProperty('attributes');
  });

  it('names a batch per table and a query on an index by the index', () => {
    expect(
      dynamoCalls('BatchGetItem', { RequestItems: { ledger: { Keys: [] }, other: { Keys: [] } } }),
    ).toEqual([
      { action: 'dynamodb:BatchGetItem', resource: 'dynamodb:ledger' },
      { action: 'dynamodb:BatchGetItem', resource: 'dynamodb:other' },
    ]);
    expect(dynamoCalls('Query', { TableName: 'ledger', IndexName: 'live-files' })).toEqual([
      { action: 'dynamodb:Query', resource: 'dynamodb:ledger/index/live-files' },
    ]);
  });
});

describe('sqsCalls', () => {
  it('authorizes the batch forms as their single forms, on the queue the URL names', () => {
    const url = 'http://127.0.0.1:9324/000000000000/mirror-target-a.fifo';
    expect(sqsCalls('DeleteMessageBatch', { QueueUrl: url, Entries: [] })).toEqual([
      { action: 'sqs:DeleteMessage', resource: 'sqs:mirror-target-a.fifo' },
    ]);
    expect(sqsCalls('SendMessageBatch', { QueueUrl: url })[0]?.action).toBe('sqs:SendMessage');
    expect(sqsCalls('ChangeMessageVisibilityBatch', { QueueUrl: url })[0]?.action).toBe(
      'sqs:ChangeMessageVisibility',
    );
    expect(sqsCalls('ReceiveMessage', { QueueUrl: url })[0]?.action).toBe('sqs:ReceiveMessage');
  });
});

describe('s3Calls', () => {
  const request = (method: string, key: string | undefined, query = '', headers = {}) => ({
    method,
    bucket: 'origin',
    key,
    query: new URLSearchParams(query),
    headers,
  });

  it('tells an object version from the object, and multipart steps from plain ones', () => {
    expect(s3Calls(request('HEAD', 'blobs/x'))).toEqual([
      { action: 's3:GetObject', resource: 's3:origin/blobs/x' },
    ]);
    expect(s3Calls(request('GET', 'blobs/x', 'versionId=3'))[0]?.action).toBe('s3:GetObjectVersion');
    expect(s3Calls(request('DELETE', 'blobs/x', 'versionId=3'))[0]?.action).toBe('s3:DeleteObjectVersion');
    expect(s3Calls(request('DELETE', 'blobs/x', 'uploadId=u'))[0]?.action).toBe('s3:AbortMultipartUpload');
    expect(s3Calls(request('GET', 'blobs/x', 'uploadId=u'))[0]?.action).toBe('s3:ListMultipartUploadParts');
    expect(s3Calls(request('POST', 'blobs/x', 'uploads'))[0]?.action).toBe('s3:PutObject');
  });

  it('a copy writes its destination and reads its source version', () => {
    const calls = s3Calls(
      request('PUT', 'media/a.png', 'partNumber=1&uploadId=u', {
        'x-amz-copy-source': '/mirror-origin/blobs/abc?versionId=7',
      }),
    );
    expect(calls).toEqual([
      { action: 's3:PutObject', resource: 's3:origin/media/a.png' },
      { action: 's3:GetObjectVersion', resource: 's3:mirror-origin/blobs/abc' },
    ]);
  });

  it('names the bucket actions on the bucket', () => {
    expect(s3Calls(request('GET', undefined, 'list-type=2&prefix=a'))).toEqual([
      { action: 's3:ListBucket', resource: 's3:origin' },
    ]);
    expect(s3Calls(request('GET', undefined, 'versions&prefix=blobs/'))[0]?.action).toBe(
      's3:ListBucketVersions',
    );
  });
});
