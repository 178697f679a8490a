import { DynamoDBClient, ListTablesCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { SigningSha256 } from '../../../common/sha256-node.ts';
import { type SigV4Request, sha256Hex, verifySigV4 } from '../../../local/sigv4.ts';

const CREDS = { accessKeyId: 'LOCALKEY', secretAccessKey: 'local-secret' };
const REGION = 'us-east-1';
const ENDPOINT = 'http://127.0.0.1:4567';
// SigV4 works in whole seconds; the SDK signs with this clock.
const NOW = new Date('2026-11-29T12:00:00Z');

interface Captured {
  method: string;
  path: string;
  query: Record<string, string | string[] | null>;
  headers: Record<string, string>;
  body: unknown;
}

/** RFC 3986 escaping, as the SDK's HTTP handler builds the query string. */
const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function toUrl(captured: Pick<Captured, 'path' | 'query'>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(captured.query)) {
    if (v === null) parts.push(rfc3986(k));
    else for (const one of Array.isArray(v) ? v : [v]) parts.push(`${rfc3986(k)}=${rfc3986(one)}`);
  }
  return parts.length === 0 ? captured.path : `${captured.path}?${parts.join('&')}`;
}

/** Sends through a real SDK client whose HTTP handler only records what it would send. */
async function capture(
  send: (handler: { handle(request: Captured): Promise<never> }) => Promise<unknown>,
): Promise<Captured> {
  let seen: Captured | undefined;
  const handler = {
    handle(request: Captured): Promise<never> {
      seen = request;
      return Promise.reject(new Error('captured'));
    },
  };
  await send(handler).catch((err: Error) => {
    if (err.message !== 'captured') throw err;
  });
  if (seen === undefined) throw new Error('the client sent nothing');
  return seen;
}

function bodyBytes(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  throw new Error(`unexpected body type ${typeof body}`);
}

const clientOptions = (handler: unknown) => ({
  region: REGION,
  endpoint: ENDPOINT,
  credentials: CREDS,
  // biome-ignore lint/suspicious/noExplicitAny: a recording stand-in for the SDK's HTTP handler
  requestHandler: handler as any,
  systemClockOffset: NOW.getTime() - Date.now(),
  maxAttempts: 1,
});

async function dynamoRequest(): Promise<SigV4Request & { body: Buffer }> {
  const c = await capture((handler) =>
    new DynamoDBClient(clientOptions(handler)).send(
      new PutItemCommand({ TableName: 'mirror-ledger', Item: { pk: { S: 'a b/ü' }, sk: { N: '1' } } }),
    ),
  );
  const body = bodyBytes(c.body);
  return { method: c.method, url: toUrl(c), headers: c.headers, payloadHash: sha256Hex(body), body };
}

async function sqsRequest(): Promise<SigV4Request & { body: Buffer }> {
  const c = await capture((handler) =>
    new SQSClient(clientOptions(handler)).send(
      new SendMessageCommand({
        QueueUrl: `${ENDPOINT}/000000000000/q.fifo`,
        MessageBody: 'x',
        MessageGroupId: 'g',
      }),
    ),
  );
  const body = bodyBytes(c.body);
  return { method: c.method, url: toUrl(c), headers: c.headers, payloadHash: sha256Hex(body), body };
}

async function s3PutRequest(key: string): Promise<SigV4Request> {
  const c = await capture((handler) =>
    new S3Client({
      ...clientOptions(handler),
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
    }).send(
      new PutObjectCommand({ Bucket: 'mirror-origin', Key: key, Body: 'hello', ContentType: 'text/plain' }),
    ),
  );
  return { method: c.method, url: toUrl(c), headers: c.headers };
}

const presignClient = () =>
  new S3Client({
    region: REGION,
    endpoint: ENDPOINT,
    credentials: CREDS,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });

/** A presigned PUT as the API hands out (signed length, type and SHA-256). */
async function presignedPut(expiresIn = 900): Promise<SigV4Request> {
  const checksum = Buffer.from(sha256Hex('hello'), 'hex').toString('base64');
  const url = new URL(
    await getSignedUrl(
      presignClient(),
      new PutObjectCommand({
        Bucket: 'mirror-origin',
        Key: `blobs/${sha256Hex('hello')}`,
        ContentLength: 5,
        ContentType: 'text/plain',
        ChecksumSHA256: checksum,
      }),
      {
        expiresIn,
        signingDate: NOW,
        signableHeaders: new Set(['content-type', 'content-length', 'x-amz-checksum-sha256']),
        unhoistableHeaders: new Set(['content-type', 'x-amz-checksum-sha256']),
      },
    ),
  );
  return {
    method: 'PUT',
    url: url.pathname + url.search,
    headers: {
      host: url.host,
      'content-length': '5',
      'content-type': 'text/plain',
      'x-amz-checksum-sha256': checksum,
      'user-agent': 'curl/8',
    },
  };
}

/** A presigned part PUT whose checksum the presigner hoists into the query string. */
async function presignedPartWithHoistedChecksum(): Promise<SigV4Request> {
  const checksum = Buffer.from(sha256Hex('part'), 'hex').toString('base64');
  const url = new URL(
    await getSignedUrl(
      presignClient(),
      new UploadPartCommand({
        Bucket: 'mirror-origin',
        Key: 'blobs/k ü+~*',
        UploadId: 'up/1=2',
        PartNumber: 3,
        ChecksumSHA256: checksum,
      }),
      { expiresIn: 60, signingDate: NOW },
    ),
  );
  return { method: 'PUT', url: url.pathname + url.search, headers: { host: url.host } };
}

const s3 = { service: 's3', credentials: CREDS, now: NOW } as const;
const dynamo = { service: 'dynamodb', credentials: CREDS, now: NOW } as const;
const sqs = { service: 'sqs', credentials: CREDS, now: NOW } as const;

function withQuery(request: SigV4Request, name: string, change: (v: string) => string): SigV4Request {
  const url = new URL(`http://x${request.url}`);
  url.searchParams.set(name, change(url.searchParams.get(name) ?? ''));
  return { ...request, url: url.pathname + url.search };
}

const flipHex = (hex: string) => (hex[0] === '0' ? '1' : '0') + hex.slice(1);

describe('verifySigV4 accepts what the AWS SDK signs', () => {
  it('a DynamoDB PutItem signed by DynamoDBClient (Authorization header, body hash)', async () => {
    const result = await verifySigV4(await dynamoRequest(), dynamo);
    expect(result).toMatchObject({ ok: true, presigned: false, region: REGION });
    expect(result.ok && result.signedHeaders).toContain('host');
  });

  it('a SQS SendMessage signed by SQSClient', async () => {
    expect(await verifySigV4(await sqsRequest(), sqs)).toMatchObject({ ok: true, presigned: false });
  });

  it('an S3 PutObject signed by S3Client, key with spaces and non-ASCII (path signed as sent)', async () => {
    const request = await s3PutRequest('dir/a b+ü~(1).txt');
    expect(request.url).toContain('%20');
    expect(await verifySigV4(request, s3)).toMatchObject({ ok: true, presigned: false });
  });

  it('a presigned PUT from getSignedUrl with signed content-type, length and checksum', async () => {
    const result = await verifySigV4(await presignedPut(), s3);
    expect(result).toMatchObject({ ok: true, presigned: true });
    expect(result.ok && [...result.signedHeaders].sort()).toEqual([
      'content-length',
      'content-type',
      'host',
      'x-amz-checksum-sha256',
    ]);
    expect(result.ok && result.expiresAt?.toISOString()).toBe('2026-11-29T12:15:00.000Z');
  });

  it('a presigned UploadPart with the checksum hoisted into the query string', async () => {
    const request = await presignedPartWithHoistedChecksum();
    expect(request.url).toMatch(/x-amz-checksum-sha256=/i);
    expect(await verifySigV4(request, s3)).toMatchObject({ ok: true, presigned: true });
  });

  it('a presigned GET from getSignedUrl, just before it expires', async () => {
    const url = new URL(
      await getSignedUrl(presignClient(), new GetObjectCommand({ Bucket: 'b-1', Key: 'k' }), {
        expiresIn: 60,
        signingDate: NOW,
      }),
    );
    const request = { method: 'GET', url: url.pathname + url.search, headers: { host: url.host } };
    expect(await verifySigV4(request, { ...s3, now: new Date(NOW.getTime() + 60_000) })).toMatchObject({
      ok: true,
    });
  });

  it('a parameter given twice, both values signed (sorted, as AWS canonicalises them); not with a third put in front', async () => {
    const url = new URL(
      await getSignedUrl(presignClient(), new GetObjectCommand({ Bucket: 'b-1', Key: 'k' }), {
        expiresIn: 60,
        signingDate: NOW,
      }),
    );
    // The SDK's signer takes an array for a repeated parameter; sign one with tag=b&tag=a.
    const signer = new SignatureV4({
      service: 's3',
      region: REGION,
      credentials: CREDS,
      sha256: SigningSha256,
      uriEscapePath: false,
    });
    const signed = await signer.presign(
      {
        method: 'GET',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/b-1/k',
        // As the S3 presigner sends it: hoisted into the query, the payload unsigned.
        headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
        query: { tag: ['b', 'a'] },
      },
      { signingDate: NOW, expiresIn: 60 },
    );
    const query = Object.entries(signed.query ?? {}).flatMap(([k, v]) =>
      (Array.isArray(v) ? v : [v]).map((one) => `${rfc3986(k)}=${rfc3986(String(one))}`),
    );
    const request = { method: 'GET', url: `/b-1/k?${query.join('&')}`, headers: { host: url.host } };
    expect(request.url).toContain('tag=b&tag=a');
    expect(await verifySigV4(request, s3)).toMatchObject({ ok: true });
    const third = { ...request, url: request.url.replace('?', '?tag=c&') };
    expect(await verifySigV4(third, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('a ListTables with no body (hash of the empty string)', async () => {
    const c = await capture((handler) =>
      new DynamoDBClient(clientOptions(handler)).send(new ListTablesCommand({})),
    );
    const body = bodyBytes(c.body);
    const request = { method: c.method, url: toUrl(c), headers: c.headers, payloadHash: sha256Hex(body) };
    expect(await verifySigV4(request, dynamo)).toMatchObject({ ok: true });
  });
});

describe('verifySigV4 refuses', () => {
  it('a changed byte in the Authorization signature', async () => {
    const request = await dynamoRequest();
    const auth = String(request.headers.authorization);
    const sig = /Signature=([0-9a-f]{64})/.exec(auth)?.[1] ?? '';
    const tampered = {
      ...request,
      headers: { ...request.headers, authorization: auth.replace(sig, flipHex(sig)) },
    };
    expect(await verifySigV4(tampered, dynamo)).toMatchObject({
      ok: false,
      reason: 'signature',
      code: 'InvalidSignatureException',
      status: 400,
    });
  });

  it('a changed signed header value', async () => {
    const request = await dynamoRequest();
    const target = String(request.headers['x-amz-target']);
    const tampered = {
      ...request,
      headers: { ...request.headers, 'x-amz-target': target.replace('PutItem', 'DeleteItem') },
    };
    expect(await verifySigV4(tampered, dynamo)).toMatchObject({ ok: false, reason: 'signature' });
  });

  it('a signed header left out', async () => {
    const request = await dynamoRequest();
    const { 'x-amz-target': _, ...headers } = request.headers;
    expect(await verifySigV4({ ...request, headers }, dynamo)).toMatchObject({
      ok: false,
      reason: 'signature',
    });
  });

  it('a changed body (its hash no longer matches the signed one)', async () => {
    const request = await dynamoRequest();
    const body = Buffer.from(request.body);
    body[body.length - 2] = 0x20;
    expect(await verifySigV4({ ...request, payloadHash: sha256Hex(body) }, dynamo)).toMatchObject({
      ok: false,
      code: 'InvalidSignatureException',
    });
  });

  it('a changed path (S3 key)', async () => {
    const request = await s3PutRequest('blobs/abc');
    const tampered = { ...request, url: request.url.replace('blobs/abc', 'blobs/abd') };
    expect(await verifySigV4(tampered, s3)).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
      status: 403,
    });
  });

  it('a path with ".." where the client signed the literal key', async () => {
    const request = await s3PutRequest('blobs/x');
    const tampered = { ...request, url: request.url.replace('/blobs/x', '/blobs/../blobs/x') };
    expect(await verifySigV4(tampered, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('a changed S3 payload hash header', async () => {
    const request = await s3PutRequest('k');
    const hash = String(request.headers['x-amz-content-sha256']);
    const tampered = { ...request, headers: { ...request.headers, 'x-amz-content-sha256': flipHex(hash) } };
    expect(await verifySigV4(tampered, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('a changed hoisted query parameter (the checksum) or presigned signature', async () => {
    const request = await presignedPartWithHoistedChecksum();
    const checksum = withQuery(request, 'x-amz-checksum-sha256', () => Buffer.alloc(32).toString('base64'));
    expect(await verifySigV4(checksum, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
    const part = withQuery(request, 'partNumber', () => '4');
    expect(await verifySigV4(part, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
    const signature = withQuery(request, 'X-Amz-Signature', flipHex);
    expect(await verifySigV4(signature, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
    const extra = { ...request, url: `${request.url}&acl=` };
    expect(await verifySigV4(extra, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('a presigned PUT sent with another signed header value (length, type, checksum)', async () => {
    const request = await presignedPut();
    for (const [name, value] of [
      ['content-length', '6'],
      ['content-type', 'text/html'],
      ['x-amz-checksum-sha256', Buffer.alloc(32).toString('base64')],
    ] as const) {
      const tampered = { ...request, headers: { ...request.headers, [name]: value } };
      expect(await verifySigV4(tampered, s3), name).toMatchObject({
        ok: false,
        code: 'SignatureDoesNotMatch',
      });
    }
  });

  it('a presigned URL a second after it expired', async () => {
    const later = new Date(NOW.getTime() + 900_000 + 1_000);
    expect(await verifySigV4(await presignedPut(900), { ...s3, now: later })).toMatchObject({
      ok: false,
      reason: 'expired',
      code: 'AccessDenied',
      status: 403,
      message: 'Request has expired',
    });
  });

  it('a presigned URL whose expiry was lengthened', async () => {
    const tampered = withQuery(await presignedPut(60), 'X-Amz-Expires', () => '604800');
    expect(await verifySigV4(tampered, s3)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('a presigned URL living longer than a week', async () => {
    const tampered = withQuery(await presignedPut(60), 'X-Amz-Expires', () => '604801');
    expect(await verifySigV4(tampered, s3)).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('a request signed with another secret key', async () => {
    const c = await capture((handler) =>
      new DynamoDBClient({
        ...clientOptions(handler),
        credentials: { ...CREDS, secretAccessKey: 'other' },
      }).send(new ListTablesCommand({})),
    );
    const request = {
      method: c.method,
      url: toUrl(c),
      headers: c.headers,
      payloadHash: sha256Hex(bodyBytes(c.body)),
    };
    expect(await verifySigV4(request, dynamo)).toMatchObject({
      ok: false,
      code: 'InvalidSignatureException',
    });
  });

  it('another access key id, in each service vocabulary', async () => {
    const c = await capture((handler) =>
      new DynamoDBClient({
        ...clientOptions(handler),
        credentials: { ...CREDS, accessKeyId: 'AKIAOTHER' },
      }).send(new ListTablesCommand({})),
    );
    const request = {
      method: c.method,
      url: toUrl(c),
      headers: c.headers,
      payloadHash: sha256Hex(bodyBytes(c.body)),
    };
    expect(await verifySigV4(request, dynamo)).toMatchObject({
      ok: false,
      code: 'UnrecognizedClientException',
    });
    expect(await verifySigV4(request, { ...sqs })).toMatchObject({ ok: false, code: 'InvalidClientTokenId' });
    expect(await verifySigV4(request, { ...s3 })).toMatchObject({ ok: false, code: 'InvalidAccessKeyId' });
  });

  it('a header-signed request more than 15 minutes from the clock, either way', async () => {
    const request = await dynamoRequest();
    for (const offset of [15 * 60_000 + 1_000, -(15 * 60_000 + 1_000)]) {
      const now = new Date(NOW.getTime() + offset);
      expect(await verifySigV4(request, { ...dynamo, now })).toMatchObject({ ok: false, reason: 'skewed' });
      expect(await verifySigV4(await s3PutRequest('k'), { ...s3, now })).toMatchObject({
        ok: false,
        code: 'RequestTimeTooSkewed',
      });
    }
    expect(
      await verifySigV4(request, { ...dynamo, now: new Date(NOW.getTime() + 14 * 60_000) }),
    ).toMatchObject({
      ok: true,
    });
  });

  it('a request with no signature at all', async () => {
    const anonymous = {
      method: 'POST',
      url: '/',
      headers: { host: '127.0.0.1:4567' },
      payloadHash: sha256Hex(''),
    };
    expect(await verifySigV4(anonymous, dynamo)).toMatchObject({
      ok: false,
      reason: 'missing',
      code: 'MissingAuthenticationTokenException',
    });
    expect(await verifySigV4(anonymous, s3)).toMatchObject({ ok: false, code: 'AccessDenied', status: 403 });
  });

  it('a credential scope for another service, or another region when one is expected', async () => {
    const request = await dynamoRequest();
    expect(await verifySigV4(request, { ...dynamo, service: 'sqs' })).toMatchObject({
      ok: false,
      reason: 'scope',
    });
    expect(await verifySigV4(request, { ...dynamo, region: 'eu-west-1' })).toMatchObject({
      ok: false,
      reason: 'scope',
      code: 'InvalidSignatureException',
      status: 400,
      message: 'Credential should be scoped to a valid region. ',
    });
  });

  it('a header that must be signed, present but not signed', async () => {
    const request = await dynamoRequest();
    expect(await verifySigV4(request, { ...dynamo, mustSign: ['x-amz-target'] })).toMatchObject({ ok: true });
    const auth = String(request.headers.authorization).replace(';x-amz-target', '');
    expect(
      await verifySigV4(
        { ...request, headers: { ...request.headers, authorization: auth } },
        { ...dynamo, mustSign: ['x-amz-target'] },
      ),
    ).toMatchObject({ ok: false, reason: 'signature', code: 'InvalidSignatureException', status: 400 });
  });

  it('unreadable Authorization headers and query strings, without throwing', async () => {
    const base = await dynamoRequest();
    for (const authorization of [
      'AWS4-HMAC-SHA256',
      'AWS AKID:sig',
      'AWS4-HMAC-SHA256 Credential=LOCALKEY/2026/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00',
      `AWS4-HMAC-SHA256 Credential=LOCALKEY, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=LOCALKEY/20261129/us-east-1/dynamodb/aws4_request, SignedHeaders=Host;X, Signature=${'0'.repeat(64)}`,
      `AWS4-HMAC-SHA256 Credential=LOCALKEY/20261129/us-east-1/dynamodb/aws4_request, SignedHeaders=x-amz-date, Signature=${'0'.repeat(64)}`,
    ]) {
      const result = await verifySigV4({ ...base, headers: { ...base.headers, authorization } }, dynamo);
      expect(result, authorization).toMatchObject({ ok: false, reason: 'malformed' });
    }
    expect(
      await verifySigV4({ ...base, headers: { ...base.headers, 'x-amz-date': '20261131T000000Z' } }, dynamo),
    ).toMatchObject({ ok: false, reason: 'malformed' });
    expect(
      await verifySigV4({ method: 'GET', url: '/?X-Amz-Algorithm=%E0%A4%A', headers: {} }, s3),
    ).toMatchObject({
      ok: false,
      reason: 'malformed',
    });
    expect(
      await verifySigV4(
        { method: 'GET', url: '/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=1e3', headers: {} },
        s3,
      ),
    ).toMatchObject({ ok: false, reason: 'malformed' });
  });
});
