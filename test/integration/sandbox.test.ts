/**
 * The local stack (local/sandbox.ts) with a recording handler in place of the real ones:
 * endpoints file, API front, S3 notifications, event-source mappings (partial batch
 * failure, redelivery, DLQ), persistence, ports, parallel starts and failed starts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2, S3Event, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_CORS_ALLOWED_HEADERS, API_EXPOSED_HEADERS } from '../../contracts/api.ts';
import { parseTopology } from '../../contracts/topology.ts';
import type { InvocationReport } from '../../local/functions.ts';
import { type Sandbox, type SandboxOptions, startSandbox } from '../../local/sandbox.ts';
import { STOP_GRACE_MS } from '../../local/stop-grace.ts';
import { testStackOptions } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';
import type { RecordedInvocation } from './fixtures/recording-handler.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/recording-handler.ts', import.meta.url));
const SLOW_RECONCILE = fileURLToPath(new URL('./fixtures/slow-reconcile.ts', import.meta.url));

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: 'eu-west-1', kind: 's3', region: 'eu-west-1', keyPrefix: 'media/' },
    { id: 'onprem-dc1', kind: 'pull' },
  ],
  api: { corsOrigins: ['https://cms.example.test'] },
});

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mirror-sandbox-'));
  dirs.push(dir);
  return dir;
}

/** A sandbox on ephemeral ports with the recording handler everywhere. */
function options(dataDir: string, log: string, extra: Partial<SandboxOptions> = {}): SandboxOptions {
  return testStackOptions(dataDir, {
    topology,
    env: {},
    handlers: {
      api: FIXTURE,
      ingest: FIXTURE,
      replicate: FIXTURE,
      'lag-monitor': FIXTURE,
      reconcile: FIXTURE,
    },
    functionEnv: { FIXTURE_LOG: log },
    // The probe below reads the pull target's queue itself: no agent may take the message.
    agents: false,
    schedules: { lagIntervalSeconds: 1, reconcileIntervalSeconds: 0 },
    queues: { ingestVisibilityTimeout: 1, targetVisibilityTimeout: 1, maxReceiveCount: 3 },
    ...extra,
  });
}

async function invocations(log: string): Promise<RecordedInvocation[]> {
  if (!existsSync(log)) return [];
  const text = await readFile(log, 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as RecordedInvocation);
}

const sqsRecords = (inv: RecordedInvocation) => (inv.event as SQSEvent).Records;

let sandbox: Sandbox;
let dataDir: string;
let log: string;
let s3: S3Client;
let sqs: SQSClient;
let startMs = 0;
const reports: InvocationReport[] = [];

beforeAll(async () => {
  dataDir = await tempDir();
  log = join(dataDir, 'invocations.jsonl');
  const t0 = Date.now();
  const webDir = await tempDir();
  await writeFile(join(webDir, 'index.html'), '<!doctype html><title>Media Mirror</title>');
  sandbox = await startSandbox(options(dataDir, log, { webDir, onInvocation: (r) => reports.push(r) }));
  startMs = Date.now() - t0;
  const e = sandbox.endpoints;
  s3 = new S3Client({
    ...e.s3,
    credentials: { ...e.s3.credentials },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  sqs = new SQSClient({
    region: e.s3.region,
    endpoint: e.sqs.endpoint,
    credentials: { ...e.s3.credentials },
  });
});

afterAll(async () => {
  s3?.destroy();
  sqs?.destroy();
  await sandbox?.stop();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('local sandbox', () => {
  it('starts quickly and writes endpoints.json with the documented fields', async () => {
    expect(startMs).toBeLessThan(10_000);
    const file = JSON.parse(await readFile(join(dataDir, 'endpoints.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(file).toEqual(JSON.parse(JSON.stringify(sandbox.endpoints)));
    const e = sandbox.endpoints;
    expect(e.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(e.token.length).toBeGreaterThanOrEqual(20);
    expect(e.s3).toEqual({
      endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      region: 'us-east-1',
      credentials: { accessKeyId: expect.any(String), secretAccessKey: expect.any(String) },
      forcePathStyle: true,
    });
    expect(e.sqs.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(e.dynamodb.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(e.table).toBe('mirror-ledger');
    expect(e.originBucket).toBe('mirror-origin');
    // Queue URLs live on the SQS endpoint itself, so any SDK client can address them.
    expect(e.metrics).toBe(`${e.api}/metrics`);
    expect(e.feedShards).toBe(4);
    expect(e.targets).toEqual({
      'eu-west-1': {
        kind: 's3',
        bucket: 'replica-eu-west-1',
        region: 'eu-west-1',
        keyPrefix: 'media/',
        queue: `${e.sqs.endpoint}/000000000000/mirror-target-eu-west-1.fifo`,
        dlq: `${e.sqs.endpoint}/000000000000/mirror-target-eu-west-1-dlq.fifo`,
      },
      'onprem-dc1': {
        kind: 'pull',
        queue: `${e.sqs.endpoint}/000000000000/mirror-target-onprem-dc1.fifo`,
        dlq: `${e.sqs.endpoint}/000000000000/mirror-target-onprem-dc1-dlq.fifo`,
      },
    });
    expect(e.ingest.queue).toBe(`${e.sqs.endpoint}/000000000000/mirror-ingest`);
    expect(sandbox.agents.size).toBe(0);
  });

  it('schedules: the lag monitor every interval, reconcile once at start, with scheduled events', async () => {
    const converged = await sandbox.converged;
    expect(converged.renotify).toEqual({ waiting: 0, renotified: 0 });
    const runs = await waitFor('two lag-monitor runs', async () => {
      const found = (await invocations(log)).filter((i) => i.fn === 'lag-monitor');
      return found.length >= 2 ? found : undefined;
    });
    expect(runs[0]?.event).toMatchObject({
      version: '0',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      region: 'us-east-1',
      resources: ['arn:aws:events:us-east-1:000000000000:rule/lag-monitor-schedule'],
      detail: {},
    });
    // The same environment as the ingest: every target.
    expect(JSON.parse(runs[0]?.env.MIRROR_TARGETS ?? '[]')).toHaveLength(2);
    // A fresh ledger holds nothing to reconcile: the start-up run is skipped (test/integration/ops.test.ts
    // restarts a stack with data and sees it repair).
    expect(converged.reconcile).toBeUndefined();
    expect((await invocations(log)).filter((i) => i.fn === 'reconcile')).toEqual([]);
    // On demand, with a request the scheduled event does not carry.
    await sandbox.reconcile({ targetIds: ['eu-west-1'], dryRun: true });
    expect((await invocations(log)).filter((i) => i.fn === 'reconcile').at(-1)?.event).toEqual({
      targetIds: ['eu-west-1'],
      dryRun: true,
    });
    expect(sandbox.scheduleStats()['reconcile-schedule']).toMatchObject({ runs: 1, failures: 0 });
  });

  it('GET /metrics answers Prometheus text without a token, DLQ depths read from SQS', async () => {
    const response = await fetch(sandbox.endpoints.metrics);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toContain('# TYPE mirror_replication_lag_seconds gauge');
    expect(text).toContain('# TYPE mirror_replication_latency_seconds histogram');
    expect(text).toContain('mirror_dlq_messages{queue="mirror-ingest-dlq"}');
    expect(text).toContain(
      'mirror_dlq_messages{queue="mirror-target-eu-west-1-dlq.fifo",target="eu-west-1"} 0',
    );
    expect(text).toContain('mirror_failed_replications_total{target="eu-west-1"} 0');
    expect((await fetch(sandbox.endpoints.metrics, { method: 'POST' })).status).toBe(405);
  });

  it('API front: open health, bearer token elsewhere, payload-2.0 events, limits and CORS', async () => {
    const { api, token } = sandbox.endpoints;
    const health = await fetch(`${api}/v1/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const anonymous = await fetch(`${api}/v1/targets`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    expect((await fetch(`${api}/v1/targets`, { headers: { authorization: 'Bearer nope' } })).status).toBe(
      401,
    );

    const auth = { authorization: `Bearer ${token}` };
    const echoed = await fetch(`${api}/v1/files/a%20b%2Fc.jpg?x=1&y=2&x=3`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', cookie: 'k1=v1; k2=v2', 'x-multi': 'A' },
      body: '{"hello":"world"}',
    });
    expect(echoed.status).toBe(200);
    expect(echoed.headers.get('set-cookie')).toBe('a=1; Path=/, b=2');
    const { event, functionName } = (await echoed.json()) as {
      event: APIGatewayProxyEventV2;
      functionName: string;
    };
    expect(functionName).toBe('api');
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: '$default',
      rawPath: '/v1/files/a%20b%2Fc.jpg',
      rawQueryString: 'x=1&y=2&x=3',
      queryStringParameters: { x: '1,3', y: '2' },
      cookies: ['k1=v1', 'k2=v2'],
      body: '{"hello":"world"}',
      isBase64Encoded: false,
      requestContext: {
        routeKey: '$default',
        stage: '$default',
        http: {
          method: 'POST',
          path: '/v1/files/a%20b%2Fc.jpg',
          protocol: 'HTTP/1.1',
          sourceIp: '127.0.0.1',
        },
      },
    });
    expect(event.headers['content-type']).toBe('application/json');
    expect(event.headers['x-multi']).toBe('A');
    expect(event.headers.cookie).toBeUndefined();
    expect(event.requestContext.timeEpoch).toBeGreaterThan(Date.now() - 60_000);
    expect(event.requestContext.time).toMatch(/^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000$/);

    const binary = await fetch(`${api}/v1/upload-bytes`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'image/png' },
      body: new Uint8Array([137, 80, 78, 71, 0, 255]),
    });
    const binEvent = ((await binary.json()) as { event: APIGatewayProxyEventV2 }).event;
    expect(binEvent.isBase64Encoded).toBe(true);
    expect(Buffer.from(binEvent.body ?? '', 'base64')).toEqual(Buffer.from([137, 80, 78, 71, 0, 255]));

    const bytes = await fetch(`${api}/v1/binary`, { headers: auth });
    expect(Buffer.from(await bytes.arrayBuffer())).toEqual(Buffer.from([0, 1, 2, 255]));
    const redirect = await fetch(`${api}/v1/redirect`, { headers: auth, redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('https://example.test/elsewhere');

    const tooBig = await fetch(`${api}/v1/files`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: 'x'.repeat(1024 * 1024 + 1),
    });
    expect(tooBig.status).toBe(413);

    // JSON that is not UTF-8 (an overlong "/") reaches the handler as its bytes, base64, for it to
    // refuse (test/integration/api-bad-input.test.ts); as a string it would carry U+FFFD instead.
    const notUtf8Body = Buffer.concat([
      Buffer.from('{"path":"a'),
      Buffer.from([0xc0, 0xaf]),
      Buffer.from('b"}'),
    ]);
    const notUtf8 = await fetch(`${api}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: notUtf8Body,
    });
    const notUtf8Event = ((await notUtf8.json()) as { event: APIGatewayProxyEventV2 }).event;
    expect(notUtf8Event.isBase64Encoded).toBe(true);
    expect(Buffer.from(notUtf8Event.body ?? '', 'base64')).toEqual(notUtf8Body);

    const preflight = await fetch(`${api}/v1/uploads`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://cms.example.test',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://cms.example.test');
    // The API's own request headers, as the deployed API's CORS rule lists them (not an echo).
    expect(preflight.headers.get('access-control-allow-headers')).toBe(API_CORS_ALLOWED_HEADERS.join(','));
    // The deployed API's methods (lib/constructs/upload-api.ts): not HEAD, which it routes nowhere.
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET,POST,PUT,PATCH,DELETE,OPTIONS');
    const own = await fetch(`${api}/v1/health`, { headers: { origin: api } });
    expect(own.headers.get('access-control-allow-origin')).toBe(api);
    // As the HTTP API on AWS exposes them (lib/constructs/upload-api.ts): a page reads Retry-After.
    expect(own.headers.get('access-control-expose-headers')).toBe(API_EXPOSED_HEADERS.join(', '));
    const foreign = await fetch(`${api}/v1/health`, { headers: { origin: 'https://evil.example' } });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();

    const page = await fetch(`${api}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    // Not framed by another site, nothing sniffed, no script but its own (and WebAssembly's).
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self' 'wasm-unsafe-eval'/);
    expect(await page.text()).toContain('<title>Media Mirror</title>');
    expect((await fetch(`${api}/missing.js`)).status).toBe(404);
    expect((await fetch(`${api}/..%2f..%2f..%2fetc%2fpasswd`)).status).toBe(404);
  });

  it('functions get their own environment; the SDK there reaches the emulators from it alone', async () => {
    const { api, token } = sandbox.endpoints;
    const probe = await fetch(`${api}/v1/probe`, { headers: { authorization: `Bearer ${token}` } });
    expect(probe.status).toBe(200);
    expect(await probe.json()).toMatchObject({ headBucket: 'ok', messageId: expect.any(String) });
    const pulled = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: sandbox.endpoints.targets['onprem-dc1']?.queue,
        WaitTimeSeconds: 1,
      }),
    );
    expect(pulled.Messages?.[0]?.Body).toBe('probe');

    const env = (await invocations(log)).find((i) => i.fn === 'api')?.env ?? {};
    expect(env).toMatchObject({
      MIRROR_TABLE: 'mirror-ledger',
      MIRROR_ORIGIN_BUCKET: 'mirror-origin',
      MIRROR_S3_FORCE_PATH_STYLE: 'true',
      MIRROR_FEED_SHARDS: '4',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: sandbox.endpoints.s3.endpoint,
      AWS_ENDPOINT_URL_SQS: sandbox.endpoints.sqs.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: sandbox.endpoints.dynamodb.endpoint,
      AWS_LAMBDA_FUNCTION_NAME: 'api',
    });
    expect(env.HOME).toBeUndefined();
    expect(JSON.parse(env.MIRROR_TARGETS ?? '[]')).toEqual([
      {
        id: 'eu-west-1',
        kind: 's3',
        queueUrl: sandbox.endpoints.targets['eu-west-1']?.queue,
        region: 'eu-west-1',
        bucket: 'replica-eu-west-1',
        keyPrefix: 'media/',
      },
      {
        id: 'onprem-dc1',
        kind: 'pull',
        queueUrl: sandbox.endpoints.targets['onprem-dc1']?.queue,
        keyPrefix: '',
      },
    ]);
  });

  it('a PUT to blobs/<sha256> reaches the ingest function as an S3 event notification', async () => {
    const body = randomBytes(1000);
    const sha = createHash('sha256').update(body).digest('hex');
    const md5 = createHash('md5').update(body).digest('hex');
    const put = Date.now();
    const written = await s3.send(
      new PutObjectCommand({ Bucket: 'mirror-origin', Key: `blobs/${sha}`, Body: body }),
    );
    // The origin bucket is versioned: the notification names the version written.
    expect(written.VersionId).toEqual(expect.any(String));
    // Not under blobs/: no notification.
    await s3.send(new PutObjectCommand({ Bucket: 'mirror-origin', Key: 'other/x', Body: 'x' }));

    const inv = await waitFor('the ingest invocation', async () =>
      (await invocations(log)).find(
        (i) => i.fn === 'ingest' && sqsRecords(i).some((r) => r.body.includes(sha)),
      ),
    );
    const latency = inv.at - put;
    console.log(`sandbox start ${startMs} ms; PUT -> ingest invocation ${latency} ms (cold)`);

    const [record] = sqsRecords(inv);
    expect(record).toMatchObject({
      messageId: expect.any(String),
      receiptHandle: expect.any(String),
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: expect.stringMatching(/^\d+$/),
        SenderId: expect.any(String),
        ApproximateFirstReceiveTimestamp: expect.stringMatching(/^\d+$/),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5')
        .update(record?.body ?? '')
        .digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:mirror-ingest',
      awsRegion: 'us-east-1',
    });
    const s3Event = JSON.parse(record?.body ?? '{}') as S3Event;
    expect(s3Event.Records).toHaveLength(1);
    expect(s3Event.Records[0]).toEqual({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: expect.any(String) },
      requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: { 'x-amz-request-id': expect.any(String), 'x-amz-id-2': expect.any(String) },
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: expect.any(String),
        bucket: {
          name: 'mirror-origin',
          ownerIdentity: { principalId: expect.any(String) },
          arn: 'arn:aws:s3:::mirror-origin',
        },
        object: {
          key: `blobs/${sha}`,
          size: 1000,
          eTag: md5,
          versionId: written.VersionId,
          sequencer: expect.stringMatching(/^[0-9A-F]+$/),
        },
      },
    });
    expect(inv.remainingMs).toBeGreaterThan(0);
    expect(inv.remainingMs).toBeLessThanOrEqual(1_000);
    expect(
      (await invocations(log)).some((i) => i.fn === 'ingest' && JSON.stringify(i.event).includes('other/x')),
    ).toBe(false);

    // A warm invocation: time from PUT to handler.
    const body2 = randomBytes(10);
    const sha2 = createHash('sha256').update(body2).digest('hex');
    const put2 = Date.now();
    await s3.send(new PutObjectCommand({ Bucket: 'mirror-origin', Key: `blobs/${sha2}`, Body: body2 }));
    const inv2 = await waitFor('the warm ingest invocation', async () =>
      (await invocations(log)).find(
        (i) => i.fn === 'ingest' && sqsRecords(i).some((r) => r.body.includes(sha2)),
      ),
    );
    console.log(`PUT -> ingest invocation ${inv2.at - put2} ms (warm)`);
  });

  it('keys are URL-encoded in notifications as S3 does', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'mirror-origin', Key: 'blobs/a b+c(1).txt', Body: 'x' }));
    const inv = await waitFor('the ingest invocation', async () =>
      (await invocations(log)).find(
        (i) => i.fn === 'ingest' && sqsRecords(i).some((r) => r.body.includes('blobs/a+b')),
      ),
    );
    const s3Event = JSON.parse(sqsRecords(inv)[0]?.body ?? '{}') as S3Event;
    expect(s3Event.Records[0]?.s3.object.key).toBe('blobs/a+b%2Bc%281%29.txt');
  });

  it('partial batch failure: failed records come back, then go to the DLQ; the rest is deleted', async () => {
    const { ingest } = sandbox.endpoints;
    const tag = randomBytes(4).toString('hex');
    await sqs.send(
      new SendMessageCommand({ QueueUrl: ingest.queue, MessageBody: JSON.stringify({ tag, fail: true }) }),
    );
    await sqs.send(
      new SendMessageCommand({ QueueUrl: ingest.queue, MessageBody: JSON.stringify({ tag, ok: true }) }),
    );

    const dlq = await waitFor(
      'the failed message in the DLQ',
      async () => {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: ingest.dlq,
            WaitTimeSeconds: 1,
            MessageSystemAttributeNames: ['All'],
          }),
        );
        return out.Messages?.find((m) => m.Body?.includes(tag));
      },
      20_000,
    );
    expect(JSON.parse(dlq.Body ?? '{}')).toEqual({ tag, fail: true });

    const seen = (await invocations(log))
      .filter((i) => i.fn === 'ingest')
      .flatMap(sqsRecords)
      .filter((r) => r.body.includes(tag));
    const failed = seen.filter((r) => r.body.includes('"fail":true'));
    const ok = seen.filter((r) => r.body.includes('"ok":true'));
    // maxReceiveCount 3: received three times (counts 1, 2, 3), then redriven.
    expect(failed.map((r) => r.attributes.ApproximateReceiveCount)).toEqual(['1', '2', '3']);
    expect(ok).toHaveLength(1);
    expect(sandbox.stats().ingest?.failedRecords).toBeGreaterThanOrEqual(3);
  });

  it('an invocation that throws leaves the whole batch for redelivery', async () => {
    const { ingest } = sandbox.endpoints;
    const tag = randomBytes(4).toString('hex');
    await sqs.send(
      new SendMessageCommand({ QueueUrl: ingest.queue, MessageBody: JSON.stringify({ tag, throw: true }) }),
    );
    const again = await waitFor('the redelivery', async () =>
      (await invocations(log))
        .filter((i) => i.fn === 'ingest')
        .flatMap(sqsRecords)
        .find((r) => r.body.includes(tag) && r.attributes.ApproximateReceiveCount === '2'),
    );
    expect(again).toBeDefined();
    expect(sandbox.stats().ingest?.failedInvocations).toBeGreaterThanOrEqual(1);
  });

  it('an invocation past the timeout fails with "Task timed out" and its environment is replaced', async () => {
    const { ingest } = sandbox.endpoints;
    const tag = randomBytes(4).toString('hex');
    // The ingest times out at its queue's visibility timeout (1 s here, as Lambda requires).
    await sqs.send(
      new SendMessageCommand({ QueueUrl: ingest.queue, MessageBody: JSON.stringify({ tag, sleepMs: 1500 }) }),
    );
    const timedOut = await waitFor('a timed-out invocation', async () =>
      reports.find((r) => r.functionName === 'ingest' && r.error?.errorType === 'Sandbox.Timedout'),
    );
    expect(timedOut.error?.message).toMatch(/Task timed out after 1 seconds/);
    // The message comes back once its visibility timeout ends, and runs in another environment:
    // a new one, or another already warm (the ingest has more than one). Whichever invocations
    // end after the timeout, none ran in the environment that timed out.
    const later = () =>
      reports.slice(reports.indexOf(timedOut) + 1).filter((r) => r.functionName === 'ingest');
    await waitFor(
      'the timed-out message to run again',
      async () => later().some((r) => r.error?.errorType === 'Sandbox.Timedout') || undefined,
    );
    expect(later().map((r) => r.environmentId)).not.toContain(timedOut.environmentId);
  });

  it('the origin bucket allows browser PUTs from the API front and configured origins', async () => {
    const object = `${sandbox.endpoints.s3.endpoint}/mirror-origin/blobs/${'0'.repeat(64)}`;
    const preflight = (origin: string) =>
      fetch(object, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'PUT',
          'access-control-request-headers': 'content-type,x-amz-checksum-sha256',
        },
      });
    for (const origin of [sandbox.endpoints.api, 'https://cms.example.test']) {
      const res = await preflight(origin);
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-methods')).toContain('PUT');
    }
    expect((await preflight('https://evil.example')).status).toBe(403);
  });

  it('each S3 target queue feeds its replicate function, FIFO attributes included', async () => {
    const target = sandbox.endpoints.targets['eu-west-1'];
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: target?.queue,
        MessageBody: JSON.stringify({ path: 'a/b.jpg', version: 1 }),
        MessageGroupId: 'a/b.jpg',
        MessageDeduplicationId: 'a/b.jpg#1',
      }),
    );
    const inv = await waitFor('the replicate invocation', async () =>
      (await invocations(log)).find((i) => i.fn === 'replicate-eu-west-1'),
    );
    expect(sqsRecords(inv)[0]?.attributes).toMatchObject({
      MessageGroupId: 'a/b.jpg',
      MessageDeduplicationId: 'a/b.jpg#1',
      SequenceNumber: expect.any(String),
    });
    expect(sqsRecords(inv)[0]?.eventSourceARN).toBe(
      'arn:aws:sqs:us-east-1:000000000000:mirror-target-eu-west-1.fifo',
    );
    expect(inv.env.MIRROR_TARGET_ID).toBe('eu-west-1');
    expect((JSON.parse(inv.env.MIRROR_TARGETS ?? '[]') as unknown[]).length).toBe(1);
  });

  it('a second stack on a folder in use is refused', async () => {
    await expect(startSandbox(options(dataDir, log))).rejects.toThrow(/is in use by another local stack/);
  });

  it('state persists across restarts; stop frees the ports; parallel starts do not collide', async () => {
    await s3.send(
      new PutObjectCommand({ Bucket: 'mirror-origin', Key: 'kept/file.txt', Body: 'still here' }),
    );
    const token = sandbox.endpoints.token;
    await sandbox.stop();
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);

    // Restart on the same folder, and another stack in parallel in its own folder.
    const otherDir = await tempDir();
    const [again, other] = await Promise.all([
      startSandbox(options(dataDir, log)),
      startSandbox(options(otherDir, join(otherDir, 'log.jsonl'))),
    ]);
    sandbox = again;
    try {
      const e = again.endpoints;
      expect(e.token).toBe(token);
      const s3b = new S3Client({ ...e.s3, credentials: { ...e.s3.credentials } });
      const got = await s3b.send(new GetObjectCommand({ Bucket: 'mirror-origin', Key: 'kept/file.txt' }));
      expect(await got.Body?.transformToString()).toBe('still here');
      s3b.destroy();
      const ddb = new DynamoDBClient({
        region: 'us-east-1',
        endpoint: e.dynamodb.endpoint,
        credentials: { ...e.s3.credentials },
      });
      expect(
        (await ddb.send(new DescribeTableCommand({ TableName: 'mirror-ledger' }))).Table?.TableStatus,
      ).toBe('ACTIVE');
      ddb.destroy();
      expect(other.endpoints.api).not.toBe(e.api);
      expect(other.endpoints.token).not.toBe(token);
    } finally {
      await other.stop();
    }

    // Stop frees every port: a new stack binds the very same ones.
    const port = (url: string) => Number(new URL(url).port);
    const e = again.endpoints;
    const same = {
      port: port(e.api),
      s3Port: port(e.s3.endpoint),
      sqsPort: port(e.sqs.endpoint),
      dynamodbPort: port(e.dynamodb.endpoint),
    };
    await again.stop();
    const third = await startSandbox(options(dataDir, log, same));
    sandbox = third;
    expect(third.endpoints.api).toBe(e.api);
    expect((await fetch(`${third.endpoints.api}/v1/health`)).status).toBe(200);
  });

  it('a port in use gives an error naming the variable, and the failed start tears down', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as { port: number }).port;
    const dir = await tempDir();
    try {
      await expect(startSandbox(options(dir, join(dir, 'log.jsonl'), { sqsPort: taken }))).rejects.toThrow(
        new RegExp(`port ${taken} .*already in use.*MIRROR_SQS_PORT`),
      );
      await expect(startSandbox(options(dir, join(dir, 'log.jsonl'), { port: taken }))).rejects.toThrow(
        /already in use.*set PORT/,
      );
      await expect(
        startSandbox(options(dir, join(dir, 'log.jsonl'), { dynamodbPort: taken })),
      ).rejects.toThrow(/already in use.*MIRROR_DYNAMODB_PORT/);
      // The failed starts released the folder (and everything they had started).
      expect(existsSync(join(dir, 'sandbox.lock'))).toBe(false);
      const ok = await startSandbox(options(dir, join(dir, 'log.jsonl')));
      await ok.stop();
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('a bad environment value is reported by name', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'unused'), '');
    await expect(
      startSandbox({ ...options(dir, join(dir, 'l')), port: undefined, env: { PORT: 'eighty' } }),
    ).rejects.toThrow(/PORT="eighty" is not a port number/);
  });
});

describe('stopping while a reconcile runs', () => {
  it('stops within the grace (one grace for the whole stop, not one per step), saying the run was cut off', async () => {
    // Probe: a stop took ~26 s with a 10 s grace, the reconcile worker logging Runtime.ExitError.
    const dir = await tempDir();
    const log = join(dir, 'invocations.jsonl');
    const lines: string[] = [];
    const base = options(join(dir, 'data'), log);
    const stack = await startSandbox({
      ...base,
      handlers: { ...base.handlers, reconcile: SLOW_RECONCILE },
      log: (message) => lines.push(message),
    });
    await stack.converged;
    const run = stack.reconcile().then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    await waitFor(
      'the reconcile to start',
      async () => (await readFile(log, 'utf8').catch(() => '')).includes('slow-reconcile'),
      30_000,
    );
    const started = Date.now();
    await stack.stop();
    const took = Date.now() - started;
    expect(took, `stop took ${took} ms`).toBeLessThan(STOP_GRACE_MS + 4_000);
    const error = await run;
    expect(error?.message).toMatch(/stopp/);
    expect(lines.join('\n')).not.toMatch(/Runtime\.ExitError/);
  }, 120_000);
});
