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
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp } from 'fauxqs';
import { gatesDisabled, startGate } from './gate.ts';
import { assertPortFree, closeServer, describeListenError, LOOPBACK, listen, type PortRole } from './net.ts';
import { createS3Server } from './s3/server.ts';
import { verifySigV4 } from './sigv4.ts';
import { inProcessUpstream } from './upstream.ts';

const require = createRequire(import.meta.url);

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

interface DynaliteOptions {
  path?: string;
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}
const dynalite = require('dynalite') as (options: DynaliteOptions) => Server;

/**
 * dynalite behind a gate (local/gate.ts): clients reach the gate on `port`, and the gate hands
 * each request it lets through to dynalite's handler in this process.
 */
export async function startDynamo(options: {
  /** The data folder; without one the tables live in memory (tests). */
  dir?: string;
  port: number;
  region?: string;
  /** How long a table stays CREATING/DELETING/UPDATING. @default 20 */
  tableStatusMs?: number;
}): Promise<RunningEmulator> {
  if (options.dir !== undefined) await mkdir(options.dir, { recursive: true });
  await assertPortFree(options.port, PORT_ROLES.dynamodb);
  const statusMs = options.tableStatusMs ?? 20;
  const server = dynalite({
    ...(options.dir === undefined ? {} : { path: options.dir }),
    createTableMs: statusMs,
    deleteTableMs: statusMs,
    updateTableMs: statusMs,
  });
  // Requests reach dynalite in this process (local/upstream.ts). Its server still listens, on a
  // loopback port of its own, because its close(), which also closes its LevelDB store and
  // releases the folder, does nothing for a server that never listened; whatever connects there
  // is cut at once, so nothing reaches the ledger past the gate.
  server.prependListener('connection', (socket: Socket) => socket.destroy());
  await listen(server, 0, PORT_ROLES.dynamodb);
  const stopInner = () => closeServer(server, 1_000);
  const [handler] = server.listeners('request') as Parameters<typeof inProcessUpstream>[0][];
  if (handler === undefined) throw new Error('dynalite created its server without a request handler');
  // Ungated (bench only), the gate still answers transactions: only it has them.
  const gate = await startGate({
    checks: !gatesDisabled(),
    service: 'dynamodb',
    port: options.port,
    role: PORT_ROLES.dynamodb,
    upstream: inProcessUpstream(handler),
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
  onError?: (error: Error) => void;
}): Promise<S3Emulator> {
  await mkdir(options.dir, { recursive: true });
  const s3 = await createS3Server({
    dir: options.dir,
    credentials: LOCAL_CREDENTIALS,
    verify: (request) =>
      verifySigV4(request, {
        service: 's3',
        credentials: LOCAL_CREDENTIALS,
        ...(options.region === undefined ? {} : { region: options.region }),
      }),
    ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    onError: options.onError ?? ((err) => console.error(`local S3: ${err.stack ?? err.message}`)),
  });
  const port = await listen(s3.server, options.port, PORT_ROLES.s3);
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
      await s3.store.persist();
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
  const gate = await startGate({
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
