/**
 * A gate in front of an emulator port that speaks an AWS JSON protocol (DynamoDB, SQS).
 *
 * dynalite and fauxqs check no signature, and dynalite answers every browser with
 * `Access-Control-Allow-Origin: *`: any web page open on the developer's machine could
 * read and write the ledger and the queues. The gate listens on the port clients use, and
 * forwards a request to the emulator (local/upstream.ts) only when
 * - its `Host` is a loopback name of the gate's port (a DNS-rebinding page sends its own);
 * - it carries no `Origin` header and is no CORS preflight: only SDK clients talk to these
 *   ports, and no answer carries an `Access-Control-Allow-*` header;
 * - its body fits the service's request limit and arrives within the time limit;
 * - its SigV4 signature, recomputed by local/sigv4.ts over the buffered body, matches the
 *   local credentials.
 * Refusals use the service's own error shape, so SDK clients report a named error.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { DynamoTransactions, type TransactionAnswer, type UpstreamCall } from './dynamo-transactions.ts';
import { closeServer, listen, loopbackHosts, type PortRole } from './net.ts';
import { type CallObserver, dynamoCalls, sqsCalls } from './observed-calls.ts';
import { type SigV4Credentials, sha256Hex, verifySigV4 } from './sigv4.ts';
import type { Upstream, UpstreamAnswer } from './upstream.ts';

export type GatedService = 'dynamodb' | 'sqs';

/**
 * Measurement only (bench/gate.ts): with this variable set to `1` the SQS emulator listens
 * on its port directly, and the DynamoDB gate checks nothing (no Host, browser or
 * signature check) but still answers transactions, which the emulator lacks: what is left
 * of the gates' cost is the auth checks'.
 */
export const UNGATED_ENV = 'MIRROR_BENCH_UNGATED';

export function gatesDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[UNGATED_ENV] === '1';
}

/** Requests larger than the service takes are refused before they are buffered. */
export const MAX_BODY_BYTES: Record<GatedService, number> = {
  // DynamoDB's largest request (BatchWriteItem) is 16 MB.
  dynamodb: 16 * 1024 * 1024,
  // SQS takes messages and batches up to 1 MiB; the JSON envelope adds a little.
  sqs: 2 * 1024 * 1024,
};

export interface GateOptions {
  readonly service: GatedService;
  /** Public port (0: any free one). */
  readonly port: number;
  readonly role: PortRole;
  /** How a checked request reaches the emulator (local/upstream.ts). */
  readonly upstream: Upstream;
  readonly credentials: SigV4Credentials;
  /** When set, a signature scoped to another region is refused. */
  readonly region?: string;
  readonly maxBodyBytes?: number;
  /** A request whose headers and body take longer is cut (slow-body clients). */
  readonly requestTimeoutMs?: number;
  /**
   * false: no Host, browser or signature check (measurement only, UNGATED_ENV); the body
   * limits and, for DynamoDB, the transactions stay. @default true
   */
  readonly checks?: boolean;
  /** Told of each request the gate lets through (local/observed-calls.ts). @default none */
  readonly observe?: CallObserver;
}

export interface RunningGate {
  readonly port: number;
  stop(): Promise<void>;
}

interface GateError {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** JSON, but not an object. (Not JSON at all: dynalite answers a SerializationException itself.) */
function isNonObjectJson(body: Buffer): boolean {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value === null || typeof value !== 'object' || Array.isArray(value);
  } catch {
    return false;
  }
}

/** The JSON error body each service's SDK client parses. */
function sendError(res: ServerResponse, service: GatedService, error: GateError, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const namespace = service === 'dynamodb' ? 'com.amazon.coral.service' : 'com.amazonaws.sqs';
  const body = JSON.stringify({ __type: `${namespace}#${error.code}`, message: error.message });
  const headers: Record<string, string | number> = {
    'content-type': 'application/x-amz-json-1.0',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
  };
  // SQS's JSON protocol is query-compatible: the SDK takes the error code from this header.
  if (service === 'sqs') headers['x-amzn-query-error'] = `${error.code};Sender`;
  if (close) headers.connection = 'close';
  res.writeHead(error.status, headers);
  res.end(body);
}

function sendJson(res: ServerResponse, answer: TransactionAnswer): void {
  const body = JSON.stringify(answer.body);
  res.writeHead(answer.status, {
    'content-type': 'application/x-amz-json-1.0',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(body);
}

const SERVICE_CODES: Record<
  GatedService,
  { browser: string; host: string; tooLarge: string; upstream: string; protocol: string }
> = {
  dynamodb: {
    browser: 'AccessDeniedException',
    host: 'AccessDeniedException',
    tooLarge: 'ValidationException',
    upstream: 'InternalServerError',
    protocol: 'UnknownOperationException',
  },
  sqs: {
    browser: 'AccessDenied',
    host: 'AccessDenied',
    tooLarge: 'RequestTooLarge',
    upstream: 'InternalError',
    protocol: 'InvalidAction',
  },
};

/** Reads the body up to `max` bytes; undefined when it is larger (the rest is not read). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (Number.isFinite(declared) && declared > max) {
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.off('data', onData);
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('aborted', () => reject(new Error('request aborted')));
  });
}

/** Refusals decided from the request line and headers alone: browsers, and a Host other than this port's. */
function headerRefusal(
  req: IncomingMessage,
  service: GatedService,
  publicPort: number,
): GateError | undefined {
  const codes = SERVICE_CODES[service];
  if (req.headers.origin !== undefined || req.method === 'OPTIONS') {
    return {
      status: 403,
      code: codes.browser,
      message: `the local ${service} port answers no browser: requests with an Origin header or CORS preflights are refused`,
    };
  }
  const host = req.headers.host ?? '';
  if (!loopbackHosts(publicPort).has(host.toLowerCase())) {
    return {
      status: 403,
      code: codes.host,
      message: `Host "${host}" is not this port's own name (127.0.0.1:${publicPort}, localhost:${publicPort} or [::1]:${publicPort})`,
    };
  }
  return undefined;
}

/** A signature that does not match the local credentials (none is checked when `checks` is false). */
async function signatureRefusal(
  req: IncomingMessage,
  body: Buffer,
  options: GateOptions,
): Promise<GateError | undefined> {
  if (options.checks === false) return undefined;
  const verdict = await verifySigV4(
    { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, payloadHash: sha256Hex(body) },
    {
      service: options.service,
      credentials: options.credentials,
      ...(options.region === undefined ? {} : { region: options.region }),
      // The operation: signed, or a signed PutItem could be replayed as any other call.
      mustSign: ['x-amz-target'],
    },
  );
  return verdict.ok ? undefined : { status: verdict.status, code: verdict.code, message: verdict.message };
}

/** Refusals that need the body: the signature, the protocol, bodies the emulator would choke on. */
async function bodyRefusal(
  req: IncomingMessage,
  body: Buffer,
  options: GateOptions,
): Promise<GateError | undefined> {
  const { service } = options;
  const unsigned = await signatureRefusal(req, body, options);
  if (unsigned !== undefined) return unsigned;
  // fauxqs also serves SNS (form-encoded posts), S3 and inspection routes on this port:
  // only SQS's JSON protocol goes through.
  if (
    service === 'sqs' &&
    !(req.method === 'POST' && String(req.headers['content-type']).includes('application/x-amz-json-1.0'))
  ) {
    return {
      status: 400,
      code: SERVICE_CODES[service].protocol,
      message: 'the local SQS speaks the AWS JSON 1.0 protocol only (POST / with application/x-amz-json-1.0)',
    };
  }
  // dynalite throws, uncaught, on a JSON body that is not an object (`null`): it would
  // take the whole stack down. DynamoDB answers such a body with a SerializationException.
  if (service === 'dynamodb' && body.length > 0 && isNonObjectJson(body)) {
    return { status: 400, code: 'SerializationException', message: 'the request body must be a JSON object' };
  }
  return undefined;
}

/** The emulator's answer to one request of the gate's own, signed as the client's was. */
const upstreamCall =
  (upstream: Upstream, original: IncomingMessage): UpstreamCall =>
  async (operation, payload) => {
    const answer = await upstream({
      method: 'POST',
      url: '/',
      headers: {
        host: original.headers.host ?? '',
        authorization: original.headers.authorization ?? '',
        'x-amz-date': original.headers['x-amz-date'] ?? '',
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': `DynamoDB_20120810.${operation}`,
      },
      body: Buffer.from(JSON.stringify(payload)),
    });
    const text = answer.body.toString('utf8');
    return { status: answer.status, body: text ? JSON.parse(text) : {} };
  };

/**
 * Passes the request to the emulator and its answer back (without the CORS headers dynalite adds),
 * after `amend` when given: it returns another JSON body for the answer, or undefined to keep it.
 */
async function forward(
  options: GateOptions,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
  amend?: (status: number, body: Buffer) => Promise<object | undefined>,
) {
  let answer: UpstreamAnswer;
  try {
    answer = await options.upstream({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
      body,
    });
    const amended = amend === undefined ? undefined : await amend(answer.status, answer.body);
    if (amended !== undefined) {
      const text = Buffer.from(JSON.stringify(amended));
      // boto3 and the CLI check dynalite's CRC32 of the body, which is now another body.
      answer = { ...answer, headers: { ...answer.headers, 'x-amz-crc32': String(crc32(text)) }, body: text };
    }
  } catch (err) {
    sendError(res, options.service, {
      status: 500,
      code: SERVICE_CODES[options.service].upstream,
      message: `the local ${options.service} emulator did not answer: ${(err as Error).message}`,
    });
    return;
  }
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(answer.headers)) {
    // dynalite answers every request with CORS headers; the gate answers no browser. The
    // body is sent whole, so its length is known: no chunked framing, no connection header.
    if (name.startsWith('access-control-') || HOP_BY_HOP.has(name)) continue;
    headers[name] = value;
  }
  headers['content-length'] = answer.body.length;
  res.writeHead(answer.status, headers);
  res.end(answer.body);
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

const TABLE_OPERATIONS = new Set(['CreateTable', 'DeleteTable']);

/** The body's JSON, or undefined when it is none. */
function jsonOf(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * dynalite has no transactions: the gate answers them (local/dynamo-transactions.ts), and
 * every other request holds the shared side of their lock. A single write asked for the old
 * item on a failed condition holds the exclusive side: dynalite does not return that item, and
 * the gate reads it before any other write can change it.
 */
async function forwardDynamo(
  options: GateOptions,
  transactions: DynamoTransactions,
  exchange: { req: IncomingMessage; res: ServerResponse; body: Buffer },
  fail: (status: number, code: string, message: string) => void,
): Promise<void> {
  const { req, res, body } = exchange;
  const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
  if (!DynamoTransactions.handles(operation)) {
    // Parsed only when it may matter: every other request's body is left to dynalite alone.
    const payload = TABLE_OPERATIONS.has(operation) || body.includes('ALL_OLD') ? jsonOf(body) : undefined;
    if (DynamoTransactions.returnsOldOnFailure(operation, payload)) {
      const upstream = upstreamCall(options.upstream, req);
      await transactions.lock.withWrite(() =>
        forward(options, req, res, body, (status, answer) =>
          transactions.oldItemOnFailure(operation, payload, { status, body: jsonOf(answer) }, upstream),
        ),
      );
      return;
    }
    await transactions.lock.withRead(async () => {
      await forward(options, req, res, body);
      if (TABLE_OPERATIONS.has(operation)) {
        transactions.forgetTable((payload as { TableName?: unknown })?.TableName);
      }
    });
    return;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch {
    fail(400, 'SerializationException', 'the request body is not JSON');
    return;
  }
  sendJson(res, await transactions.execute(operation, payload, upstreamCall(options.upstream, req)));
}

/** The request as IAM would authorize it (JSON protocol: the operation in x-amz-target). */
function observedCalls(service: GatedService, req: IncomingMessage, body: Buffer) {
  const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch {
    payload = {};
  }
  return service === 'dynamodb' ? dynamoCalls(operation, payload) : sqsCalls(operation, payload);
}

export async function startGate(options: GateOptions): Promise<RunningGate> {
  const { service } = options;
  const codes = SERVICE_CODES[service];
  const max = options.maxBodyBytes ?? MAX_BODY_BYTES[service];
  let publicPort = options.port;
  const sockets = new Set<Socket>();
  const transactions = service === 'dynamodb' ? new DynamoTransactions() : undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A client that goes away mid-body makes the request emit an error: nothing to answer.
    req.on('error', () => undefined);
    let bodyRead = false;
    const fail = (status: number, code: string, message: string) => {
      // An unread body would otherwise be parsed as the next request on this connection:
      // answer, then close it (Node ends the socket once the answer is flushed).
      const unread = !bodyRead && hasBody(req);
      sendError(res, service, { status, code, message }, unread);
      if (unread) req.resume();
    };
    const early = options.checks === false ? undefined : headerRefusal(req, service, publicPort);
    if (early !== undefined) return fail(early.status, early.code, early.message);
    const body = await readBody(req, max);
    if (body === undefined) return fail(413, codes.tooLarge, `the request body is larger than ${max} bytes`);
    bodyRead = true;
    const refusal = await bodyRefusal(req, body, options);
    if (refusal !== undefined) return fail(refusal.status, refusal.code, refusal.message);
    options.observe?.(req.headers, () => observedCalls(service, req, body));
    if (transactions === undefined) return forward(options, req, res, body);
    return forwardDynamo(options, transactions, { req, res, body }, fail);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      sendError(res, service, {
        status: 400,
        code: codes.upstream,
        message: `request failed: ${(err as Error).message}`,
      });
    });
  });
  // Slow or truncated bodies must not hold a connection forever.
  server.requestTimeout = options.requestTimeoutMs ?? 30_000;
  server.headersTimeout = Math.min(server.requestTimeout, 10_000);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Malformed HTTP (bad request line, oversized headers): answer 400/431 and drop the socket.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  publicPort = await listen(server, options.port, options.role);
  return {
    port: publicPort,
    stop: async () => {
      await closeServer(server, 1_000);
      for (const socket of sockets) socket.destroy();
    },
  };
}
