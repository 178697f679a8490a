/**
 * Which AWS actions each local function used, on which resources, as IAM would name them: the
 * test that each function's policy in the CDK app grants what its code asks for
 * (test/integration/observed-grants.test.ts, docs/local-gates.md).
 *
 * A function is known by the SDK's user agent: the stack gives each environment
 * `AWS_SDK_UA_APP_ID=<function name>` (local/functions.ts) and each event-source mapping's
 * client the same app id (on AWS the mapping polls with the function's role). The emulators
 * describe each request they accept (local/gate.ts, local/s3/server.ts) and post it on a
 * BroadcastChannel, which every thread of the process can reach (DynamoDB runs in a thread of
 * its own). Off unless a sandbox asks (`observeCalls`): it parses every DynamoDB and SQS body.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BroadcastChannel } from 'node:worker_threads';

export interface ObservedCall {
  /** The function (its SDK app id). */
  readonly caller: string;
  /** The IAM action, e.g. `dynamodb:ConditionCheckItem`. */
  readonly action: string;
  /** `dynamodb:<table>[/index/<name>]`, `sqs:<queue name>`, `s3:<bucket>[/<key>]`. */
  readonly resource: string;
  /** DynamoDB item requests and queries: the partition key they touch (IAM's `dynamodb:LeadingKeys`). */
  readonly leadingKey?: string;
  /**
   * DynamoDB item writes: the top-level attributes they name (IAM's `dynamodb:Attributes`), the
   * item's, or the key's and every name in the update expression (a superset: a nested name too).
   */
  readonly attributes?: readonly string[];
}

type Call = Omit<ObservedCall, 'caller'>;

/**
 * The `app/<id>` token of the SDK's user agent. Powertools adds its own mark to the app id (the
 * SDK then writes `app/<id>-PT-<feature>-<version>-PTEnv-<env>`): that tail is not the caller.
 */
export function callerOf(headers: IncomingHttpHeaders): string | undefined {
  const token = /(?:^|\s)app\/(\S+)/.exec(String(headers['user-agent'] ?? ''))?.[1];
  return token?.replace(/-PT-.*$/, '');
}

const record = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};

/** The `pk` an item request (Key, Item) or a query (`pk = :value`) names, when it is a string. */
function leadingKeyOf(input: Record<string, unknown>): { leadingKey?: string } {
  const item = record(input.Key ?? input.Item);
  let pk = record(item.pk).S;
  if (pk === undefined && typeof input.KeyConditionExpression === 'string') {
    const names = record(input.ExpressionAttributeNames);
    const match = /(#?\w+)\s*=\s*(:\w+)/.exec(input.KeyConditionExpression);
    const attribute = match?.[1]?.startsWith('#') ? names[match[1]] : match?.[1];
    if (attribute === 'pk' && match?.[2] !== undefined)
      pk = record(record(input.ExpressionAttributeValues)[match[2]]).S;
  }
  return typeof pk === 'string' ? { leadingKey: pk } : {};
}

const UPDATE_WORDS = new Set(['SET', 'REMOVE', 'ADD', 'DELETE', 'if_not_exists', 'list_append']);

/** The attributes a PutItem or UpdateItem names, as `dynamodb:Attributes` sees them. */
function attributesOf(input: Record<string, unknown>): { attributes?: string[] } {
  const names = new Set(Object.keys(record(input.Item ?? input.Key)));
  for (const name of Object.keys(record(input.AttributeUpdates))) names.add(name);
  if (typeof input.UpdateExpression === 'string') {
    const placeholders = record(input.ExpressionAttributeNames);
    for (const [token] of input.UpdateExpression.matchAll(/[#:]?[A-Za-z_][\w]*/g)) {
      if (token.startsWith(':') || UPDATE_WORDS.has(token)) continue;
      names.add(token.startsWith('#') ? String(placeholders[token]) : token);
    }
  }
  return names.size > 0 ? { attributes: [...names] } : {};
}

const WRITES_ATTRIBUTES = new Set(['dynamodb:PutItem', 'dynamodb:UpdateItem']);

const tableOf = (input: Record<string, unknown>) =>
  `dynamodb:${String(input.TableName)}${typeof input.IndexName === 'string' ? `/index/${input.IndexName}` : ''}`;

/** IAM authorizes each element of a transaction by its own action (GetItem, PutItem, ConditionCheckItem...). */
const TRANSACT_ACTIONS: Readonly<Record<string, string>> = {
  Get: 'dynamodb:GetItem',
  Put: 'dynamodb:PutItem',
  Update: 'dynamodb:UpdateItem',
  Delete: 'dynamodb:DeleteItem',
  ConditionCheck: 'dynamodb:ConditionCheckItem',
};

export function dynamoCalls(operation: string, payload: unknown): Call[] {
  const input = record(payload);
  if (operation === 'TransactWriteItems' || operation === 'TransactGetItems') {
    const items = Array.isArray(input.TransactItems) ? input.TransactItems : [];
    return items.flatMap((item) =>
      Object.entries(record(item)).map(([kind, element]) => {
        const action = TRANSACT_ACTIONS[kind] ?? `dynamodb:${kind}`;
        return {
          action,
          resource: tableOf(record(element)),
          ...leadingKeyOf(record(element)),
          ...(WRITES_ATTRIBUTES.has(action) ? attributesOf(record(element)) : {}),
        };
      }),
    );
  }
  if (operation === 'BatchGetItem' || operation === 'BatchWriteItem') {
    return Object.entries(record(input.RequestItems)).flatMap(([table, request]) => {
      const keys = record(request).Keys;
      const items =
        Array.isArray(keys) && keys.length > 0 ? keys.map((key) => leadingKeyOf({ Key: key })) : [{}];
      return items.map((key) => ({ action: `dynamodb:${operation}`, resource: `dynamodb:${table}`, ...key }));
    });
  }
  const action = `dynamodb:${operation}`;
  return [
    {
      action,
      resource: tableOf(input),
      ...leadingKeyOf(input),
      ...(WRITES_ATTRIBUTES.has(action) ? attributesOf(input) : {}),
    },
  ];
}

/** The batch forms are authorized as their single forms. */
const SQS_BATCH: Readonly<Record<string, string>> = {
  SendMessageBatch: 'SendMessage',
  DeleteMessageBatch: 'DeleteMessage',
  ChangeMessageVisibilityBatch: 'ChangeMessageVisibility',
};

export function sqsCalls(operation: string, payload: unknown): Call[] {
  const input = record(payload);
  const queue =
    typeof input.QueueUrl === 'string'
      ? (input.QueueUrl.split('/').at(-1) ?? '')
      : typeof input.QueueName === 'string'
        ? input.QueueName
        : '*';
  return [{ action: `sqs:${SQS_BATCH[operation] ?? operation}`, resource: `sqs:${queue}` }];
}

/** Bucket requests: the first sub-resource in the query that has an action of its own, else the default. */
const BUCKET_ACTIONS: Readonly<Record<string, readonly (readonly [string, string])[]>> = {
  GET: [
    ['versions', 's3:ListBucketVersions'],
    ['uploads', 's3:ListBucketMultipartUploads'],
    ['cors', 's3:GetBucketCORS'],
    ['versioning', 's3:GetBucketVersioning'],
    ['', 's3:ListBucket'],
  ],
  PUT: [
    ['cors', 's3:PutBucketCORS'],
    ['versioning', 's3:PutBucketVersioning'],
    ['', 's3:CreateBucket'],
  ],
  POST: [['delete', 's3:DeleteObject']],
  DELETE: [['', 's3:DeleteBucket']],
};

function bucketAction(method: string, query: URLSearchParams): string {
  const rules = BUCKET_ACTIONS[method === 'HEAD' ? 'GET' : method] ?? [];
  return rules.find(([param]) => param === '' || query.has(param))?.[1] ?? `s3:${method}Bucket`;
}

/** Object reads and deletes: [with uploadId, with versionId, plain]. */
const OBJECT_ACTIONS: Readonly<Record<string, readonly [string, string, string]>> = {
  GET: ['s3:ListMultipartUploadParts', 's3:GetObjectVersion', 's3:GetObject'],
  HEAD: ['s3:ListMultipartUploadParts', 's3:GetObjectVersion', 's3:GetObject'],
  DELETE: ['s3:AbortMultipartUpload', 's3:DeleteObjectVersion', 's3:DeleteObject'],
};

/** An S3 request as IAM authorizes it (the object actions on `bucket/key`, the bucket's on `bucket`). */
export function s3Calls(request: {
  readonly method: string;
  readonly bucket: string | undefined;
  readonly key: string | undefined;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
}): Call[] {
  const { method, bucket, key, query, headers } = request;
  if (bucket === undefined) return [{ action: 's3:ListAllMyBuckets', resource: 's3:*' }];
  if (key === undefined) return [{ action: bucketAction(method, query), resource: `s3:${bucket}` }];
  const resource = `s3:${bucket}/${key}`;
  const read = OBJECT_ACTIONS[method];
  if (read) {
    const [multipart, versioned, plain] = read;
    const action = query.has('uploadId') ? multipart : query.has('versionId') ? versioned : plain;
    return [{ action, resource }];
  }
  // PUT (PutObject, UploadPart, CopyObject, UploadPartCopy) and POST (create, complete multipart).
  const source = headers['x-amz-copy-source'];
  return [
    { action: 's3:PutObject', resource },
    ...(typeof source === 'string' ? copySourceCalls(source) : []),
  ];
}

/** A copy reads its source: GetObject, or GetObjectVersion when it names a version. */
function copySourceCalls(source: string): Call[] {
  const [path = '', search = ''] = source.split('?');
  const decoded = decodeURIComponent(path.replace(/^\//, ''));
  const versioned = new URLSearchParams(search).has('versionId');
  return [{ action: versioned ? 's3:GetObjectVersion' : 's3:GetObject', resource: `s3:${decoded}` }];
}

/** What an emulator calls with each request it accepts: posts the calls of a known caller. */
export type CallObserver = (headers: IncomingHttpHeaders, calls: () => Call[]) => void;

/**
 * The emulator options that post each accepted request's calls on `channelName` (none without a
 * channel), and `close`, which the emulator calls when it stops or fails to start: an open
 * BroadcastChannel keeps the process alive.
 */
export function callObserver(channelName: string | undefined): {
  readonly options: { readonly observe?: CallObserver };
  readonly close: () => void;
} {
  if (channelName === undefined) return { options: {}, close: () => undefined };
  const channel = new BroadcastChannel(channelName);
  const observe: CallObserver = (headers, calls) => {
    const caller = callerOf(headers);
    if (caller === undefined) return;
    const described = calls();
    for (const call of described) channel.postMessage({ caller, ...call } satisfies ObservedCall);
    // The request itself, by its API operation (JSON protocol: x-amz-target; S3: its first action).
    const target = headers['x-amz-target'];
    const operation =
      typeof target === 'string' ? (target.split('.')[1] ?? target) : (described[0]?.action ?? 'unknown');
    channel.postMessage({ caller, request: operation } satisfies ObservedRequest);
  };
  return { options: { observe }, close: () => channel.close() };
}

/** One request an emulator accepted: its caller and API operation (`SendMessageBatch`, `GetItem`, `s3:GetObject`). */
export interface ObservedRequest {
  readonly caller: string;
  readonly request: string;
}

/** Collects the calls posted on `channelName`, each distinct call once, and counts the requests. */
export class CallLog {
  private readonly channel: BroadcastChannel;
  private readonly seen = new Map<string, ObservedCall>();
  private readonly counted = new Map<string, number>();
  private lastMessageAt = 0;

  constructor(readonly channelName: string) {
    this.channel = new BroadcastChannel(channelName);
    this.channel.onmessage = (event) => {
      const data = (event as { data: ObservedCall | ObservedRequest }).data;
      this.lastMessageAt = performance.now();
      if ('request' in data) {
        const key = `${data.caller} ${data.request}`;
        this.counted.set(key, (this.counted.get(key) ?? 0) + 1);
        return;
      }
      const call = data;
      this.seen.set(
        `${call.caller} ${call.action} ${call.resource} ${call.leadingKey ?? ''} ${call.attributes?.join() ?? ''}`,
        call,
      );
    };
  }

  /**
   * The calls seen so far, once the channel has been quiet for `quietMs`: messages from another
   * thread arrive a moment after the request they describe was answered.
   */
  async calls(quietMs = 200): Promise<ObservedCall[]> {
    for (;;) {
      const quietFor = performance.now() - this.lastMessageAt;
      if (quietFor >= quietMs) return [...this.seen.values()];
      await new Promise((resolve) => setTimeout(resolve, quietMs - quietFor));
    }
  }

  /** Requests accepted so far, by `<caller> <operation>` (docs/local-sizing.md's requests per upload). */
  requests(): Record<string, number> {
    return Object.fromEntries(this.counted);
  }

  close(): void {
    this.channel.close();
  }
}
