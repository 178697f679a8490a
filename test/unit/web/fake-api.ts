/**
 * An in-memory Media Mirror API and S3, as one `fetch` function, for the client's unit
 * tests: the upload API's answers (a challenge with every claim, the proof that
 * deduplicates, single PUT, multipart with resume, parts, complete, status, abort) and a
 * store that, like s3rver, checks no checksum at the door; the "ingest" verifies the whole
 * object's SHA-256.
 *
 * Every request the client sends and every answer the fake gives (a test's interceptors'
 * included) is checked against the API's contract (contracts/api.ts): a mismatch is
 * recorded in `contractViolations` and thrown, so a fake that drifts from the API fails
 * the test that uses it.
 */
import { createHash } from 'node:crypto';
import {
  errorBodySchema,
  gatewayMessageSchema,
  type RouteContract,
  type RouteName,
  routeList,
} from '../../../contracts/api.ts';
import type { Challenge } from '../../../contracts/model.ts';
import { PathPolicy, PathRuleError } from '../../../contracts/paths.ts';
import { issueChallenge, proofDigest } from '../../../functions/core/possession.ts';
import type { uploadFile } from '../../../web/client/upload-file.ts';

export const MiB = 1024 * 1024;
const S3 = 'https://s3.test';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
  readonly signal?: AbortSignal;
}

interface FakeUpload {
  uploadId: string;
  path: string;
  sha256: string;
  size: number;
  contentType: string;
  status: 'pending' | 'committed' | 'rejected';
  createdAt: string;
  updatedAt: string;
  version?: number;
  reason?: string;
  multipart?: {
    partSize: number;
    partCount: number;
    /** What the store holds. */
    parts: Map<number, Uint8Array>;
    /** What clients recorded (PUT /v1/uploads/{id}/parts/{n}): what resumes and complete use. */
    recorded: Map<number, { size: number; sha256: string; etag: string }>;
    /** Completed at storage: no more parts (S3's NoSuchUpload), the ingest may still be verifying. */
    completed?: boolean;
  };
  body?: Uint8Array;
  /** GET polls left before the ingest finishes. */
  verifyingPolls?: number;
  /** The latest claim's challenge, and whether it was answered (one attempt each). */
  challenge?: Challenge;
  challengeSpent?: boolean;
  deduplicated?: boolean;
}

/**
 * What a test may do to a request before the fake answers: a Response, a thrown error, or
 * undefined (answer normally). `n` counts the requests so far with this method and URL.
 */
export type Interceptor = (
  request: RecordedRequest,
  n: number,
) => Promise<Response | undefined> | Response | undefined;

/** Requests and answers that broke the contract, across every fake: a test's afterEach asserts none. */
export const contractViolations: string[] = [];

const routeMatchers = routeList.map((route) => ({
  route,
  pattern: new RegExp(`^${route.path.replace(/\{\w+\}/g, '[^/]+')}$`),
}));

function routeOf(method: string, pathname: string): RouteContract | undefined {
  return routeMatchers.find((m) => m.route.method === method && m.pattern.test(pathname))?.route;
}

const FRONT_STATUSES = new Set([401, 403, 413, 421, 429, 502, 503, 504]);

function violation(message: string): never {
  contractViolations.push(message);
  throw new Error(`the fake API broke the contract: ${message}`);
}

/** Checks a request's body and the answer given to it against the route's contract. */
async function checkContract(request: RecordedRequest, response: Response): Promise<void> {
  const { pathname } = new URL(request.url);
  const what = `${request.method} ${pathname}`;
  const route = routeOf(request.method, pathname);
  if (route === undefined) return violation(`${what}: no such route`);
  if (route.body && !route.body.safeParse(request.body).success) {
    violation(`${what}: request ${JSON.stringify(request.body)} is not a ${route.operationId} body`);
  }
  const text = await response.clone().text();
  const answer = route.responses[response.status];
  // What the front answers before the function (token, throttling, outages): API Gateway's
  // `{message}`, or the local front's error body.
  if (answer === undefined && FRONT_STATUSES.has(response.status)) {
    const body = JSON.parse(text);
    if (gatewayMessageSchema.safeParse(body).success || errorBodySchema.safeParse(body).success) return;
  }
  if (answer === undefined)
    return violation(`${what}: ${route.operationId} never answers ${response.status}`);
  if (answer.body === undefined) return;
  const parsed = answer.body.safeParse(text === '' ? undefined : JSON.parse(text));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    violation(`${what} ${response.status}: ${problems} in ${text}`);
  }
}

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
/** S3's ETag of a part: the quoted MD5 of its bytes. */
export const etagOf = (bytes: Uint8Array) => `"${createHash('md5').update(bytes).digest('hex')}"`;
const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const apiError = (status: number, code: string, message: string, field?: string) =>
  json(status, { error: { code, message, ...(field ? { field } : {}) } });

export class FakeMirror {
  readonly requests: RecordedRequest[] = [];
  readonly blobs = new Map<string, Uint8Array>();
  readonly uploads = new Map<string, FakeUpload>();
  readonly versions = new Map<string, number>();
  interceptors: Interceptor[] = [];

  /**
   * The first PUT of part `partNumber` answers an ETag that is not the stored part's (and stores
   * nothing new), so the completion refuses the parts as recorded (`invalid_parts`).
   */
  staleEtagOnce(partNumber: number): void {
    let stale = false;
    this.interceptors.push((r) => {
      if (r.method === 'PUT' && r.url.includes(`partNumber=${partNumber}`) && !stale) {
        stale = true;
        return new Response(null, { status: 200, headers: { etag: '"stale"' } });
      }
      return undefined;
    });
  }
  /** Claim answers by Idempotency-Key, replayed as the API does. */
  readonly claimAnswers = new Map<string, { status: number; body: string }>();
  /** Requests in flight now, and the most at once, per kind. */
  inFlight = { parts: 0, maxParts: 0 };
  private ids = 0;

  constructor(
    readonly options: {
      threshold?: number;
      partSize?: number;
      token?: string;
      verifyingPolls?: number;
      /** Routes this API lacks (one deployed before them): 404 `no_route`, as its router answers. */
      withoutRoutes?: readonly RouteName[];
    } = {},
  ) {}

  /** The request goes to a route this API lacks: no contract of this API's to hold it to. */
  private lacks(request: RecordedRequest): boolean {
    const route = routeOf(request.method, new URL(request.url).pathname)?.operationId as
      | RouteName
      | undefined;
    return route !== undefined && (this.options.withoutRoutes ?? []).includes(route);
  }

  get threshold() {
    return this.options.threshold ?? 16 * MiB;
  }

  get partSize() {
    return this.options.partSize ?? 5 * MiB;
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const method = (init?.method ?? 'GET').toUpperCase();
    const headers: Record<string, string> = {};
    for (const [k, v] of new Headers(init?.headers).entries()) headers[k] = v;
    let body: unknown = init?.body;
    if (typeof body === 'string') body = JSON.parse(body);
    const request: RecordedRequest = {
      method,
      url,
      headers,
      body,
      ...(init?.signal ? { signal: init.signal } : {}),
    };
    this.requests.push(request);
    if (init?.signal?.aborted) throw init.signal.reason;
    const answer = await this.answer(request, init?.body as Blob);
    if (!url.startsWith(S3) && !this.lacks(request)) await checkContract(request, answer);
    return answer;
  };

  private async answer(request: RecordedRequest, blob: Blob): Promise<Response> {
    for (const intercept of this.interceptors) {
      const n = this.requests.filter((r) => r.method === request.method && r.url === request.url).length;
      const answer = await intercept(request, n);
      if (answer) return answer;
    }
    return request.url.startsWith(S3) ? this.s3(request, blob) : this.api(request);
  }

  /** Requests to the fake S3 with this method (default PUT). */
  storageRequests(method = 'PUT'): RecordedRequest[] {
    return this.requests.filter((r) => r.url.startsWith(S3) && r.method === method);
  }

  apiRequests(method?: string, pathPrefix = '/v1/'): RecordedRequest[] {
    return this.requests.filter(
      (r) =>
        !r.url.startsWith(S3) &&
        (method === undefined || r.method === method) &&
        new URL(r.url).pathname.startsWith(pathPrefix),
    );
  }

  /** A pending multipart upload as if another browser had started it. */
  seedMultipart(input: {
    path: string;
    bytes: Uint8Array;
    contentType?: string;
    parts: Record<number, Uint8Array>;
  }): string {
    const uploadId = `up-${++this.ids}`;
    const partCount = Math.max(1, Math.ceil(input.bytes.length / this.partSize));
    this.uploads.set(uploadId, {
      ...this.stamps(),
      uploadId,
      path: input.path,
      sha256: sha256Hex(input.bytes),
      size: input.bytes.length,
      contentType: input.contentType ?? 'application/octet-stream',
      status: 'pending',
      multipart: {
        partSize: this.partSize,
        partCount,
        parts: new Map(Object.entries(input.parts).map(([n, b]) => [Number(n), b])),
        recorded: new Map(
          Object.entries(input.parts).map(([n, b]) => [
            Number(n),
            { size: b.length, sha256: sha256Hex(b), etag: etagOf(b) },
          ]),
        ),
      },
    });
    return uploadId;
  }

  /** Routed by the contract's route table: the fake answers the routes the upload flow uses. */
  private async api(request: RecordedRequest): Promise<Response> {
    if (request.headers.authorization !== `Bearer ${this.options.token ?? 'secret'}`) {
      return apiError(401, 'unauthorized', 'missing or wrong bearer token');
    }
    const { pathname } = new URL(request.url);
    const segments = pathname.split('/').slice(1);
    const body = (request.body ?? {}) as Record<string, unknown>;
    const route = routeOf(request.method, pathname)?.operationId;
    if (this.lacks(request)) return apiError(404, 'no_route', `no route for ${request.method} ${pathname}`);
    if (route === 'checkPath') return this.checkPath(new URL(request.url).searchParams.get('path'));
    if (route === 'createUpload') return this.claimOnce(request.headers['idempotency-key'], body);
    // Every type and size through: the claim decides (it refuses application/x-forbidden).
    if (route === 'getLimits') return json(200, this.limits());
    const upload = this.uploads.get(decodeURIComponent(segments[2] ?? ''));
    const handlers: Record<string, ((u: FakeUpload) => Response) | undefined> = {
      getUpload: (u) => this.describe(u),
      abortUpload: (u) => this.abort(u),
      presignUploadParts: (u) => this.presignParts(u, body),
      recordUploadParts: (u) => this.recordParts(u, body),
      recordUploadPart: (u) => this.recordPart(u, Number(segments[4]), body),
      completeUpload: (u) => this.complete(u),
      proveUpload: (u) => this.prove(u, body),
    };
    const handler = route === undefined ? undefined : handlers[route];
    if (!handler) return apiError(404, 'no_route', `no route for ${request.method} ${pathname}`);
    if (!upload) return apiError(404, 'not_found', 'no such upload', 'uploadId');
    return handler(upload);
  }

  /** `GET /v1/paths`: the lexical rules of a mirror without targets (contracts/paths.ts); no file takes a folder here. */
  private checkPath(path: string | null): Response {
    try {
      return json(200, { path: new PathPolicy([]).admit(path), accepted: true });
    } catch (error) {
      if (!(error instanceof PathRuleError)) throw error;
      return apiError(400, error.code, error.message, error.field);
    }
  }

  private limits() {
    return {
      maxUploadBytes: 50 * 1024 ** 3,
      multipartThresholdBytes: this.threshold,
      partBytes: 8 * 1024 * 1024,
      minPartBytes: 5 * 1024 * 1024,
      maxPartBytes: 5 * 1024 ** 3,
      maxParts: 10_000,
      contentTypes: ['*/*'],
      presignTtlSeconds: 900,
      maxPathBytes: 1024,
      defaultPageSize: 100,
      maxPageSize: 1000,
      maxRequestBodyBytes: 1024 * 1024,
      maxPartsPerRequest: 1000,
    };
  }

  /** As the API: a claim's first answer is replayed for its Idempotency-Key, whatever became of the upload since. */
  private async claimOnce(key: string | undefined, body: Record<string, unknown>): Promise<Response> {
    const replay = key === undefined ? undefined : this.claimAnswers.get(key);
    if (replay) {
      return new Response(replay.body, {
        status: replay.status,
        headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
      });
    }
    const answer = this.create(body);
    if (key !== undefined && answer.ok) {
      this.claimAnswers.set(key, { status: answer.status, body: await answer.clone().text() });
    }
    return answer;
  }

  private abort(upload: FakeUpload): Response {
    if (upload.status === 'pending') {
      upload.status = 'rejected';
      upload.reason = 'aborted';
      upload.multipart?.parts.clear();
    }
    const { uploadId, status, reason } = upload;
    return json(200, { uploadId, status, ...(reason === undefined ? {} : { reason }) });
  }

  private create(body: Record<string, unknown>): Response {
    const { path, size, sha256, contentType } = body as {
      path: string;
      size: number;
      sha256: string;
      contentType: string;
    };
    if (contentType === 'application/x-forbidden') {
      const message = `contentType ${contentType} is not accepted: it must be one of image/*`;
      return apiError(415, 'unsupported_content_type', message, 'contentType');
    }
    // Known content or not, the same answer: a challenge with every claim.
    const challenge = issueChallenge(size, new Date(Date.now() + 900_000));
    if (size <= this.threshold) {
      const uploadId = `up-${++this.ids}`;
      this.uploads.set(uploadId, {
        ...this.stamps(),
        uploadId,
        path,
        sha256,
        size,
        contentType,
        status: 'pending',
        challenge,
      });
      return json(201, {
        status: 'pending',
        uploadId,
        path,
        upload: {
          method: 'PUT',
          url: `${S3}/blobs/${sha256}?upload=${uploadId}&X-Amz-Signature=x`,
          headers: {
            'content-type': contentType,
            'x-amz-checksum-sha256': Buffer.from(sha256, 'hex').toString('base64'),
          },
          automaticHeaders: { 'content-length': String(size), host: new URL(S3).host },
          expiresAt: new Date(Date.now() + 900_000).toISOString(),
        },
        challenge,
      });
    }
    for (const u of this.uploads.values()) {
      if (
        u.status === 'pending' &&
        u.multipart &&
        u.path === path &&
        u.sha256 === sha256 &&
        u.size === size
      ) {
        u.challenge = challenge;
        u.challengeSpent = false;
        return json(201, {
          status: 'pending',
          uploadId: u.uploadId,
          path,
          resumed: true,
          multipart: this.view(u),
          challenge,
        });
      }
    }
    const uploadId = `up-${++this.ids}`;
    const partCount = Math.ceil(size / this.partSize);
    const upload: FakeUpload = {
      ...this.stamps(),
      uploadId,
      path,
      sha256,
      size,
      contentType,
      status: 'pending',
      multipart: { partSize: this.partSize, partCount, parts: new Map(), recorded: new Map() },
      challenge,
    };
    this.uploads.set(uploadId, upload);
    return json(201, {
      status: 'pending',
      uploadId,
      path,
      resumed: false,
      multipart: this.view(upload),
      challenge,
    });
  }

  /** `POST /v1/uploads/{id}/proof`: commits without bytes only for a right digest over held content. */
  private prove(u: FakeUpload, body: Record<string, unknown>): Response {
    if (u.status !== 'pending') return apiError(409, 'upload_finished', `upload is ${u.status}`, 'uploadId');
    const refused = () => apiError(422, 'proof_not_accepted', 'upload the bytes', 'digest');
    const challenge = u.challenge;
    if (!challenge || u.challengeSpent || Date.parse(challenge.expiresAt) <= Date.now()) return refused();
    u.challengeSpent = true;
    const held = this.blobs.get(u.sha256);
    if (!held || held.length !== u.size) return refused();
    const digest = proofDigest(
      challenge.nonce,
      challenge.ranges.map((r) => held.subarray(r.offset, r.offset + r.length)),
    );
    if (digest !== body.digest) return refused();
    u.status = 'committed';
    u.deduplicated = true;
    u.version = this.commit(u.path);
    return json(200, {
      status: 'committed',
      uploadId: u.uploadId,
      path: u.path,
      version: u.version,
      deduplicated: true,
    });
  }

  private stamps() {
    const now = new Date().toISOString();
    return { createdAt: now, updatedAt: now };
  }

  private view(u: FakeUpload) {
    const mp = u.multipart;
    if (!mp) return undefined;
    return {
      partSize: mp.partSize,
      partCount: mp.partCount,
      uploadedParts: [...mp.recorded].map(([partNumber, r]) => ({ partNumber, size: r.size, etag: r.etag })),
    };
  }

  private describe(u: FakeUpload): Response {
    if (u.status === 'pending' && u.verifyingPolls !== undefined) {
      if (u.verifyingPolls-- <= 0) this.ingest(u);
    }
    const { multipart: _m, body: _b, verifyingPolls: _v, challenge: _c, challengeSpent: _s, ...rest } = u;
    return json(200, {
      ...rest,
      ...(u.multipart && u.status === 'pending' ? { multipart: this.view(u) } : {}),
    });
  }

  private presignParts(u: FakeUpload, body: Record<string, unknown>): Response {
    const mp = u.multipart;
    if (!mp) return apiError(400, 'not_multipart', 'not multipart', 'uploadId');
    if (u.status !== 'pending') return apiError(409, 'upload_finished', `upload is ${u.status}`, 'uploadId');
    const { parts } = body as { parts: { partNumber: number; size: number; sha256: string }[] };
    const signed = [];
    for (const [i, { partNumber, size, sha256 }] of parts.entries()) {
      const expected = partNumber < mp.partCount ? mp.partSize : u.size - mp.partSize * (mp.partCount - 1);
      if (size !== expected)
        return apiError(400, 'invalid', `part ${partNumber} must be ${expected} bytes`, `parts.${i}.size`);
      signed.push({
        partNumber,
        url: `${S3}/blobs/${u.sha256}?uploadId=${u.uploadId}&partNumber=${partNumber}&sha=${sha256}`,
        headers: { 'x-amz-checksum-sha256': Buffer.from(sha256, 'hex').toString('base64') },
        automaticHeaders: { 'content-length': String(size), host: new URL(S3).host },
        expiresAt: new Date(Date.now() + 900_000).toISOString(),
      });
    }
    return json(200, { parts: signed });
  }

  private recordParts(u: FakeUpload, body: Record<string, unknown>): Response {
    const { parts } = body as { parts: { partNumber: number; size: number; sha256: string; etag: string }[] };
    let answer: Response | undefined;
    for (const { partNumber, ...part } of parts) {
      answer = this.recordPart(u, partNumber, part);
      if (answer.status !== 200) return answer;
    }
    return answer ?? json(200, this.view(u));
  }

  private recordPart(u: FakeUpload, partNumber: number, body: Record<string, unknown>): Response {
    const mp = u.multipart;
    if (!mp) return apiError(400, 'not_multipart', 'not multipart', 'uploadId');
    if (u.status !== 'pending') return apiError(409, 'upload_finished', `upload is ${u.status}`, 'uploadId');
    const { size, sha256, etag } = body as { size: number; sha256: string; etag: string };
    if (typeof etag !== 'string' || etag === '') return apiError(400, 'invalid', 'etag is required', 'etag');
    mp.recorded.set(partNumber, { size, sha256, etag });
    return json(200, this.view(u));
  }

  private complete(u: FakeUpload): Response {
    const mp = u.multipart;
    if (!mp) return apiError(400, 'not_multipart', 'not multipart', 'uploadId');
    if (u.status !== 'pending') return apiError(409, 'upload_finished', `upload is ${u.status}`, 'uploadId');
    const missing: number[] = [];
    for (let n = 1; n <= mp.partCount; n++) {
      const expected = n < mp.partCount ? mp.partSize : u.size - mp.partSize * (mp.partCount - 1);
      if (mp.recorded.get(n)?.size !== expected) missing.push(n);
    }
    if (missing.length > 0) {
      return apiError(
        400,
        'parts_missing',
        `parts missing or of the wrong size: ${missing.join(', ')}`,
        'parts',
      );
    }
    for (const [n, rec] of mp.recorded) {
      const held = mp.parts.get(n);
      if (!held || etagOf(held) !== rec.etag) {
        return apiError(400, 'invalid_parts', `storage refused the parts as reported: part ${n}`, 'parts');
      }
    }
    const whole = new Uint8Array(u.size);
    for (let n = 1; n <= mp.partCount; n++)
      whole.set(mp.parts.get(n) ?? new Uint8Array(), (n - 1) * mp.partSize);
    u.body = whole;
    mp.completed = true;
    u.verifyingPolls = this.options.verifyingPolls ?? 0;
    return json(202, { status: 'verifying', uploadId: u.uploadId });
  }

  /** The ingest: hash what is stored; commit or reject. */
  private ingest(u: FakeUpload): void {
    delete u.verifyingPolls;
    const body = u.body ?? new Uint8Array();
    if (body.length !== u.size || sha256Hex(body) !== u.sha256) {
      u.status = 'rejected';
      u.reason = `sha256 mismatch: stored bytes hash to ${sha256Hex(body)}`;
      return;
    }
    this.blobs.set(u.sha256, body);
    u.status = 'committed';
    u.version = this.commit(u.path);
  }

  private commit(path: string): number {
    const version = (this.versions.get(path) ?? 0) + 1;
    this.versions.set(path, version);
    return version;
  }

  private async s3(request: RecordedRequest, blob: Blob): Promise<Response> {
    const url = new URL(request.url);
    const bytes = new Uint8Array(await blob.arrayBuffer());
    if (request.signal?.aborted) throw request.signal.reason;
    const partNumber = url.searchParams.get('partNumber');
    if (partNumber !== null) {
      const u = this.uploads.get(url.searchParams.get('uploadId') ?? '');
      if (!u?.multipart || u.status !== 'pending' || u.multipart.completed) {
        return new Response('<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>', {
          status: 404,
        });
      }
      u.multipart.parts.set(Number(partNumber), bytes);
      return new Response(null, { status: 200, headers: { etag: etagOf(bytes) } });
    }
    const u = this.uploads.get(url.searchParams.get('upload') ?? '');
    if (!u) return new Response('<Error><Code>AccessDenied</Code></Error>', { status: 403 });
    u.body = bytes;
    u.verifyingPolls = this.options.verifyingPolls ?? 0;
    return new Response(null, { status: 200 });
  }
}

/** `uploadFile`'s options against `mirror`: fast backoff and polls, hashing on the calling thread. */
export function uploadOptions(
  mirror: FakeMirror,
  extra: Partial<Parameters<typeof uploadFile>[1]> = {},
): Parameters<typeof uploadFile>[1] {
  return {
    api: 'https://api.test/',
    token: 'secret',
    path: 'media/file.bin',
    fetch: mirror.fetch,
    workerUrl: null,
    backoff: { baseMs: 1, maxMs: 5, random: () => 0.5 },
    pollIntervalMs: 1,
    ...extra,
  };
}

export const blobOf = (bytes: Uint8Array<ArrayBuffer>, type = 'application/octet-stream') =>
  new Blob([bytes], { type });

/** The claims (`POST /v1/uploads`) the fake received. */
export const claimRequests = (mirror: FakeMirror) =>
  mirror.requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname === '/v1/uploads');

/** Deterministic pseudo-random bytes (xorshift), so tests need no fixtures. */
export function bytesOf(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
    if (i + 1 < size) out[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < size) out[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < size) out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

export const sha256Of = sha256Hex;
