/**
 * The three emulators, in-process and on loopback:
 * - DynamoDB: dynalite, persisted in `<dataDir>/dynamodb` (LevelDB);
 * - S3: s3rver, objects persisted in `<dataDir>/s3`;
 * - SQS: fauxqs 1.9.2 (its SQS only), in memory.
 *
 * None checks credentials beyond s3rver's access-key lookup, so one fixed dummy pair
 * (s3rver's built-in account) serves all three.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp } from 'fauxqs';
import { gatesDisabled, startGate } from './gate.ts';
import { assertPortFree, closeServer, describeListenError, LOOPBACK, listen, type PortRole } from './net.ts';

const require = createRequire(import.meta.url);

/** s3rver only accepts access keys it knows; this is its built-in account. */
export const LOCAL_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface RunningEmulator {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export const PORT_ROLES = {
  api: { service: 'API front', envVar: 'PORT' },
  s3: { service: 'S3 emulator (s3rver)', envVar: 'MIRROR_S3_PORT' },
  sqs: { service: 'SQS emulator (fauxqs)', envVar: 'MIRROR_SQS_PORT' },
  dynamodb: { service: 'DynamoDB emulator (dynalite)', envVar: 'MIRROR_DYNAMODB_PORT' },
} as const satisfies Record<string, PortRole>;

// ---------------------------------------------------------------- DynamoDB

interface DynaliteOptions {
  path?: string;
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}
const dynalite = require('dynalite') as (options: DynaliteOptions) => Server;

/**
 * dynalite behind a gate (local/gate.ts): clients reach the gate on `port`; dynalite
 * listens on an internal loopback port that only the gate uses.
 */
export async function startDynamo(options: {
  dir: string;
  port: number;
  region?: string;
}): Promise<RunningEmulator> {
  await mkdir(options.dir, { recursive: true });
  await assertPortFree(options.port, PORT_ROLES.dynamodb);
  const server = dynalite({ path: options.dir, createTableMs: 20, deleteTableMs: 20, updateTableMs: 20 });
  const ungated = gatesDisabled();
  const innerPort = await listen(server, ungated ? options.port : 0, PORT_ROLES.dynamodb);
  // dynalite's close() also closes its LevelDB store, releasing the folder.
  const stopInner = () => closeServer(server, 1_000);
  if (ungated) return { port: innerPort, endpoint: `http://${LOOPBACK}:${innerPort}`, stop: stopInner };
  const gate = await startGate({
    service: 'dynamodb',
    port: options.port,
    role: PORT_ROLES.dynamodb,
    upstreamPort: innerPort,
    credentials: LOCAL_CREDENTIALS,
    ...(options.region === undefined ? {} : { region: options.region }),
  }).catch(async (err: unknown) => {
    await stopInner();
    throw err;
  });
  return {
    port: gate.port,
    endpoint: `http://${LOOPBACK}:${gate.port}`,
    stop: async () => {
      await gate.stop();
      await stopInner();
    },
  };
}

// ---------------------------------------------------------------- S3

/** What the S3 notifier needs to know about a created object. */
export interface S3ObjectCreated {
  readonly eventName:
    | 'ObjectCreated:Put'
    | 'ObjectCreated:Post'
    | 'ObjectCreated:Copy'
    | 'ObjectCreated:CompleteMultipartUpload';
  readonly bucket: string;
  /** The key as stored (not URL-encoded). */
  readonly key: string;
  readonly size: number | undefined;
  /** Without quotes; s3rver reports none for copies. */
  readonly eTag: string | undefined;
  readonly sourceIp: string;
  readonly requestId: string;
  readonly time: Date;
}

/** The parts of s3rver's event record that are read (its records are not S3's; see PLATFORM.md). */
interface S3rverEvent {
  Records?: Array<{
    eventName?: string;
    s3?: { bucket?: { name?: string }; object?: { key?: string; size?: number; eTag?: string } };
  }>;
}

interface S3rverInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: 'event', listener: (event: S3rverEvent) => void): void;
  logger: { close(): void };
}
const S3rver = require('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;

export interface S3Emulator extends RunningEmulator {
  /** Subscribes to created objects; returns the unsubscribe function. */
  onObjectCreated(listener: (event: S3ObjectCreated) => void): () => void;
}

interface RequestFacts {
  readonly method: string;
  readonly url: string;
  readonly copySource: boolean;
  readonly sourceIp: string;
  readonly requestId: string;
}

export async function startS3(options: { dir: string; port: number }): Promise<S3Emulator> {
  await mkdir(options.dir, { recursive: true });
  const s3rver = new S3rver({
    directory: options.dir,
    silent: true,
    // Buckets by path only: host names like <bucket>.127.0.0.1 mean nothing here.
    vhostBuckets: false,
  });
  // s3rver's event records do not say whether a POST was a form upload or the end of a
  // multipart upload; the request that caused the event does, so each request runs in a
  // context the event listener can read.
  const requests = new AsyncLocalStorage<RequestFacts>();
  const handle = s3rver.callback();
  const server = createServer((req, res) => {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const facts: RequestFacts = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      copySource: req.headers['x-amz-copy-source'] !== undefined,
      sourceIp: (req.socket.remoteAddress ?? LOOPBACK).replace(/^::ffff:/, ''),
      requestId,
    };
    requests.run(facts, () => handle(req, res));
  });

  const listeners = new Set<(event: S3ObjectCreated) => void>();
  s3rver.on('event', (event) => {
    const record = event.Records?.[0];
    const facts = requests.getStore();
    if (!record?.eventName?.startsWith('ObjectCreated:')) return;
    const bucket = record.s3?.bucket?.name;
    const key = record.s3?.object?.key;
    if (bucket === undefined || key === undefined) return;
    let eventName: S3ObjectCreated['eventName'];
    if (record.eventName === 'ObjectCreated:Copy' || facts?.copySource) eventName = 'ObjectCreated:Copy';
    else if (record.eventName === 'ObjectCreated:Post') {
      eventName =
        facts !== undefined && /[?&]uploadId=/.test(facts.url)
          ? 'ObjectCreated:CompleteMultipartUpload'
          : 'ObjectCreated:Post';
    } else eventName = 'ObjectCreated:Put';
    const created: S3ObjectCreated = {
      eventName,
      bucket,
      key,
      size: typeof record.s3?.object?.size === 'number' ? record.s3.object.size : undefined,
      eTag: record.s3?.object?.eTag?.replace(/"/g, ''),
      sourceIp: facts?.sourceIp ?? LOOPBACK,
      requestId: facts?.requestId ?? randomBytes(8).toString('hex').toUpperCase(),
      time: new Date(),
    };
    for (const listener of listeners) listener(created);
  });

  const port = await listen(server, options.port, PORT_ROLES.s3);
  return {
    port,
    endpoint: `http://${LOOPBACK}:${port}`,
    onObjectCreated(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      listeners.clear();
      await closeServer(server, 1_000);
      s3rver.logger.close();
    },
  };
}

// ---------------------------------------------------------------- SQS

/**
 * Loads fauxqs's store classes. Its queue URLs are `http://sqs.<region>.<host>:<port>/...`
 * with host `localhost` unless the store's host is cleared, and `sqs.us-east-1.localhost`
 * does not resolve here. That matters: an SDK client whose endpoint comes from
 * AWS_ENDPOINT_URL_SQS (as the handlers' do) sends to the queue URL's host whenever it
 * differs from the endpoint. With the host cleared, a queue URL takes the Host of the
 * CreateQueue request (`http://127.0.0.1:<port>/000000000000/<name>`): the endpoint itself.
 * The package exports only `buildApp`/`startFauxqs`, so the classes are imported by file.
 */
interface FauxqsStores {
  sqsStore: { host: string | undefined };
  snsStore: object;
  s3Store: object;
}
async function makeFauxqsStores(): Promise<FauxqsStores> {
  for (const dir of require.resolve.paths('fauxqs') ?? []) {
    const dist = join(dir, 'fauxqs', 'dist');
    const files = [
      join(dist, 'sqs', 'sqsStore.js'),
      join(dist, 'sns', 'snsStore.js'),
      join(dist, 's3', 's3Store.js'),
    ];
    if (!files.every((f) => existsSync(f))) continue;
    const [sqs, sns, s3] = (await Promise.all(files.map((f) => import(pathToFileURL(f).href)))) as [
      { SqsStore: new () => FauxqsStores['sqsStore'] },
      { SnsStore: new () => object },
      { S3Store: new () => object },
    ];
    const sqsStore = new sqs.SqsStore();
    sqsStore.host = undefined;
    return { sqsStore, snsStore: new sns.SnsStore(), s3Store: new s3.S3Store() };
  }
  throw new Error('cannot find fauxqs/dist/{sqs,sns,s3}/*Store.js (the local stack expects fauxqs 1.9.x)');
}

/**
 * fauxqs's `startFauxqs` listens on 0.0.0.0; its `buildApp` lets the stack bind loopback only.
 */
export async function startSqs(options: { port: number; region: string }): Promise<RunningEmulator> {
  const stores = await makeFauxqsStores();
  const app = buildApp({
    logger: false,
    defaultRegion: options.region,
    stores: stores as unknown as NonNullable<Parameters<typeof buildApp>[0]>['stores'],
  });
  // Behind the gate (local/gate.ts) fauxqs listens on an internal port; the gate forwards
  // the client's Host, so queue URLs still name the port clients use.
  const ungated = gatesDisabled();
  const listenPort = ungated ? options.port : 0;
  if (!ungated) await assertPortFree(options.port, PORT_ROLES.sqs);
  try {
    await app.listen({ port: listenPort, host: LOOPBACK });
  } catch (err) {
    await app.close().catch(() => undefined);
    throw describeListenError(err, PORT_ROLES.sqs, listenPort);
  }
  const address = app.server.address();
  const innerPort = typeof address === 'object' && address !== null ? address.port : listenPort;
  const stopInner = () => app.close();
  if (ungated) return { port: innerPort, endpoint: `http://${LOOPBACK}:${innerPort}`, stop: stopInner };
  const gate = await startGate({
    service: 'sqs',
    port: options.port,
    role: PORT_ROLES.sqs,
    upstreamPort: innerPort,
    credentials: LOCAL_CREDENTIALS,
    region: options.region,
  }).catch(async (err: unknown) => {
    await stopInner();
    throw err;
  });
  return {
    port: gate.port,
    endpoint: `http://${LOOPBACK}:${gate.port}`,
    stop: async () => {
      await gate.stop();
      await stopInner();
    },
  };
}
