/**
 * The cost of the local gates (local/gate.ts in front of DynamoDB and SQS; the S3
 * emulator's own SigV4 check is always on): two local stacks run at once, one with the
 * gates and one without their checks (`MIRROR_BENCH_UNGATED=1`, read when the emulators
 * start: SQS then has no gate, and DynamoDB's gate checks nothing but still answers the
 * transactions the emulator lacks), and every measurement alternates between them, so
 * the load of a shared machine weighs on both alike.
 *
 *   - SigV4 verification alone (µs per request; the S3 emulator pays it too);
 *   - DynamoDB GetItem and SQS SendMessage round trips (p50, p99);
 *   - upload latency: declare + PUT + committed, one small file at a time (p50);
 *   - upload throughput: several MiB-sized files, a few at a time, until all are committed.
 *
 * `npm run bench -- gate` runs this section only.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SignatureV4 } from '@smithy/signature-v4';
import { sleep } from '../common/retry.ts';
import { SigningSha256 as Sha256 } from '../common/sha256-node.ts';
import { LOCAL_CREDENTIALS } from '../local/emulators.ts';
import { UNGATED_ENV } from '../local/gate.ts';
import { type Sandbox, startSandbox } from '../local/sandbox.ts';
import { sha256Hex, verifySigV4 } from '../local/sigv4.ts';
import { localApi } from '../test/support/local-api.ts';

const MiB = 1024 * 1024;
const ROUND_TRIPS = Number(process.env.BENCH_GATE_ROUND_TRIPS ?? 300);
const LATENCY_UPLOADS = Number(process.env.BENCH_GATE_UPLOADS ?? 20);
const THROUGHPUT_FILES = Number(process.env.BENCH_GATE_FILES ?? 16);
const THROUGHPUT_MIB = Number(process.env.BENCH_GATE_FILE_MIB ?? 4);
const CONCURRENCY = 4;

const quantile = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
};
const ms = (x: number) => `${x.toFixed(2)} ms`;

async function verifyCost(): Promise<{ header: number; presigned: number }> {
  const credentials = { ...LOCAL_CREDENTIALS };
  const signer = new SignatureV4({ service: 'dynamodb', region: 'us-east-1', credentials, sha256: Sha256 });
  const body = JSON.stringify({ TableName: 'mirror-ledger', Key: { pk: { S: 'p' }, sk: { S: 's' } } });
  const signed = await signer.sign({
    method: 'POST',
    protocol: 'http:',
    hostname: '127.0.0.1',
    path: '/',
    headers: {
      host: '127.0.0.1:4567',
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': 'DynamoDB_20120810.GetItem',
    },
    body,
  });
  const header = { method: 'POST', url: '/', headers: signed.headers, payloadHash: sha256Hex(body) };
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:4568',
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const url = new URL(
    await getSignedUrl(
      s3,
      new PutObjectCommand({ Bucket: 'mirror-origin', Key: `blobs/${'a'.repeat(64)}` }),
      {
        expiresIn: 900,
      },
    ),
  );
  s3.destroy();
  const presigned = { method: 'PUT', url: url.pathname + url.search, headers: { host: url.host } };
  const per = async (request: Parameters<typeof verifySigV4>[0], service: 'dynamodb' | 's3') => {
    const n = 5_000;
    for (let i = 0; i < 200; i++) await verifySigV4(request, { service, credentials });
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      const r = await verifySigV4(request, { service, credentials });
      if (!r.ok) throw new Error(`bench request refused: ${r.message}`);
    }
    return ((performance.now() - started) / n) * 1000;
  };
  return { header: await per(header, 'dynamodb'), presigned: await per(presigned, 's3') };
}

async function committed(sandbox: Sandbox, uploadId: string): Promise<void> {
  const api = localApi(sandbox.endpoints);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const u = await api.call('GET', `/v1/uploads/${uploadId}`);
    if (u.body?.status === 'committed') return;
    if (Date.now() > deadline) throw new Error(`upload ${uploadId} not committed after 60 s`);
    await sleep(10);
  }
}

async function upload(sandbox: Sandbox, path: string, bytes: Buffer): Promise<void> {
  const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(
    path,
    bytes,
    'application/octet-stream',
  );
  if (created.status !== 201 || putStatus !== 200) {
    throw new Error(`upload of ${path}: declare ${created.status}, PUT ${putStatus}`);
  }
  await committed(sandbox, created.body.uploadId as string);
}

interface Stack {
  readonly sandbox: Sandbox;
  readonly dataDir: string;
  readonly dynamo: DynamoDBClient;
  readonly sqs: SQSClient;
  readonly queueUrl: string;
}

async function startStack(gated: boolean): Promise<Stack> {
  const previous = process.env[UNGATED_ENV];
  if (gated) delete process.env[UNGATED_ENV];
  else process.env[UNGATED_ENV] = '1';
  const dataDir = await mkdtemp(join(tmpdir(), 'mirror-bench-gate-'));
  try {
    const sandbox = await startSandbox({
      dataDir,
      port: 0,
      s3Port: 0,
      sqsPort: 0,
      dynamodbPort: 0,
      env: {},
      webDir: null,
      agents: false,
      schedules: false,
      polling: { waitTimeSeconds: 1 },
      log: () => undefined,
      functionLog: () => undefined,
    });
    const e = sandbox.endpoints;
    const credentials = () => ({ ...LOCAL_CREDENTIALS });
    const dynamo = new DynamoDBClient({
      region: e.s3.region,
      endpoint: e.dynamodb.endpoint,
      credentials: credentials(),
    });
    const sqs = new SQSClient({ region: e.s3.region, endpoint: e.sqs.endpoint, credentials: credentials() });
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'bench-gate' }))).QueueUrl as string;
    return { sandbox, dataDir, dynamo, sqs, queueUrl };
  } finally {
    if (previous === undefined) delete process.env[UNGATED_ENV];
    else process.env[UNGATED_ENV] = previous;
  }
}

async function stopStack(stack: Stack): Promise<void> {
  stack.dynamo.destroy();
  stack.sqs.destroy();
  await stack.sandbox.stop();
  await rm(stack.dataDir, { recursive: true, force: true });
}

/**
 * Runs `op` on both stacks in turn, `n` times each, and returns each one's timings. The
 * machine is shared: alternating puts any drift in its load on both sides alike.
 */
async function alternate(
  stacks: readonly [Stack, Stack],
  n: number,
  op: (stack: Stack, i: number) => Promise<unknown>,
): Promise<[number[], number[]]> {
  const times: [number[], number[]] = [[], []];
  for (let i = 0; i < n; i++) {
    for (const side of [0, 1] as const) {
      const t = performance.now();
      await op(stacks[side], i);
      times[side].push(performance.now() - t);
    }
  }
  return times;
}

export async function benchGate(): Promise<void> {
  const cost = await verifyCost();
  console.log(
    `gate: SigV4 verification alone ${cost.header.toFixed(0)} µs per header-signed request, ${cost.presigned.toFixed(0)} µs per presigned URL`,
  );
  const on = await startStack(true);
  const off = await startStack(false);
  try {
    const stacks = [on, off] as const;
    const line = (label: string, [a, b]: [number, number], fmt: (x: number) => string) =>
      console.log(`gate: ${label}: on ${fmt(a)}, off ${fmt(b)}; on/off = ${(a / b).toFixed(2)}`);
    const p = (times: [number[], number[]], q: number): [number, number] => [
      quantile(times[0], q),
      quantile(times[1], q),
    ];

    const getItem = (s: Stack) =>
      s.dynamo.send(
        new GetItemCommand({
          TableName: s.sandbox.endpoints.table,
          Key: { pk: { S: 'bench' }, sk: { S: 'bench' } },
        }),
      );
    await alternate(stacks, 30, getItem);
    const gets = await alternate(stacks, ROUND_TRIPS, getItem);
    line('DynamoDB GetItem p50', p(gets, 0.5), ms);
    line('DynamoDB GetItem p99', p(gets, 0.99), ms);
    const sendMessage = (s: Stack) =>
      s.sqs.send(new SendMessageCommand({ QueueUrl: s.queueUrl, MessageBody: 'bench' }));
    await alternate(stacks, 30, sendMessage);
    const sends = await alternate(stacks, ROUND_TRIPS, sendMessage);
    line('SQS SendMessage p50', p(sends, 0.5), ms);
    line('SQS SendMessage p99', p(sends, 0.99), ms);

    // Warm the functions first: cold starts are not the gate's.
    await alternate(stacks, 3, (s, i) => upload(s.sandbox, `bench/warm-${i}.bin`, randomBytes(64 * 1024)));
    const uploads = await alternate(stacks, LATENCY_UPLOADS, (s, i) =>
      upload(s.sandbox, `bench/latency-${i}.bin`, randomBytes(64 * 1024)),
    );
    line('upload latency (64 KiB: declare + PUT + committed) p50', p(uploads, 0.5), ms);
    line('upload latency p90', p(uploads, 0.9), ms);

    // Throughput in alternating rounds of CONCURRENCY files each.
    const rounds = Math.max(1, Math.round(THROUGHPUT_FILES / CONCURRENCY));
    const batches = await alternate(stacks, rounds, (s, round) =>
      Promise.all(
        Array.from({ length: CONCURRENCY }, (_, k) =>
          upload(s.sandbox, `bench/throughput-${round}-${k}.bin`, randomBytes(THROUGHPUT_MIB * MiB)),
        ),
      ),
    );
    const bytes = rounds * CONCURRENCY * THROUGHPUT_MIB * MiB;
    const mbps = (times: number[]) => bytes / 1e6 / (times.reduce((a, b) => a + b, 0) / 1000);
    line(
      `upload throughput (${rounds * CONCURRENCY} × ${THROUGHPUT_MIB} MiB, ${CONCURRENCY} at a time, until committed)`,
      [mbps(batches[0]), mbps(batches[1])],
      (x) => `${x.toFixed(1)} MB/s`,
    );
  } finally {
    await stopStack(on);
    await stopStack(off);
  }
}
