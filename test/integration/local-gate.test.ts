/**
 * The gates in front of the local DynamoDB and SQS ports, and the API front's own guards,
 * seen from outside as a hostile page or a hand-made client would: unsigned, badly signed
 * and browser requests refused in each service's shape with nothing changed, foreign
 * Host names refused, /config.json kept to its own origin, and a bounded fuzz run per
 * port after which a real upload still reaches every target.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ListTablesCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateQueueCommand, ListQueuesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SignatureV4 } from '@smithy/signature-v4';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iamSigner } from '../../cli/iam-auth.ts';
import { SigningSha256 as Sha256 } from '../../common/sha256-node.ts';
import { API_CORS_ALLOWED_HEADERS } from '../../contracts/api.ts';
import { LOCAL_CREDENTIALS } from '../../local/emulators.ts';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { localApi } from '../support/local-api.ts';
import { waitFor } from '../support/wait.ts';

const REGION = 'us-east-1';
let sandbox: Sandbox;
let dataDir: string;
let dynamo: DynamoDBClient;
let sqs: SQSClient;
let table: string;
let queueUrl: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-gate-'));
  sandbox = await startSandbox({
    dataDir,
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    env: {},
    // The page is built into the data folder with its config.json, as `npm start` does.
    agents: true,
    polling: { waitTimeSeconds: 1 },
    log: () => undefined,
    functionLog: () => undefined,
  });
  const credentials = () => ({ ...LOCAL_CREDENTIALS });
  dynamo = new DynamoDBClient({
    region: REGION,
    endpoint: sandbox.endpoints.dynamodb.endpoint,
    credentials: credentials(),
  });
  sqs = new SQSClient({
    region: REGION,
    endpoint: sandbox.endpoints.sqs.endpoint,
    credentials: credentials(),
  });
  table = 'gate-probe';
  await dynamo.send(
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  await waitFor('probe table', async () => {
    const out = await dynamo.send(new DescribeTableCommand({ TableName: table }));
    return out.Table?.TableStatus === 'ACTIVE';
  });
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'gate-probe' }))).QueueUrl as string;
}, 120_000);

afterAll(async () => {
  dynamo?.destroy();
  sqs?.destroy();
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- helpers

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** A request with exactly these headers (fetch would add or refuse some, Host among them). */
function raw(
  endpoint: string,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<RawAnswer> {
  const url = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? 'POST',
        path: options.path ?? '/',
        headers: options.headers ?? {},
        setHost: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const TARGETS = { dynamodb: 'DynamoDB_20120810', sqs: 'AmazonSQS' } as const;
type Service = keyof typeof TARGETS;

const endpointOf = (service: Service) =>
  service === 'dynamodb' ? sandbox.endpoints.dynamodb.endpoint : sandbox.endpoints.sqs.endpoint;

/** Headers of an AWS JSON request, signed with the SDK's signer unless `sign` is false. */
async function jsonHeaders(
  service: Service,
  operation: string,
  body: string,
  options: {
    sign?: boolean;
    secret?: string;
    extra?: Record<string, string>;
    region?: string;
    unsigned?: readonly string[];
  } = {},
): Promise<Record<string, string>> {
  const url = new URL(endpointOf(service));
  const headers: Record<string, string> = {
    host: url.host,
    'content-type': 'application/x-amz-json-1.0',
    'x-amz-target': `${TARGETS[service]}.${operation}`,
    ...options.extra,
  };
  if (options.sign === false) return headers;
  const signer = new SignatureV4({
    service,
    region: options.region ?? REGION,
    credentials: { ...LOCAL_CREDENTIALS, ...(options.secret ? { secretAccessKey: options.secret } : {}) },
    sha256: Sha256,
  });
  const signed = await signer.sign(
    { method: 'POST', protocol: 'http:', hostname: url.hostname, path: '/', headers, body },
    { unsignableHeaders: new Set(options.unsigned ?? []) },
  );
  return signed.headers as Record<string, string>;
}

async function send(
  service: Service,
  operation: string,
  body: string,
  options: Parameters<typeof jsonHeaders>[3] = {},
) {
  return raw(endpointOf(service), { headers: await jsonHeaders(service, operation, body, options), body });
}

const errorType = (answer: RawAnswer) => (JSON.parse(answer.text) as { __type: string }).__type;
const corsHeaders = (answer: RawAnswer) =>
  Object.keys(answer.headers).filter((h) => h.startsWith('access-control-'));

const putItem = (pk: string) => JSON.stringify({ TableName: 'gate-probe', Item: { pk: { S: pk } } });
const sendMessage = (body: string) => JSON.stringify({ QueueUrl: queueUrl, MessageBody: body });

async function tableItems(): Promise<number> {
  return (await dynamo.send(new ScanCommand({ TableName: table }))).Count ?? -1;
}
async function queueMessages(): Promise<number> {
  const out = await sqs.send(
    new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
  );
  return out.Messages?.length ?? 0;
}

// ---------------------------------------------------------------- tests

describe('the DynamoDB gate', () => {
  it("refuses unsigned, tampered, wrongly keyed and skewed requests with 400 in DynamoDB's shape, writing nothing", async () => {
    const cases: [string, RawAnswer, string][] = [
      [
        'unsigned',
        await send('dynamodb', 'PutItem', putItem('a'), { sign: false }),
        'MissingAuthenticationTokenException',
      ],
      [
        'wrong secret',
        await send('dynamodb', 'PutItem', putItem('b'), { secret: 'not-the-secret' }),
        'InvalidSignatureException',
      ],
    ];
    // Signed for one item, sent with another: the body no longer has the signed hash.
    const signedFor = await jsonHeaders('dynamodb', 'PutItem', putItem('c'));
    cases.push([
      'tampered body',
      await raw(endpointOf('dynamodb'), { headers: signedFor, body: putItem('d') }),
      'InvalidSignatureException',
    ]);
    cases.push([
      'tampered target',
      await raw(endpointOf('dynamodb'), {
        headers: { ...signedFor, 'x-amz-target': 'DynamoDB_20120810.DeleteTable' },
        body: putItem('c'),
      }),
      'InvalidSignatureException',
    ]);
    const otherKey =
      signedFor.authorization?.replace(
        `Credential=${LOCAL_CREDENTIALS.accessKeyId}/`,
        'Credential=AKIAOTHER/',
      ) ?? '';
    cases.push([
      'unknown key',
      await raw(endpointOf('dynamodb'), {
        headers: { ...signedFor, authorization: otherKey },
        body: putItem('c'),
      }),
      'UnrecognizedClientException',
    ]);
    const old = new Date(Date.now() - 20 * 60_000)
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    cases.push([
      'skewed clock',
      await raw(endpointOf('dynamodb'), { headers: { ...signedFor, 'x-amz-date': old }, body: putItem('c') }),
      'InvalidSignatureException',
    ]);
    for (const [name, answer, code] of cases) {
      expect(answer.status, name).toBe(400);
      expect(answer.headers['content-type'], name).toBe('application/x-amz-json-1.0');
      expect(errorType(answer), name).toBe(`com.amazon.coral.service#${code}`);
      expect(corsHeaders(answer), name).toEqual([]);
    }
    expect(await tableItems()).toBe(0);
    // The same request, correctly signed, goes through: the refusals were the signature's.
    expect((await send('dynamodb', 'PutItem', putItem('ok'))).status).toBe(200);
    expect(await tableItems()).toBe(1);
  });

  it('refuses a signed body that is JSON but no object (dynalite would throw, uncaught, and stop the stack)', async () => {
    for (const body of ['null', '[]', '1', '"x"']) {
      const answer = await send('dynamodb', 'ListTables', body);
      expect(answer.status, body).toBe(400);
      expect(errorType(answer), body).toBe('com.amazon.coral.service#SerializationException');
    }
    expect((await send('dynamodb', 'ListTables', '{}')).status).toBe(200);
  });

  it('an SDK client with the wrong key gets a named error', async () => {
    const wrong = new DynamoDBClient({
      region: REGION,
      endpoint: sandbox.endpoints.dynamodb.endpoint,
      credentials: { accessKeyId: LOCAL_CREDENTIALS.accessKeyId, secretAccessKey: 'wrong' },
      maxAttempts: 1,
    });
    await expect(wrong.send(new ListTablesCommand({}))).rejects.toMatchObject({
      name: 'InvalidSignatureException',
      $metadata: { httpStatusCode: 400 },
    });
    wrong.destroy();
  });

  it('refuses a signature scoped to another region, and a request whose x-amz-target is not signed, as DynamoDB does', async () => {
    const otherRegion = await send('dynamodb', 'PutItem', putItem('elsewhere'), { region: 'eu-west-1' });
    expect(otherRegion.status).toBe(400);
    expect(JSON.parse(otherRegion.text)).toEqual({
      __type: 'com.amazon.coral.service#InvalidSignatureException',
      message: 'Credential should be scoped to a valid region. ',
    });
    // The body is signed, the operation is not: anyone could turn the PutItem into another call.
    const operationUnsigned = await send('dynamodb', 'PutItem', putItem('unsigned-op'), {
      unsigned: ['x-amz-target'],
    });
    expect(operationUnsigned.status).toBe(400);
    expect(errorType(operationUnsigned)).toBe('com.amazon.coral.service#InvalidSignatureException');
    for (const pk of ['elsewhere', 'unsigned-op']) {
      const out = await dynamo.send(new GetItemCommand({ TableName: table, Key: { pk: { S: pk } } }));
      expect(out.Item, pk).toBeUndefined();
    }
  });
});

describe('the SQS gate', () => {
  it("refuses unsigned, tampered and wrongly keyed requests with 403 in SQS's JSON shape, sending nothing", async () => {
    const signedFor = await jsonHeaders('sqs', 'SendMessage', sendMessage('signed'));
    const cases: [string, RawAnswer, string][] = [
      [
        'unsigned',
        await send('sqs', 'SendMessage', sendMessage('x'), { sign: false }),
        'MissingAuthenticationToken',
      ],
      [
        'wrong secret',
        await send('sqs', 'SendMessage', sendMessage('x'), { secret: 'nope' }),
        'SignatureDoesNotMatch',
      ],
      [
        'tampered body',
        await raw(endpointOf('sqs'), { headers: signedFor, body: sendMessage('other') }),
        'SignatureDoesNotMatch',
      ],
      [
        'unknown key',
        await raw(endpointOf('sqs'), {
          headers: {
            ...signedFor,
            authorization:
              signedFor.authorization?.replace(
                `Credential=${LOCAL_CREDENTIALS.accessKeyId}/`,
                'Credential=AKIAOTHER/',
              ) ?? '',
          },
          body: sendMessage('signed'),
        }),
        'InvalidClientTokenId',
      ],
      [
        'unsigned CreateQueue',
        await send('sqs', 'CreateQueue', JSON.stringify({ QueueName: 'planted' }), { sign: false }),
        'MissingAuthenticationToken',
      ],
      [
        'operation not signed',
        await send('sqs', 'SendMessage', sendMessage('x'), { unsigned: ['x-amz-target'] }),
        'SignatureDoesNotMatch',
      ],
    ];
    for (const [name, answer, code] of cases) {
      expect(answer.status, name).toBe(403);
      expect(errorType(answer), name).toBe(`com.amazonaws.sqs#${code}`);
      expect(answer.headers['x-amzn-query-error'], name).toBe(`${code};Sender`);
      expect(corsHeaders(answer), name).toEqual([]);
    }
    expect(await queueMessages()).toBe(0);
    const queues = await sqs.send(new ListQueuesCommand({}));
    expect(queues.QueueUrls?.some((u) => u.endsWith('/planted'))).toBe(false);
    expect((await raw(endpointOf('sqs'), { headers: signedFor, body: sendMessage('signed') })).status).toBe(
      200,
    );
    expect(await queueMessages()).toBe(1);
  });

  it("lets through only SQS's JSON protocol (fauxqs's SNS, S3 and inspection routes stay shut)", async () => {
    const url = new URL(endpointOf('sqs'));
    const signer = new SignatureV4({
      service: 'sqs',
      region: REGION,
      credentials: { ...LOCAL_CREDENTIALS },
      sha256: Sha256,
    });
    const form = 'Action=CreateTopic&Name=planted';
    const signed = await signer.sign({
      method: 'POST',
      protocol: 'http:',
      hostname: url.hostname,
      path: '/',
      headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    const answer = await raw(endpointOf('sqs'), {
      headers: signed.headers as Record<string, string>,
      body: form,
    });
    expect(answer.status).toBe(400);
    expect(errorType(answer)).toBe('com.amazonaws.sqs#InvalidAction');
    const inspect = await raw(endpointOf('sqs'), {
      method: 'GET',
      path: '/_fauxqs/queues',
      headers: { host: url.host },
    });
    expect(inspect.status).toBe(403);
  });
});

describe('no browser reaches the DynamoDB and SQS ports', () => {
  for (const service of ['dynamodb', 'sqs'] as const) {
    it(`${service}: preflights and requests with an Origin, even correctly signed, get 403 and no CORS header`, async () => {
      const preflight = await raw(endpointOf(service), {
        method: 'OPTIONS',
        headers: {
          host: new URL(endpointOf(service)).host,
          origin: 'http://127.0.0.1:9',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,x-amz-target,x-amz-date',
        },
      });
      expect(preflight.status).toBe(403);
      expect(corsHeaders(preflight)).toEqual([]);
      // The local key pair is no secret: a page could sign. Its Origin gives it away.
      const body = service === 'dynamodb' ? putItem('from-a-page') : sendMessage('from-a-page');
      const op = service === 'dynamodb' ? 'PutItem' : 'SendMessage';
      const signed = await jsonHeaders(service, op, body, { extra: { origin: 'http://evil.example' } });
      const answer = await raw(endpointOf(service), { headers: signed, body });
      expect(answer.status).toBe(403);
      expect(corsHeaders(answer)).toEqual([]);
      expect(errorType(answer)).toMatch(/#AccessDenied(Exception)?$/);
    });

    it(`${service}: a Host other than the port's loopback names is refused (DNS rebinding)`, async () => {
      const op = service === 'dynamodb' ? 'ListTables' : 'ListQueues';
      const headers = await jsonHeaders(service, op, '{}', {
        extra: { host: `evil.example:${new URL(endpointOf(service)).port}` },
      });
      const answer = await raw(endpointOf(service), { headers, body: '{}' });
      expect(answer.status).toBe(403);
      expect(answer.text).toContain('evil.example');
    });
  }
});

describe('the API front', () => {
  const front = () => new URL(sandbox.endpoints.api);

  it('refuses a foreign Host (DNS rebinding) on every path, config.json included', async () => {
    for (const path of ['/config.json', '/v1/targets', '/v1/health', '/', '/metrics']) {
      const answer = await raw(sandbox.endpoints.api, {
        method: 'GET',
        path,
        headers: { host: `evil.example:${front().port}`, authorization: `Bearer ${sandbox.endpoints.token}` },
      });
      expect(answer.status, path).toBe(421);
      expect(answer.text, path).not.toContain(sandbox.endpoints.token);
    }
    for (const host of [`127.0.0.1:${front().port}`, `localhost:${front().port}`, `[::1]:${front().port}`]) {
      const answer = await raw(sandbox.endpoints.api, {
        method: 'GET',
        path: '/v1/health',
        headers: { host },
      });
      expect(answer.status, host).toBe(200);
    }
  });

  it('serves /config.json to its own origin only, with no CORS header', async () => {
    const own = await raw(sandbox.endpoints.api, {
      method: 'GET',
      path: '/config.json',
      headers: { host: front().host, 'sec-fetch-site': 'same-origin' },
    });
    expect(own.status).toBe(200);
    const config = JSON.parse(own.text) as { token?: string; origins: string[] };
    // No token: any local process can ask over loopback; the page takes it from the printed #token=.
    expect(config.token).toBeUndefined();
    expect(config.origins).toContain(front().origin);
    expect(corsHeaders(own)).toEqual([]);
    for (const headers of [
      { origin: 'http://127.0.0.1:9' },
      { origin: 'null' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ] as Record<string, string>[]) {
      const answer = await raw(sandbox.endpoints.api, {
        method: 'GET',
        path: '/config.json',
        headers: { host: front().host, ...headers },
      });
      expect(answer.status, JSON.stringify(headers)).toBe(403);
      expect(answer.text).not.toContain(sandbox.endpoints.token);
      expect(corsHeaders(answer)).toEqual([]);
    }
  });

  it('keeps /config.json to its own origin under every spelling of its path', async () => {
    // The page's files are served by the decoded, normalised path: each of these names config.json.
    for (const path of [
      '/%63onfig.json',
      '//config.json',
      '/./config.json',
      '/x/../config.json',
      '/config%2Ejson',
    ]) {
      const own = await raw(sandbox.endpoints.api, { method: 'GET', path, headers: { host: front().host } });
      expect(own.status, path).toBe(200);
      const foreign = await raw(sandbox.endpoints.api, {
        method: 'GET',
        path,
        headers: { host: front().host, origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' },
      });
      expect(foreign.status, path).toBe(403);
      expect(corsHeaders(foreign)).toEqual([]);
    }
  });

  it('answers CORS only for the configured origins', async () => {
    const preflight = (origin: string) =>
      raw(sandbox.endpoints.api, {
        method: 'OPTIONS',
        path: '/v1/uploads',
        headers: { host: front().host, origin, 'access-control-request-method': 'POST' },
      });
    const configured = sandbox.topology.api.corsOrigins[0] as string;
    expect((await preflight(configured)).headers['access-control-allow-origin']).toBe(configured);
    expect(corsHeaders(await preflight('http://127.0.0.1:9'))).toEqual([]);
  });

  it("refuses a request a page signs with the stack's public key pair (an Origin), even from a configured origin", async () => {
    const configured = sandbox.topology.api.corsOrigins[0] as string;
    const sign = await iamSigner(sandbox.endpoints.api, {
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_REGION: sandbox.endpoints.s3.region,
    });
    const get = async (origin?: string) =>
      raw(sandbox.endpoints.api, {
        method: 'GET',
        path: '/v1/targets',
        headers: {
          host: front().host,
          ...(origin === undefined ? {} : { origin }),
          ...(await sign({
            method: 'GET',
            url: `${sandbox.endpoints.api}/v1/targets`,
            headers: {},
            body: undefined,
          })),
        },
      });
    // A program on this machine may sign with the keys (they are public); a page may not.
    expect((await get()).status).toBe(200);
    for (const origin of [configured, 'http://127.0.0.1:9']) {
      const fromPage = await get(origin);
      expect(fromPage.status, origin).toBe(403);
      expect(fromPage.text, origin).not.toContain('"targets"');
    }
    // The preflight names the API's own request headers (as the deployed API's CORS rule), not
    // whatever a page asks for.
    const preflight = await raw(sandbox.endpoints.api, {
      method: 'OPTIONS',
      path: '/v1/uploads',
      headers: {
        host: front().host,
        origin: configured,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,x-planted-header',
      },
    });
    expect(preflight.headers['access-control-allow-headers']).toBe(API_CORS_ALLOWED_HEADERS.join(','));
  });
});

// ---------------------------------------------------------------- fuzz

interface Exchange {
  status: number | undefined;
  ms: number;
}

/**
 * Writes `chunks` to a fresh connection (pausing `gapMs` between them, then half-closing
 * when `truncate`), and reads the status line of the answer, if any.
 */
function exchange(
  port: number,
  chunks: Buffer[],
  options: { gapMs?: number; truncate?: boolean } = {},
): Promise<Exchange> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let head = '';
    const done = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      socket.destroy();
      resolve({ status: m ? Number(m[1]) : undefined, ms: Date.now() - started });
    };
    socket.setTimeout(5_000, done);
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) done();
    });
    socket.on('close', done);
    socket.on('error', done);
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
      }
      if (options.truncate) socket.end();
    });
  });
}

function httpBytes(headers: Record<string, string>, body: Buffer | string = ''): Buffer {
  const lines = ['POST / HTTP/1.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''];
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), Buffer.from(body)]);
}

type FuzzCase =
  | { kind: 'garbage'; bytes: Uint8Array }
  | { kind: 'unsigned'; body: string }
  | { kind: 'signed'; operation: string; body: string }
  | { kind: 'huge-header'; size: number }
  | { kind: 'truncated'; body: string }
  | { kind: 'slow'; body: string }
  | { kind: 'too-large' };

const fuzzCase = (service: Service): fc.Arbitrary<FuzzCase> =>
  fc.oneof(
    fc.record({
      kind: fc.constant('garbage' as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 2048 }),
    }),
    fc.record({ kind: fc.constant('unsigned' as const), body: fc.string({ maxLength: 500 }) }),
    fc.record({
      kind: fc.constant('signed' as const),
      operation:
        service === 'dynamodb'
          ? fc.constantFrom(
              'PutItem',
              'GetItem',
              'Query',
              'CreateTable',
              'BatchWriteItem',
              'UpdateItem',
              'Nope',
            )
          : fc.constantFrom(
              'SendMessage',
              'ReceiveMessage',
              'CreateQueue',
              'DeleteMessage',
              'SetQueueAttributes',
              'Nope',
            ),
      body: fc.oneof(fc.string({ maxLength: 500 }), fc.json({ maxDepth: 4 }), fc.constant('{"TableName":')),
    }),
    fc.record({ kind: fc.constant('huge-header' as const), size: fc.integer({ min: 20_000, max: 200_000 }) }),
    fc.record({ kind: fc.constant('truncated' as const), body: fc.json({ maxDepth: 2 }) }),
    fc.record({ kind: fc.constant('slow' as const), body: fc.json({ maxDepth: 2 }) }),
    fc.record({ kind: fc.constant('too-large' as const) }),
  );

async function runCase(service: Service, c: FuzzCase): Promise<Exchange & { kind: string }> {
  const port = Number(new URL(endpointOf(service)).port);
  const host = `127.0.0.1:${port}`;
  const withLength = (h: Record<string, string>, body: string) => ({
    ...h,
    'content-length': String(Buffer.byteLength(body)),
  });
  let result: Exchange;
  switch (c.kind) {
    case 'garbage':
      result = await exchange(port, [Buffer.from(c.bytes)], { truncate: true });
      break;
    case 'unsigned':
      result = await exchange(port, [
        httpBytes(withLength(await jsonHeaders(service, 'PutItem', c.body, { sign: false }), c.body), c.body),
      ]);
      break;
    case 'signed':
      result = await exchange(port, [
        httpBytes(withLength(await jsonHeaders(service, c.operation, c.body), c.body), c.body),
      ]);
      break;
    case 'huge-header':
      result = await exchange(port, [
        httpBytes({ host, 'x-filler': 'a'.repeat(c.size), 'content-length': '0' }),
      ]);
      break;
    case 'truncated': {
      const headers = withLength(await jsonHeaders(service, 'PutItem', c.body), `${c.body}0123456789`);
      result = await exchange(port, [httpBytes(headers, c.body)], { truncate: true });
      break;
    }
    case 'slow': {
      const bytes = httpBytes(withLength(await jsonHeaders(service, 'ListTables', c.body), c.body), c.body);
      const step = Math.ceil(bytes.length / 4);
      result = await exchange(
        port,
        [0, 1, 2, 3].map((i) => bytes.subarray(i * step, (i + 1) * step)),
        { gapMs: 50 },
      );
      break;
    }
    case 'too-large':
      result = await exchange(port, [
        httpBytes({ host, 'content-length': String(64 * 1024 * 1024) }, 'x'.repeat(1000)),
      ]);
      break;
  }
  return { ...result, kind: c.kind };
}

/** What each fuzz case must get: an answer or a closed connection, in time, with the status its kind implies. */
function expectAnswered(service: Service, r: Awaited<ReturnType<typeof runCase>>): void {
  // Nothing may hang: the gate answers or closes well inside the socket timeout.
  expect(r.ms, `${r.kind} took ${r.ms} ms`).toBeLessThan(5_000);
  const expected: Partial<Record<string, number>> = {
    // DynamoDB refuses a missing signature with 400, SQS with 403.
    unsigned: service === 'dynamodb' ? 400 : 403,
    'huge-header': 431,
    'too-large': 413,
  };
  const status = expected[r.kind];
  if (status !== undefined) expect(r.status).toBe(status);
  if (r.kind === 'signed' || r.kind === 'slow') expect(r.status, `${r.kind}`).toBeGreaterThanOrEqual(200);
}

describe('fuzzing the gated ports leaves the stack up', () => {
  for (const service of ['dynamodb', 'sqs'] as const) {
    it(`${service}: garbage, invalid JSON, huge headers, slow and truncated bodies each get an answer or a closed connection`, async () => {
      const cases = fc.sample(fuzzCase(service), { numRuns: 120, seed: service === 'dynamodb' ? 11 : 12 });
      const deadline = Date.now() + 60_000;
      const seen = new Map<string, Set<number | undefined>>();
      let run = 0;
      for (const c of cases) {
        if (Date.now() > deadline) break;
        const r = await runCase(service, c);
        run++;
        const statuses = seen.get(r.kind) ?? new Set();
        statuses.add(r.status);
        seen.set(r.kind, statuses);
        expectAnswered(service, r);
      }
      console.log(
        `${service} fuzz: ${run} cases`,
        Object.fromEntries([...seen].map(([k, v]) => [k, [...v]])),
      );
      expect(run).toBeGreaterThan(50);
      // Still serving signed clients.
      if (service === 'dynamodb')
        expect((await dynamo.send(new ListTablesCommand({}))).TableNames).toContain(table);
      else expect((await sqs.send(new ListQueuesCommand({}))).QueueUrls?.length).toBeGreaterThan(0);
    }, 120_000);
  }

  it('after the fuzz runs, a real upload reaches every target', async () => {
    const bytes = randomBytes(200_000);
    const path = `gate/after-fuzz-${Date.now()}.bin`;
    const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(
      path,
      bytes,
      'application/octet-stream',
    );
    expect(created.status).toBe(201);
    expect(putStatus).toBe(200);
    const targetCount = Object.keys(sandbox.endpoints.targets).length;
    expect(targetCount).toBeGreaterThanOrEqual(3);
    const file = await waitFor(
      'every target to hold the upload',
      async () => {
        const f = await localApi(sandbox.endpoints).call('GET', `/v1/files/${encodeURIComponent(path)}`);
        const targets = (f.body?.targets ?? []) as { status: string }[];
        return targets.length === targetCount &&
          targets.every((t) => t.status === 'copied' || t.status === 'verified')
          ? f.body
          : undefined;
      },
      60_000,
      200,
    );
    expect(file.head.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    // The probe table kept its one item through the fuzzing of its port.
    expect(
      (await dynamo.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'ok' } } }))).Item,
    ).toBeDefined();
  }, 90_000);
});
