/**
 * The three emulators, in-process and on loopback:
 * - DynamoDB: dynalite, persisted in `<dataDir>/dynamodb` (LevelDB);
 * - S3: local/s3 (our own strict, versioning emulator), objects and versions in `<dataDir>/s3`;
 * - SQS: fauxqs 1.9.2 (its SQS only), in memory.
 *
 * One fixed local key pair serves all three; the S3 emulator checks every signature
 * itself, DynamoDB and SQS are behind gates that do.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { buildApp } from 'fauxqs';
import type { DynamoThreadMessage, DynamoThreadOptions } from './dynamo-thread.ts';
import { receiveFifoGroupsWhole } from './fauxqs-fifo.ts';
import { gatesDisabled, startGate } from './gate.ts';
import { assertPortFree, closeServer, describeListenError, LOOPBACK, listen, type PortRole } from './net.ts';
import { callObserver } from './observed-calls.ts';
import { createS3Server } from './s3/server.ts';
import { verifySigV4 } from './sigv4.ts';

const require = createRequire(import.meta.url);

/** Where the stack's worker threads start (tsx registered first), and the DynamoDB thread's module. */
const TS_THREAD = new URL('./ts-thread.mjs', import.meta.url);
const DYNAMO_THREAD = new URL('./dynamo-thread.ts', import.meta.url).href;

/**
 * The one key pair every local port accepts (SigV4-checked by the S3 emulator and the
 * gates). The values are s3rver's old built-in account, kept so existing data folders
 * and scripts go on working.
 */
export const LOCAL_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface RunningEmulator {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export const PORT_ROLES = {
  api: { service: 'API front', envVar: 'PORT' },
  s3: { service: 'S3 emulator (local/s3)', envVar: 'MIRROR_S3_PORT' },
  sqs: { service: 'SQS emulator (fauxqs)', envVar: 'MIRROR_SQS_PORT' },
  dynamodb: { service: 'DynamoDB emulator (dynalite)', envVar: 'MIRROR_DYNAMODB_PORT' },
} as const satisfies Record<string, PortRole>;

// ---------------------------------------------------------------- DynamoDB

/**
 * Measurement only (bench/ledger.ts): with this variable set to 1, the DynamoDB thread names the
 * operation (and caller) of each request it receives on the BroadcastChannel `DYNAMODB_REQUESTS_CHANNEL`, so a
 * counter in another thread of the process sees the requests its own HTTP servers do not.
 */
export const DYNAMODB_REQUESTS_ENV = 'MIRROR_BENCH_DYNAMODB_REQUESTS';
export const DYNAMODB_REQUESTS_CHANNEL = 'media-mirror:dynamodb-requests';

/** One request, as posted on DYNAMODB_REQUESTS_CHANNEL. */
export interface DynamoRequestAnnounced {
  /** The x-amz-target's action, e.g. `TransactWriteItems`. */
  readonly operation: string;
  /** The SDK's app id: the local function's name (`ingest`, `api`), `?` when none. */
  readonly caller: string;
}

/**
 * dynalite behind a gate (local/gate.ts), both in a worker thread of their own
 * (local/dynamo-thread.ts): clients reach the gate on `port`.
 */
export async function startDynamo(options: {
  /** The data folder; without one the tables live in memory (tests). */
  dir?: string;
  port: number;
  region?: string;
  /** How long a table stays CREATING/DELETING/UPDATING. @default 20 */
  tableStatusMs?: number;
  /** Called if the thread fails after it started. @default logs to stderr */
  onError?: (error: Error) => void;
  /** The BroadcastChannel on which to post the calls of each accepted request (local/observed-calls.ts). */
  observeChannel?: string;
}): Promise<RunningEmulator> {
  if (options.dir !== undefined) await mkdir(options.dir, { recursive: true });
  // dynalite's close() skips its store if its server never listened (local/README.md): a port
  // already taken is refused here, before the thread opens the folder.
  await assertPortFree(options.port, PORT_ROLES.dynamodb);
  const threadOptions: DynamoThreadOptions = {
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    port: options.port,
    role: PORT_ROLES.dynamodb,
    ...(options.region === undefined ? {} : { region: options.region }),
    tableStatusMs: options.tableStatusMs ?? 20,
    checks: !gatesDisabled(),
    credentials: LOCAL_CREDENTIALS,
    ...(process.env[DYNAMODB_REQUESTS_ENV] === '1' ? { requestsChannel: DYNAMODB_REQUESTS_CHANNEL } : {}),
    ...(options.observeChannel === undefined ? {} : { observeChannel: options.observeChannel }),
  };
  const worker = new Worker(TS_THREAD, {
    workerData: threadOptions,
    argv: [DYNAMO_THREAD],
    execArgv: process.execArgv.filter((a) => a === '--enable-source-maps'),
    // As for the function environments (local/functions.ts): V8 would grow this isolate's young
    // generation to 48 MB under load, for short-lived garbage a small nursery collects as well.
    resourceLimits: { maxYoungGenerationSizeMb: 8 },
  });
  // The message of that type, or the thread's failure.
  const message = <T extends DynamoThreadMessage['type']>(type: T) =>
    new Promise<Extract<DynamoThreadMessage, { type: T | 'failed' }>>((resolve, reject) => {
      const onMessage = (m: DynamoThreadMessage) => {
        if (m.type !== type && m.type !== 'failed') return;
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(m as Extract<DynamoThreadMessage, { type: T | 'failed' }>);
      };
      const onExit = (code: number) => {
        worker.off('message', onMessage);
        reject(new Error(`the local DynamoDB's thread exited (code ${code}) before it was ${type}`));
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  const onError =
    options.onError ?? ((err: Error) => console.error(`local DynamoDB: ${err.stack ?? err.message}`));
  worker.on('error', onError);
  let stopping: Promise<void> | undefined;
  // Requests would only be refused from here on: say why.
  worker.once('exit', (code) => {
    if (stopping === undefined) onError(new Error(`the local DynamoDB's thread exited (code ${code})`));
  });
  const started = await message('started').catch(async (err: unknown) => {
    stopping = Promise.resolve();
    await worker.terminate();
    throw err;
  });
  if (started.type === 'failed') {
    stopping = Promise.resolve();
    await worker.terminate();
    throw Object.assign(new Error(started.error.message), { name: started.error.name });
  }
  const { port } = started;
  return {
    port,
    endpoint: `http://${LOOPBACK}:${port}`,
    stop: () => {
      stopping ??= (async () => {
        const stopped = message('stopped').catch(() => undefined);
        worker.postMessage('stop');
        await stopped;
        worker.off('error', onError);
        await worker.terminate();
      })();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------- S3

/** What the S3 notifier needs to know about a created object. */
export interface S3ObjectCreated {
  readonly eventName: 'ObjectCreated:Put' | 'ObjectCreated:Copy' | 'ObjectCreated:CompleteMultipartUpload';
  readonly bucket: string;
  /** The key as stored (not URL-encoded). */
  readonly key: string;
  readonly size: number | undefined;
  /** Without quotes. */
  readonly eTag: string | undefined;
  /** The version created, in a versioned bucket; undefined for an unversioned bucket's `null` version. */
  readonly versionId?: string | undefined;
  readonly sourceIp: string;
  readonly requestId: string;
  readonly time: Date;
}

export interface S3Emulator extends RunningEmulator {
  /** Subscribes to created objects; returns the unsubscribe function. */
  onObjectCreated(listener: (event: S3ObjectCreated) => void): () => void;
}

/**
 * The local S3 (local/s3/): objects and versions under `dir`, every request SigV4-checked
 * against the local credentials.
 */
export async function startS3(options: {
  dir: string;
  port: number;
  region?: string;
  /** Mid-request silence after which a connection is answered RequestTimeout and closed. */
  idleTimeoutMs?: number;
  /** Presigned requests signed longer ago are refused, as the buckets' policies do on AWS. @default none */
  maxPresignedAgeMs?: number;
  onError?: (error: Error) => void;
  /** The BroadcastChannel on which to post the calls of each accepted request (local/observed-calls.ts). */
  observeChannel?: string;
}): Promise<S3Emulator> {
  await mkdir(options.dir, { recursive: true });
  const observer = callObserver(options.observeChannel);
  const s3 = await createS3Server({
    ...observer.options,
    dir: options.dir,
    credentials: LOCAL_CREDENTIALS,
    verify: (request) =>
      verifySigV4(request, {
        service: 's3',
        credentials: LOCAL_CREDENTIALS,
        ...(options.region === undefined ? {} : { region: options.region }),
        ...(options.maxPresignedAgeMs === undefined ? {} : { maxPresignedAgeMs: options.maxPresignedAgeMs }),
      }),
    ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    onError: options.onError ?? ((err) => console.error(`local S3: ${err.stack ?? err.message}`)),
  });
  const port = await listen(s3.server, options.port, PORT_ROLES.s3).catch(async (err: unknown) => {
    await s3.store.flushed();
    observer.close();
    throw err;
  });
  const listeners = new Set<() => void>();
  return {
    port,
    endpoint: `http://${LOOPBACK}:${port}`,
    onObjectCreated(listener) {
      const off = s3.onObjectCreated(listener);
      listeners.add(off);
      return () => {
        listeners.delete(off);
        off();
      };
    },
    async stop() {
      for (const off of listeners) off();
      listeners.clear();
      await closeServer(s3.server, 1_000);
      await s3.store.flushed();
      observer.close();
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
      { SqsStore: new () => FauxqsStores['sqsStore']; SqsQueue: { prototype: object } },
      { SnsStore: new () => object },
      { S3Store: new () => object },
    ];
    receiveFifoGroupsWhole(sqs.SqsQueue);
    const sqsStore = new sqs.SqsStore();
    sqsStore.host = undefined;
    return { sqsStore, snsStore: new sns.SnsStore(), s3Store: new s3.S3Store() };
  }
  throw new Error('cannot find fauxqs/dist/{sqs,sns,s3}/*Store.js (the local stack expects fauxqs 1.9.x)');
}

/**
 * fauxqs's `startFauxqs` listens on 0.0.0.0; its `buildApp` lets the stack bind loopback only.
 */
export async function startSqs(options: {
  port: number;
  region: string;
  /** The BroadcastChannel on which to post the calls of each accepted request (local/observed-calls.ts). */
  observeChannel?: string;
}): Promise<RunningEmulator> {
  const stores = await makeFauxqsStores();
  const app = buildApp({
    logger: false,
    defaultRegion: options.region,
    stores: stores as unknown as NonNullable<Parameters<typeof buildApp>[0]>['stores'],
  });
  const stopInner = () => app.close();
  // Measurement only (bench/gate.ts): fauxqs on the public port itself.
  if (gatesDisabled()) {
    try {
      await app.listen({ port: options.port, host: LOOPBACK });
    } catch (err) {
      await stopInner().catch(() => undefined);
      throw describeListenError(err, PORT_ROLES.sqs, options.port);
    }
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : options.port;
    return { port, endpoint: `http://${LOOPBACK}:${port}`, stop: stopInner };
  }
  // Behind the gate (local/gate.ts) fauxqs listens on no port: the gate hands it each request in
  // this process through fastify's inject, with the client's Host, so queue URLs still name the
  // port clients use.
  await assertPortFree(options.port, PORT_ROLES.sqs);
  await app.ready();
  const observer = callObserver(options.observeChannel);
  const gate = await startGate({
    ...observer.options,
    service: 'sqs',
    port: options.port,
    role: PORT_ROLES.sqs,
    upstream: async (request) => {
      const answer = await app.inject({
        method: request.method as 'POST',
        url: request.url,
        headers: request.headers,
        payload: request.body,
      });
      return { status: answer.statusCode, headers: answer.headers, body: answer.rawPayload };
    },
    credentials: LOCAL_CREDENTIALS,
    region: options.region,
  }).catch(async (err: unknown) => {
    observer.close();
    await stopInner();
    throw err;
  });
  return {
    port: gate.port,
    endpoint: `http://${LOOPBACK}:${gate.port}`,
    stop: async () => {
      await gate.stop();
      await stopInner();
      observer.close();
    },
  };
}
