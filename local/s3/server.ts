/**
 * A small, strict, versioning S3 emulator for the local stack, in-process on loopback.
 *
 * Written here because no npm package offers one: s3rver 3.7 resolves `..` in keys,
 * accepts anonymous and form uploads, checks no signature or checksum, lists delimiters
 * wrongly and has no versioning; fauxqs's S3 keeps no versions either. It serves what
 * this project and ordinary S3 clients (AWS SDK v3, rclone, browsers with presigned
 * URLs) use, path-style only, and refuses what S3 refuses: every request is SigV4-checked
 * (local/sigv4.ts), every declared checksum and length is checked while the body streams
 * to disk, keys are never paths, and no request, however malformed, stops the process.
 * What it does and does not enforce: docs/local-s3.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { S3ObjectCreated } from '../emulators.ts';
import { loopbackHosts } from '../net.ts';
import { type CallObserver, s3Calls } from '../observed-calls.ts';
import type { SigV4Credentials } from '../sigv4.ts';
import * as buckets from './buckets.ts';
import type { Context } from './context.ts';
import { copyObject } from './copy.ts';
import { corsHeaders, preflight } from './cors.ts';
import { listMultipartUploads, listObjectsV1, listObjectsV2, listObjectVersions } from './list.ts';
import * as multipart from './multipart.ts';
import * as objects from './objects.ts';
import { authenticate, parseTarget, type RequestVerifier, type Target } from './request.ts';
import { S3Store } from './store.ts';
import { errorDocument, errors, S3Error } from './xml.ts';

export interface S3ServerOptions {
  /** The emulator's own folder (`<dataDir>/s3`); nothing is written outside it. */
  readonly dir: string;
  readonly credentials: SigV4Credentials;
  readonly verify: RequestVerifier;
  /** A connection that sends nothing for this long mid-request is answered RequestTimeout and closed. */
  readonly idleTimeoutMs?: number;
  /** Unexpected failures (bugs, disk errors): the request got a 500. */
  readonly onError?: (error: Error) => void;
  /** Told of each authenticated request (local/observed-calls.ts). @default none */
  readonly observe?: CallObserver;
}

export interface S3Server {
  readonly server: Server;
  readonly store: S3Store;
  onObjectCreated(listener: (event: S3ObjectCreated) => void): () => void;
}

/** Query parameters that never select an operation. */
const PLAIN_PARAMS = new Set([
  'x-id',
  'prefix',
  'delimiter',
  'max-keys',
  'marker',
  'continuation-token',
  'start-after',
  'encoding-type',
  'fetch-owner',
  'list-type',
  'key-marker',
  'version-id-marker',
  'upload-id-marker',
  'max-uploads',
  'versionId',
  'max-parts',
  'part-number-marker',
  'partNumber',
  'uploadId',
]);
const isPlain = (name: string) =>
  PLAIN_PARAMS.has(name) ||
  name.startsWith('X-Amz-') ||
  name.startsWith('x-amz-') ||
  name.startsWith('response-');

type Handler = (ctx: Context) => void | Promise<void>;

function bucketRoute(method: string, query: URLSearchParams): Handler | undefined {
  const sub = ['versioning', 'cors', 'location', 'uploads', 'versions', 'delete'].find((s) => query.has(s));
  const unknown = [...query.keys()].find((k) => !isPlain(k) && k !== sub);
  if (unknown !== undefined) return undefined;
  const routes: Record<string, Handler | undefined> = {
    'GET ': query.get('list-type') === '2' ? listObjectsV2 : listObjectsV1,
    'PUT ': buckets.createBucket,
    'HEAD ': buckets.headBucket,
    'DELETE ': buckets.deleteBucket,
    'GET versioning': buckets.getVersioning,
    'PUT versioning': buckets.putVersioning,
    'GET cors': buckets.getCors,
    'PUT cors': buckets.putCors,
    'DELETE cors': buckets.deleteCors,
    'GET location': buckets.getLocation,
    'GET uploads': listMultipartUploads,
    'GET versions': listObjectVersions,
    'POST delete': objects.deleteObjects,
  };
  return routes[`${method} ${sub ?? ''}`];
}

function objectRoute(method: string, query: URLSearchParams, copy: boolean): Handler | undefined {
  if ([...query.keys()].some((k) => !isPlain(k) && k !== 'uploads')) return undefined;
  const uploadId = query.has('uploadId');
  if (method === 'POST' && query.has('uploads')) return multipart.createUpload;
  if (query.has('uploads')) return undefined;
  if (uploadId) {
    if (method === 'PUT' && query.has('partNumber'))
      return copy ? multipart.uploadPartCopy : multipart.uploadPart;
    return (
      { POST: multipart.completeUpload, DELETE: multipart.abortUpload, GET: multipart.listParts } as Record<
        string,
        Handler
      >
    )[method];
  }
  if (method === 'PUT') return copy ? copyObject : objects.putObject;
  return (
    { GET: objects.getObject, HEAD: objects.getObject, DELETE: objects.deleteObject } as Record<
      string,
      Handler
    >
  )[method];
}

function route(ctx: Context): Handler {
  const method = ctx.req.method ?? 'GET';
  const { bucket, key, query } = ctx.target;
  if (bucket === undefined) {
    if (method === 'GET') return buckets.listBuckets;
    throw errors.methodNotAllowed(method);
  }
  const handler =
    key === undefined
      ? bucketRoute(method, query)
      : objectRoute(method, query, ctx.req.headers['x-amz-copy-source'] !== undefined);
  if (handler) return handler;
  if (!['GET', 'PUT', 'POST', 'DELETE', 'HEAD'].includes(method)) throw errors.methodNotAllowed(method);
  throw errors.notImplemented(
    `${method} ${[...query.keys()].filter((k) => !isPlain(k)).join(',') || 'on this resource'}`,
  );
}

/** Browser form uploads (POST Object) are not served: presigned PUTs are the only browser path. */
function isFormPost(req: IncomingMessage, target: Target): boolean {
  if (
    req.method !== 'POST' ||
    target.query.has('delete') ||
    target.query.has('uploads') ||
    target.query.has('uploadId')
  ) {
    return false;
  }
  return true;
}

/** An error in S3's XML shape; anything but an S3Error is reported and answered 500 InternalError. */
function answerError(
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
  requestId: string,
  report: (err: unknown) => void,
): void {
  const error =
    err instanceof S3Error
      ? err
      : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
  if (!(err instanceof S3Error)) report(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorDocument(error, (req.url ?? '/').split('?')[0] ?? '/', requestId);
  res.statusCode = error.status;
  res.setHeader('content-type', 'application/xml');
  res.setHeader('content-length', req.method === 'HEAD' ? 0 : Buffer.byteLength(body));
  // A body not read to its end cannot be skipped safely: the connection closes after this answer.
  if (!req.complete) res.setHeader('connection', 'close');
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * One idle timer per connection: a request whose client stops sending (or reading)
 * gets RequestTimeout, as S3 answers it, and the connection closes.
 * Node's own idle handling would destroy the socket unanswered; with a server-level
 * handler the request gets S3's answer first.
 */
function timeOutIdle(
  socket: Socket,
  current: { req: IncomingMessage; res: ServerResponse; requestId: string } | undefined,
  report: (err: unknown) => void,
): void {
  if (!current || current.res.headersSent) {
    socket.destroy();
    return;
  }
  const timeout = new S3Error(
    400,
    'RequestTimeout',
    'Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.',
  );
  answerError(current.req, current.res, timeout, current.requestId, report);
  current.res.once('finish', () => socket.destroy());
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** Malformed HTTP (bad request line, oversized headers): S3's 400 and the connection closes. */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const error =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new S3Error(
          400,
          'RequestHeaderSectionTooLarge',
          'Your request header section exceeds the maximum allowed size.',
        )
      : // The client closed its half of the connection before its Content-Length was sent.
        err.code === 'HPE_INVALID_EOF_STATE'
        ? errors.incompleteBody()
        : new S3Error(400, 'BadRequest', 'An error occurred when parsing the HTTP request.');
  const body = errorDocument(error, '/', randomBytes(8).toString('hex').toUpperCase());
  socket.end(
    `HTTP/1.1 ${error.status} Bad Request\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Before CORS and the signature: the stack's keys are public, so a page served under a name made
 * to resolve to 127.0.0.1 (DNS rebinding) could sign requests of its own, same-origin, where no
 * CORS rule applies. S3 itself is reached by its own names only.
 */
function refuseForeignHost(req: IncomingMessage): void {
  const host = req.headers.host ?? '';
  if (!loopbackHosts(req.socket.localPort ?? 0).has(host.toLowerCase())) {
    throw new S3Error(
      403,
      'AccessDenied',
      `Host "${host}" is not this port's own name (127.0.0.1, localhost or [::1])`,
    );
  }
}

export async function createS3Server(options: S3ServerOptions): Promise<S3Server> {
  const store = await S3Store.open(options.dir);
  const listeners = new Set<(event: S3ObjectCreated) => void>();
  const report = (err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err)));

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    refuseForeignHost(req);
    const target = parseTarget(req.url ?? '/');
    const bucket = target.bucket === undefined ? undefined : store.buckets.get(target.bucket);
    if (req.method === 'OPTIONS') {
      if (target.bucket === undefined) throw errors.methodNotAllowed('OPTIONS');
      if (!bucket) throw errors.noSuchBucket(target.bucket);
      preflight(req, res, bucket.cors);
      return;
    }
    corsHeaders(req, res, bucket?.cors);
    if (isFormPost(req, target))
      throw errors.notImplemented('POST Object (form uploads); use a presigned PUT');
    const signing = await authenticate(req, options.verify, options.credentials, bucket?.region);
    options.observe?.(req.headers, () =>
      s3Calls({ method: req.method ?? 'GET', ...target, headers: req.headers }),
    );
    const sourceIp = (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
    const ctx: Context = {
      req,
      res,
      store,
      target,
      requestId,
      signing,
      created: (event) => {
        const full: S3ObjectCreated = { ...event, sourceIp, requestId, time: new Date() };
        for (const listener of listeners) {
          try {
            listener(full);
          } catch (err) {
            report(err);
          }
        }
      },
    };
    await route(ctx)(ctx);
  }

  const idleMs = options.idleTimeoutMs ?? 60_000;
  const inFlight = new WeakMap<Socket, { req: IncomingMessage; res: ServerResponse; requestId: string }>();
  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', createHash('sha256').update(requestId).digest('base64'));
    res.setHeader('server', 'AmazonS3');
    // Errors of the streams come back through the awaited reads and writes; without a
    // listener a client that vanishes would raise an unhandled 'error'.
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    inFlight.set(req.socket, { req, res, requestId });
    res.once('close', () => {
      if (inFlight.get(req.socket)?.req === req) inFlight.delete(req.socket);
    });
    handle(req, res, requestId).catch((err: unknown) => {
      try {
        answerError(req, res, err, requestId, report);
      } catch (inner) {
        report(inner);
        res.destroy();
      }
    });
  });
  server.setTimeout(idleMs, (socket: Socket) => timeOutIdle(socket, inFlight.get(socket), report));
  server.on('clientError', answerClientError);
  return {
    server,
    store,
    onObjectCreated(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
