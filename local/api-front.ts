/**
 * The local equivalent of the API Gateway HTTP API: `/v1/*` goes to the `api`
 * function as a payload-format-2.0 event (`APIGatewayProxyEventV2`, route `$default`),
 * behind a bearer token instead of IAM/JWT, or a signature with the stack's key pair (the event
 * then names the caller as the IAM authorizer does); CORS preflights are answered here, as API
 * Gateway's CORS configuration does. `/metrics` answers Prometheus text (the local
 * stand-in for CloudWatch metrics; no token). Other paths serve the web page's files.
 *
 * Only requests naming the front by its own loopback `Host` are answered (a DNS-rebinding
 * page sends its own host name: 421), and `/config.json` (the page's API address and the origins
 * `?api=` may name; no token: the page takes it from `#token=`) goes only to the page's own
 * origin (no CORS; a cross-origin `Origin` or `Sec-Fetch-Site`: 403).
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { API_CORS_ALLOWED_HEADERS, API_EXPOSED_HEADERS } from '../contracts/api.ts';
import type { Invocable } from './event-source-mapping.ts';
import { closeServer, LOOPBACK, listen, loopbackHosts, type PortRole } from './net.ts';
import { type SigV4Credentials, sha256Hex, verifySigV4 } from './sigv4.ts';

export const MAX_BODY_BYTES = 1024 * 1024;
/** API Gateway's integration timeout. */
const INTEGRATION_TIMEOUT_MS = 30_000;

export interface ApiFrontOptions {
  readonly port: number;
  readonly role: PortRole;
  readonly token: string;
  /**
   * Also accept requests signed with SigV4 for `execute-api` with these credentials, as an API
   * behind the IAM authorizer does (the CLI's `--auth iam`). Undefined: the token only.
   */
  readonly iam?: { readonly credentials: SigV4Credentials; readonly region: string } | undefined;
  readonly fn: Invocable;
  /** Browser origins allowed besides the front's own (`http://127.0.0.1:<port>`, `http://localhost:<port>`). */
  readonly corsOrigins: readonly string[];
  /** Folder of the web page; undefined or missing: every non-API path is 404. */
  readonly webDir: string | undefined;
  readonly maxBodyBytes?: number;
  /** `GET /metrics` (no token, like health): Prometheus text. Undefined: 404. */
  readonly metrics?: (() => Promise<{ contentType: string; body: string }>) | undefined;
  readonly onError: (error: Error) => void;
}

export interface ApiFront {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Every origin allowed to call the API from a browser. */
  readonly origins: readonly string[];
  /** The front's own origins (`http://127.0.0.1:<port>`, `http://localhost:<port>`): the addresses that are this API. */
  readonly ownOrigins: readonly string[];
  stop(): Promise<void>;
}

// As the deployed API's CORS rule (lib/constructs/upload-api.ts): no HEAD, which it routes nowhere.
const CORS_ALLOW_METHODS = 'GET,POST,PUT,PATCH,DELETE,OPTIONS';
const CORS_ALLOW_HEADERS = API_CORS_ALLOWED_HEADERS.join(',');

const TEXT_TYPES = [
  /^text\//,
  /^application\/(json|xml|javascript|x-www-form-urlencoded|graphql)\b/,
  /\+(json|xml)\b/,
];

/** API Gateway passes text bodies as they are and base64-encodes the rest. */
function isTextType(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType === '') return true;
  const type = contentType.toLowerCase();
  return TEXT_TYPES.some((re) => re.test(type));
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** `12/Mar/2020:19:03:58 +0000`, API Gateway's requestContext.time. */
function apigwTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

class PayloadTooLarge extends Error {}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new PayloadTooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) throw new PayloadTooLarge();
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Header names lower-cased, repeated headers joined by commas; cookies go to `cookies`. */
function eventHeaders(req: IncomingMessage): {
  headers: Record<string, string>;
  cookies: string[] | undefined;
} {
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values === undefined) continue;
    if (name === 'cookie') {
      cookies = values
        .flatMap((v) => v.split(';'))
        .map((c) => c.trim())
        .filter((c) => c !== '');
      continue;
    }
    headers[name] = values.join(',');
  }
  return { headers, cookies };
}

/** Query parameters, repeated ones joined by commas; undefined for an empty query. */
function queryParameters(rawQueryString: string): Record<string, string> | undefined {
  if (rawQueryString === '') return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(rawQueryString)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : `${prev},${v}`;
  }
  return out;
}

const LOCAL_ACCOUNT = '000000000000';

/**
 * What API Gateway's IAM authorizer tells the function of a signed caller
 * (`requestContext.authorizer.iam`). The local stack has one IAM principal, the holder of its key
 * pair: an IAM user named after the key.
 */
function iamAuthorizer(accessKeyId: string) {
  const userId = `AIDA${accessKeyId}`;
  return {
    iam: {
      accessKey: accessKeyId,
      accountId: LOCAL_ACCOUNT,
      callerId: userId,
      cognitoIdentity: null,
      principalOrgId: null,
      userArn: `arn:aws:iam::${LOCAL_ACCOUNT}:user/${accessKeyId}`,
      userId,
    },
  };
}

/**
 * Builds the payload-format-2.0 event for a request; `signedBy`, the access key of a request whose
 * signature was checked, fills the authorizer's part as API Gateway's IAM authorizer does.
 */
export function toHttpApiEvent(
  req: IncomingMessage,
  body: Buffer,
  info: { requestId: string; now: Date; signedBy?: string | undefined },
): APIGatewayProxyEventV2 {
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const rawQueryString = q < 0 ? '' : rawUrl.slice(q + 1);

  const { headers, cookies } = eventHeaders(req);
  const queryStringParameters = queryParameters(rawQueryString);
  const host = headers.host ?? LOOPBACK;
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies !== undefined && cookies.length > 0 ? { cookies } : {}),
    headers,
    ...(queryStringParameters !== undefined ? { queryStringParameters } : {}),
    requestContext: {
      accountId: LOCAL_ACCOUNT,
      apiId: 'local',
      domainName: host,
      domainPrefix: host.split('.')[0] ?? host,
      http: {
        method: req.method ?? 'GET',
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: (req.socket.remoteAddress ?? LOOPBACK).replace(/^::ffff:/, ''),
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: info.requestId,
      routeKey: '$default',
      stage: '$default',
      time: apigwTime(info.now),
      timeEpoch: info.now.getTime(),
      ...(info.signedBy === undefined ? {} : { authorizer: iamAuthorizer(info.signedBy) }),
    },
    ...eventBody(body, headers['content-type']),
  };
  return event;
}

/**
 * Text as a string, anything else as base64. Text that is not UTF-8 goes as base64 too: a string
 * would carry U+FFFD in its place (the handler refuses the bytes: functions/handlers/api-handler.ts).
 */
function eventBody(
  body: Buffer,
  contentType: string | undefined,
): Pick<APIGatewayProxyEventV2, 'body' | 'isBase64Encoded'> {
  if (body.length === 0) return { isBase64Encoded: false };
  return isTextType(contentType) && isUtf8(body)
    ? { isBase64Encoded: false, body: body.toString('utf8') }
    : { isBase64Encoded: true, body: body.toString('base64') };
}

interface HttpResult {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

interface StructuredResult {
  statusCode?: unknown;
  headers?: Record<string, unknown>;
  cookies?: unknown;
  body?: unknown;
  isBase64Encoded?: unknown;
}

/** Maps a function's response as API Gateway does for payload format 2.0. */
export function fromFunctionResult(result: unknown): HttpResult {
  if (result !== null && typeof result === 'object' && 'statusCode' in result) {
    return fromStructuredResult(result as StructuredResult);
  }
  // No statusCode: API Gateway assumes 200 and a JSON body.
  const text = typeof result === 'string' ? result : JSON.stringify(result ?? null);
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(text) };
}

function fromStructuredResult(r: StructuredResult): HttpResult {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) {
    if (v !== undefined && v !== null) headers[k.toLowerCase()] = String(v);
  }
  if (Array.isArray(r.cookies) && r.cookies.length > 0) headers['set-cookie'] = r.cookies.map(String);
  const bodyText =
    typeof r.body === 'string' ? r.body : r.body === undefined || r.body === null ? '' : String(r.body);
  const body = r.isBase64Encoded === true ? Buffer.from(bodyText, 'base64') : Buffer.from(bodyText, 'utf8');
  const status = Number(r.statusCode);
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    return jsonResult(500, { message: 'Internal Server Error' });
  }
  return { status, headers, body };
}

function jsonResult(status: number, value: unknown): HttpResult {
  return {
    status,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(value)),
  };
}

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
};

/**
 * The page holds the stack's token: no other site may frame it (clickjacking), nothing is sniffed,
 * and it runs its own scripts only (its worker, and hash-wasm's WebAssembly: docs/browser.md).
 * It reaches the API and storage at other origins (the local S3, presigned URLs): connect-src and
 * img-src stay open to http(s).
 */
const PAGE_SECURITY_HEADERS = {
  'content-security-policy': [
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob: http: https:",
    "connect-src 'self' http: https:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/**
 * The page file a request path names, as serveStatic finds it: decoded, its dot segments and
 * repeated slashes resolved (`/%63onfig.json` and `/x/../config.json` are `/config.json`).
 * Undefined when it is not valid percent-encoding.
 */
function pagePath(rawPath: string): string | undefined {
  try {
    return normalize(`/${decodeURIComponent(rawPath)}`);
  } catch {
    return undefined;
  }
}

async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  webDir: string | undefined,
): Promise<void> {
  const notFound = () => {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found\n');
  };
  if (webDir === undefined) return notFound();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res
      .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
      .end('Method Not Allowed\n');
    return;
  }
  const path = pagePath((req.url ?? '/').split('?')[0] ?? '/');
  if (path === undefined) return notFound();
  const root = resolve(webDir);
  let file = resolve(root, `.${path}`);
  if (file !== root && !file.startsWith(root + sep)) return notFound();
  try {
    let info = await stat(file);
    if (info.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file);
    }
    if (!info.isFile()) return notFound();
    res.writeHead(200, {
      'content-type': STATIC_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': info.size,
      'cache-control': 'no-cache',
      ...PAGE_SECURITY_HEADERS,
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  } catch {
    notFound();
  }
}

async function serveMetrics(
  req: IncomingMessage,
  res: ServerResponse,
  metrics: NonNullable<ApiFrontOptions['metrics']>,
): Promise<void> {
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res
      .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
      .end('Method Not Allowed\n');
    return;
  }
  const { contentType, body } = await metrics();
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(200, {
    'content-type': contentType,
    'content-length': String(bytes.length),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

/** CORS answer headers for an allowed origin; none for another (the browser then refuses to read). */
function corsHeaders(origin: string | undefined, allowed: ReadonlySet<string>): Record<string, string> {
  if (origin === undefined || !allowed.has(origin)) return {};
  return {
    'access-control-allow-origin': origin,
    'access-control-expose-headers': API_EXPOSED_HEADERS.join(', '),
    vary: 'origin',
  };
}

/** Health needs nothing; every other route the stack's bearer token (or a signature, checked apart). */
const openOrTokened = (req: IncomingMessage, rawPath: string, token: string): boolean =>
  (rawPath === '/v1/health' && (req.method === 'GET' || req.method === 'HEAD')) ||
  tokenMatches(req.headers.authorization, token);

const isSigV4 = (header: string | undefined): boolean => /^AWS4-HMAC-SHA256\s/.test(header ?? '');

const pageSignature = jsonResult(403, {
  message:
    "Forbidden: a request from a web page (an Origin header) may not be signed with the local stack's public key pair; send the bearer token",
});

/**
 * Who may call, before the body is read: the bearer token, or a SigV4 signature (checked once the
 * body is read) from a program, never from a page: the local key pair is public, any page could sign
 * with it (docs/local-gates.md).
 */
function admission(
  req: IncomingMessage,
  rawPath: string,
  options: Pick<ApiFrontOptions, 'iam' | 'token'>,
): { iam: ApiFrontOptions['iam'] } | { refusal: HttpResult; headers?: Record<string, string> } {
  const iam = isSigV4(req.headers.authorization) ? options.iam : undefined;
  if (iam && req.headers.origin !== undefined) return { refusal: pageSignature };
  if (!iam && !openOrTokened(req, rawPath, options.token))
    return { refusal: unauthorized, headers: { 'www-authenticate': 'Bearer' } };
  return { iam };
}

/** API Gateway's IAM authorizer: a request signed for `execute-api` with the stack's credentials, or a 403. */
async function refusedSignature(
  req: IncomingMessage,
  body: Buffer,
  iam: { readonly credentials: SigV4Credentials; readonly region: string },
): Promise<HttpResult | undefined> {
  // As API Gateway: a signature for another region (a wrong AWS_REGION) is refused.
  const result = await verifySigV4(
    { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, payloadHash: sha256Hex(body) },
    { service: 'execute-api', credentials: iam.credentials, region: iam.region },
  );
  if (result.ok) return undefined;
  return jsonResult(403, { message: `${result.code}: ${result.message}` });
}

const isApiPath = (rawPath: string): boolean => rawPath === '/v1' || rawPath.startsWith('/v1/');

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m?.[1]) return false;
  const given = Buffer.from(m[1]);
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

interface Refusal {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

/**
 * A request the front does not answer: one naming another host (DNS rebinding: a page at
 * `evil.example` resolved to 127.0.0.1 is "same-origin" with itself, and sends its own
 * Host), or a cross-origin read of `/config.json` (the page's own settings).
 */
export function refuseForeign(
  req: IncomingMessage,
  rawPath: string,
  ownHosts: ReadonlySet<string>,
): Refusal | undefined {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!ownHosts.has(host)) {
    return {
      status: 421,
      code: 'misdirected_request',
      message: `this server answers only as ${[...ownHosts].join(', ')}, not as "${req.headers.host ?? ''}"`,
    };
  }
  // By the file it serves, not by its spelling: `/%63onfig.json` is the same file.
  if (!isApiPath(rawPath) && pagePath(rawPath) === '/config.json') {
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    const ownOrigin = origin !== undefined && ownHosts.has(origin.replace(/^http:\/\//, ''));
    if (
      (origin !== undefined && !ownOrigin) ||
      (site !== undefined && site !== 'same-origin' && site !== 'none')
    ) {
      return {
        status: 403,
        code: 'forbidden',
        message: "config.json is served to the page's own origin only",
      };
    }
  }
  return undefined;
}

function send(res: ServerResponse, req: IncomingMessage, result: HttpResult, extra: Record<string, string>) {
  // HEAD: the length GET would send, as the function states it (docs/api.md, HEAD).
  const stated = req.method === 'HEAD' ? result.headers['content-length'] : undefined;
  const length = typeof stated === 'string' ? stated : String(result.body.length);
  const headers = { ...result.headers, ...extra, 'content-length': length };
  res.writeHead(result.status, headers);
  res.end(req.method === 'HEAD' ? undefined : result.body);
}

/** CORS preflight: answered by the front, never by the function, and needs no token. */
function answerPreflight(res: ServerResponse, cors: Record<string, string>, requestId: string) {
  const preflight: Record<string, string> =
    cors['access-control-allow-origin'] === undefined
      ? {}
      : {
          ...cors,
          'access-control-allow-methods': CORS_ALLOW_METHODS,
          'access-control-allow-headers': CORS_ALLOW_HEADERS,
          'access-control-max-age': '3600',
        };
  res.writeHead(204, { ...preflight, 'apigw-requestid': requestId }).end();
}

/** The body, or undefined once a 413 has been answered for a body over `limit`. */
async function readBodyOrRefuse(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
  extra: Record<string, string>,
): Promise<Buffer | undefined> {
  try {
    return await readBody(req, limit);
  } catch (err) {
    if (!(err instanceof PayloadTooLarge)) throw err;
    send(
      res,
      req,
      jsonResult(413, {
        error: {
          code: 'payload_too_large',
          message: `request bodies are limited to ${limit} bytes`,
          field: 'body',
        },
      }),
      { ...extra, connection: 'close' },
    );
    req.destroy();
    return undefined;
  }
}

/** Invokes the function with the request's event, as the integration does (503 past its timeout). */
async function invokeIntegration(
  options: ApiFrontOptions,
  req: IncomingMessage,
  event: APIGatewayProxyEventV2,
): Promise<HttpResult> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), INTEGRATION_TIMEOUT_MS);
  });
  try {
    const out = await Promise.race([options.fn.invoke(event), timedOut]);
    return out === 'timeout' ? jsonResult(503, { message: 'Service Unavailable' }) : fromFunctionResult(out);
  } catch (err) {
    options.onError(new Error(`${req.method} ${event.rawPath}: ${(err as Error).message}`, { cause: err }));
    return jsonResult(500, { message: 'Internal Server Error' });
  } finally {
    clearTimeout(timer);
  }
}

const unauthorized = jsonResult(401, {
  error: { code: 'unauthorized', message: 'missing or wrong bearer token (Authorization: Bearer <token>)' },
});

export async function startApiFront(options: ApiFrontOptions): Promise<ApiFront> {
  const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const allowed = new Set(options.corsOrigins);
  // Known once listening (the port may be 0 until then).
  let ownHosts: ReadonlySet<string> = new Set();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const now = new Date();
    const requestId = randomBytes(10).toString('base64');
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    const refusal = refuseForeign(req, rawPath, ownHosts);
    if (refusal !== undefined) {
      req.resume();
      const error = { code: refusal.code, message: refusal.message };
      send(res, req, jsonResult(refusal.status, { error }), { 'apigw-requestid': requestId });
      return;
    }
    if (rawPath === '/metrics' && options.metrics) return serveMetrics(req, res, options.metrics);
    if (!isApiPath(rawPath)) return serveStatic(req, res, options.webDir);
    return handleApi(req, res, { rawPath, requestId, now });
  }

  /** A request under /v1: CORS, the token, the body limit, then the function. */
  async function handleApi(
    req: IncomingMessage,
    res: ServerResponse,
    { rawPath, requestId, now }: { rawPath: string; requestId: string; now: Date },
  ): Promise<void> {
    const cors = corsHeaders(req.headers.origin, allowed);
    const extra = { ...cors, 'apigw-requestid': requestId };
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      answerPreflight(res, cors, requestId);
      return;
    }
    const admitted = admission(req, rawPath, options);
    if ('refusal' in admitted) {
      req.resume();
      send(res, req, admitted.refusal, { ...extra, ...admitted.headers });
      return;
    }
    const { iam } = admitted;
    const body = await readBodyOrRefuse(req, res, limit, extra);
    if (body === undefined) return;
    // The signature covers the body's hash: checked once the body is read, as API Gateway does.
    const refused = iam ? await refusedSignature(req, body, iam) : undefined;
    if (refused) {
      send(res, req, refused, extra);
      return;
    }
    const event = toHttpApiEvent(req, body, { requestId, now, signedBy: iam?.credentials.accessKeyId });
    send(res, req, await invokeIntegration(options, req, event), extra);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      options.onError(err instanceof Error ? err : new Error(String(err)));
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Internal Server Error' }));
    });
  });
  const port = await listen(server, options.port, options.role);
  ownHosts = loopbackHosts(port);
  const own = [`http://${LOOPBACK}:${port}`, `http://localhost:${port}`];
  for (const o of own) allowed.add(o);
  return {
    port,
    url: `http://${LOOPBACK}:${port}`,
    origins: [...allowed],
    ownOrigins: own,
    stop: () => closeServer(server),
  };
}
