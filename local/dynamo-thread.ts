/**
 * The local DynamoDB in a worker thread of its own: the gate (SigV4, Host, the transaction layer)
 * and dynalite with its LevelDB store. A profile of the bulk upload put the main thread, which
 * also runs the S3 and SQS emulators, the API front and the event-source pollers, at about 84%
 * busy, and this part at close to half of it, while the function workers idled most of the time
 * (docs/local-sizing.md). Here it runs on the second core. Clients reach it over HTTP as before.
 *
 * Protocol with `startDynamo` (emulators.ts): `workerData` holds the options; the thread posts
 * `{ type: 'started', port }` or `{ type: 'failed', error }`, and on `'stop'` stops the gate and
 * dynalite (closing LevelDB, which releases the folder) and posts `{ type: 'stopped' }`.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, Server } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import { validateReturnValuesOnConditionCheckFailure } from './dynamo-transactions.ts';
import type { DynamoRequestAnnounced } from './emulators.ts';
import { startGate } from './gate.ts';
import { closeServer, listen, type PortRole } from './net.ts';
import { callerOf, callObserver } from './observed-calls.ts';
import type { SigV4Credentials } from './sigv4.ts';
import { inProcessUpstream } from './upstream.ts';

export interface DynamoThreadOptions {
  /** The data folder; without one the tables live in memory (tests). */
  readonly dir?: string;
  readonly port: number;
  readonly role: PortRole;
  readonly region?: string;
  readonly tableStatusMs: number;
  /** False only when measuring without the gate's checks (bench/gate.ts). */
  readonly checks: boolean;
  /**
   * Measurement only (bench/ledger.ts): a BroadcastChannel on which the thread names the operation
   * (x-amz-target's action) of each request its gate receives, for a counter in another thread.
   */
  readonly requestsChannel?: string;
  /** The BroadcastChannel on which to post the calls of each accepted request (local/observed-calls.ts). */
  readonly observeChannel?: string;
  readonly credentials: SigV4Credentials;
}

export type DynamoThreadMessage =
  | { readonly type: 'started'; readonly port: number }
  | { readonly type: 'failed'; readonly error: { readonly name: string; readonly message: string } }
  | { readonly type: 'stopped' };

interface DynaliteOptions {
  path?: string;
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}
const dynalite = createRequire(import.meta.url)('dynalite') as (options: DynaliteOptions) => Server;

async function start(options: DynamoThreadOptions): Promise<{ port: number; stop: () => Promise<void> }> {
  validateReturnValuesOnConditionCheckFailure();
  const server = dynalite({
    ...(options.dir === undefined ? {} : { path: options.dir }),
    createTableMs: options.tableStatusMs,
    deleteTableMs: options.tableStatusMs,
    updateTableMs: options.tableStatusMs,
  });
  // Requests reach dynalite in this thread (local/upstream.ts). Its server still listens, on a
  // loopback port of its own, because its close(), which also closes its LevelDB store and
  // releases the folder, does nothing for a server that never listened; whatever connects there
  // is cut at once, so nothing reaches the ledger past the gate.
  server.prependListener('connection', (socket: Socket) => socket.destroy());
  await listen(server, 0, options.role);
  const stopInner = () => closeServer(server, 1_000);
  const [handler] = server.listeners('request') as Parameters<typeof inProcessUpstream>[0][];
  if (handler === undefined) throw new Error('dynalite created its server without a request handler');
  const observer = callObserver(options.observeChannel);
  // Ungated (bench only), the gate still answers transactions: only it has them.
  const gate = await startGate({
    ...observer.options,
    checks: options.checks,
    service: 'dynamodb',
    port: options.port,
    role: options.role,
    upstream: inProcessUpstream(handler),
    credentials: options.credentials,
    ...(options.region === undefined ? {} : { region: options.region }),
  }).catch(async (err: unknown) => {
    observer.close();
    await stopInner();
    throw err;
  });
  const stopAnnouncing =
    options.requestsChannel === undefined
      ? () => undefined
      : announceRequests(options.requestsChannel, gate.port);
  return {
    port: gate.port,
    stop: async () => {
      stopAnnouncing();
      await gate.stop();
      await stopInner();
      observer.close();
    },
  };
}

/**
 * Posts the operation of each request reaching `port` on the channel `name`, with its caller (the
 * SDK's app id: the function's name), so a count can leave out a caller's calls; returns the stop.
 */
function announceRequests(name: string, port: number): () => void {
  const channel = new BroadcastChannel(name);
  const listener = (message: unknown) => {
    const { request, socket } = message as { request: IncomingMessage; socket: Socket };
    if (socket.localPort !== port) return;
    const announced: DynamoRequestAnnounced = {
      operation:
        String(request.headers['x-amz-target'] ?? '?')
          .split('.')
          .at(-1) ?? '?',
      caller: callerOf(request.headers) ?? '?',
    };
    channel.postMessage(announced);
  };
  subscribe('http.server.request.start', listener);
  return () => {
    unsubscribe('http.server.request.start', listener);
    channel.close();
  };
}

const port = parentPort;
if (port === null)
  throw new Error('local/dynamo-thread.ts runs as a worker thread (emulators.ts startDynamo)');
const post = (message: DynamoThreadMessage) => port.postMessage(message);
try {
  const running = await start(workerData as DynamoThreadOptions);
  port.on('message', (message: unknown) => {
    if (message !== 'stop') return;
    void running
      .stop()
      .catch((err: unknown) => console.error(`local DynamoDB: stopping failed: ${(err as Error).message}`))
      .finally(() => {
        post({ type: 'stopped' });
        port.close();
      });
  });
  post({ type: 'started', port: running.port });
} catch (err) {
  const error = err instanceof Error ? err : new Error(String(err));
  post({ type: 'failed', error: { name: error.name, message: error.message } });
  port.close();
}
