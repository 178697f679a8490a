/**
 * The one client of the Media Mirror HTTP API, for the page, the browser client and the
 * CLI (it runs in Node too): a typed method per route, one place for the bearer token,
 * the Idempotency-Key, retries and errors. Every answer is checked against the API's
 * contract, so a mismatch is one clear `bad_answer` error rather than an `undefined`
 * further down. Non-2xx answers become an `ApiError` with the API's code and field.
 */

import type { z } from 'zod';
import {
  type ChangesPage,
  type CreateUploadResponse,
  type DeleteResult,
  errorBodySchema,
  type FileList,
  type FileStatus,
  gatewayMessageSchema,
  type Health,
  type Limits,
  type MultipartView,
  type PartReport,
  type PartRequest,
  type PathCheck,
  type PresignedPart,
  type RestoreResult,
  type RouteName,
  routes,
  type TargetList,
  type Upload,
  type UploadDeduplicated,
  type UploadRequest,
  type VersionList,
} from '../../contracts/api.ts';
import { ApiError, abortReason, transientError } from './errors.ts';
import { type BackoffOptions, isRetryableStatus, retryAfterMs } from './plan.ts';
import { requestSignal } from './request-signal.ts';
import { withRetries } from './retry.ts';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** A request as it is about to be sent, for a signer to authorize. */
export interface SignableRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | undefined;
}

/** Headers that authorize `request` (an API behind IAM: SigV4's `authorization`, `x-amz-date`, ...). */
export interface RequestSigner {
  (request: SignableRequest): Promise<Record<string, string>>;
  /**
   * The `Date` header of each answer to a signed request. True when it shows this host's clock
   * so far off that the signer now signs with the API's time instead: a 403 then was the clock's
   * (API Gateway refuses a signature dated 5 minutes off), and one resend is worth it.
   */
  readonly observeDate?: ((date: string | null) => boolean) | undefined;
}

export interface MirrorApiOptions {
  /** Base URL, e.g. `http://127.0.0.1:8787` or `https://x.execute-api.eu-west-1.amazonaws.com/prod`. */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <token>` (the local stack, a JWT authorizer). Not with `sign`. */
  readonly token?: string | undefined;
  /** Authorizes each request (each retry afresh) instead of a token: an API behind IAM. Not with `token`. */
  readonly sign?: RequestSigner | undefined;
  /** @default globalThis.fetch */
  readonly fetch?: FetchLike | undefined;
  /** Per-request time limit. @default none */
  readonly timeoutMs?: number | undefined;
  /** Retries of a request after a network error, 408, 429 or 5xx. @default 4 */
  readonly retries?: number | undefined;
  /** Backoff between retries. @default { baseMs: 500, maxMs: 15000 } */
  readonly backoff?: BackoffOptions | undefined;
  /** Network errors are retried until this long after the first, however many `retries` that takes. @default 0 */
  readonly retryWindowMs?: number | undefined;
}

export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
  /** Retry transient failures (the client's `retries`). @default true */
  readonly retry?: boolean | undefined;
}

/** A random key; `randomUUID` exists only in secure contexts, `getRandomValues` everywhere. */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

type Responses<R extends RouteName> = (typeof routes)[R]['responses'];
/** The bodies a route answers with a 2xx status. */
export type RouteAnswer<R extends RouteName> = {
  [S in keyof Responses<R>]: S extends 200 | 201 | 202
    ? Responses<R>[S] extends { body: infer B extends z.ZodType }
      ? z.infer<B>
      : never
    : never;
}[keyof Responses<R>];

interface Request {
  readonly params?: Record<string, string>;
  readonly query?: Record<string, string | number | undefined>;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** The whole file path is one encoded segment (`a/b.jpg` → `a%2Fb.jpg`), like an upload id. */
function routePath(template: string, params: Record<string, string> = {}): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name] ?? ''));
}

/**
 * A query string percent-encoded as SigV4 canonicalizes it (`%20` for a space, never the form
 * encoding's `+`, which AWS reads as a plus): what is sent is what a signer signs.
 */
function queryString(query: Record<string, string | number | undefined> = {}): string {
  const pairs = Object.entries(query)
    .filter((pair): pair is [string, string | number] => pair[1] !== undefined)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  return pairs.length === 0 ? '' : `?${pairs.join('&')}`;
}

type WithKey = CallOptions & { idempotencyKey?: string | undefined };
const keyHeader = (options: WithKey) => ({
  'idempotency-key': options.idempotencyKey ?? newIdempotencyKey(),
});

export class MirrorApi {
  readonly baseUrl: string;
  readonly #authorize: RequestSigner;
  /** Requests carry a SigV4 signature (`sign`), not a bearer token. */
  readonly #signs: boolean;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number | undefined;
  readonly #retries: number;
  readonly #backoff: BackoffOptions;
  readonly #retryWindowMs: number | undefined;

  constructor(options: MirrorApiOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    const { token, sign } = options;
    if ((token === undefined) === (sign === undefined)) {
      throw new TypeError('MirrorApi needs either `token` or `sign`, not both');
    }
    this.#authorize = sign ?? (async () => ({ authorization: `Bearer ${token}` }));
    this.#signs = sign !== undefined;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = options.timeoutMs;
    this.#retries = Math.max(0, options.retries ?? 4);
    this.#backoff = options.backoff ?? {};
    this.#retryWindowMs = options.retryWindowMs;
  }

  /**
   * `POST /v1/uploads`: 200 committed (the path holds this content already) or 201 pending
   * with a presigned PUT or a part plan. Every retry carries the same Idempotency-Key: one
   * upload, one version.
   */
  createUpload(request: UploadRequest, options: WithKey = {}): Promise<CreateUploadResponse> {
    const body = { ...request, sha256: request.sha256.toLowerCase() };
    if (body.ifVersion === undefined) delete body.ifVersion;
    return this.#call('createUpload', { body, headers: keyHeader(options) }, options);
  }

  /**
   * `GET /v1/paths?path=`: 200 when a claim of `path` would not be refused for the path now; a
   * refusal is the claim's own (an ApiError: 400, field `path`). Nothing is written.
   */
  checkPath(path: string, options: CallOptions = {}): Promise<PathCheck> {
    return this.#call('checkPath', { query: { path } }, options);
  }

  /**
   * `POST /v1/uploads/{id}/proof`: the digest answering the claim's challenge. 200 commits
   * (deduplicated); `proof_not_accepted` (an ApiError) means: send the bytes.
   */
  proveUpload(uploadId: string, digest: string, options: CallOptions = {}): Promise<UploadDeduplicated> {
    return this.#call('proveUpload', { params: { id: uploadId }, body: { digest } }, options);
  }

  /** `GET /v1/uploads/{id}`. */
  getUpload(uploadId: string, options: CallOptions = {}): Promise<Upload> {
    return this.#call('getUpload', { params: { id: uploadId } }, options);
  }

  /**
   * `POST /v1/uploads/{id}/parts`: presigned PUTs for many parts in one call (at most
   * `apiLimits.maxPartsPerRequest`), each with its SHA-256 signed in, in the order asked.
   */
  async presignParts(
    uploadId: string,
    parts: readonly PartRequest[],
    options: CallOptions = {},
  ): Promise<PresignedPart[]> {
    const body = { parts: [...parts] };
    return (await this.#call('presignUploadParts', { params: { id: uploadId }, body }, options)).parts;
  }

  /** `PUT /v1/uploads/{id}/parts`: records many stored parts in one call (what complete assembles, what a resume skips). */
  recordParts(
    uploadId: string,
    parts: readonly (PartReport & { partNumber: number })[],
    options: CallOptions = {},
  ): Promise<MultipartView> {
    return this.#call(
      'recordUploadParts',
      { params: { id: uploadId }, body: { parts: [...parts] } },
      options,
    );
  }

  /** `PUT /v1/uploads/{id}/parts/{n}`: records a stored part (what complete assembles, what a resume skips). */
  recordPart(
    uploadId: string,
    partNumber: number,
    part: PartReport,
    options: CallOptions = {},
  ): Promise<MultipartView> {
    const params = { id: uploadId, partNumber: String(partNumber) };
    return this.#call('recordUploadPart', { params, body: part }, options);
  }

  /** `POST /v1/uploads/{id}/complete`: 202, the ingest verifies the whole object next. */
  completeUpload(uploadId: string, options: CallOptions = {}): Promise<RouteAnswer<'completeUpload'>> {
    return this.#call('completeUpload', { params: { id: uploadId }, body: {} }, options);
  }

  /** `DELETE /v1/uploads/{id}`: abandons a pending upload (and its S3 multipart upload). */
  abortUpload(uploadId: string, options: CallOptions = {}): Promise<RouteAnswer<'abortUpload'>> {
    return this.#call('abortUpload', { params: { id: uploadId } }, options);
  }

  /**
   * `GET /v1/files`: a page of live files under `prefix` (empty: every file; otherwise it names
   * its top folder, e.g. `photos/`); pass `cursor` back while the answer has one.
   */
  listFiles(
    query: { prefix?: string; cursor?: string; limit?: number } = {},
    options: CallOptions = {},
  ): Promise<FileList> {
    return this.#call('listFiles', { query }, options);
  }

  /** `GET /v1/files/{path}`: the head and each target's copy. */
  getFile(path: string, options: CallOptions = {}): Promise<FileStatus> {
    return this.#call('getFile', { params: { path } }, options);
  }

  /** `GET /v1/files/{path}/versions`, newest first; `nextBefore` pages on. */
  listVersions(
    path: string,
    query: { limit?: number; before?: number } = {},
    options: CallOptions = {},
  ): Promise<VersionList> {
    return this.#call('listVersions', { params: { path }, query }, options);
  }

  /** `DELETE /v1/files/{path}`: commits a tombstone (only if the head is `ifVersion`, when given). */
  deleteFile(path: string, query: { ifVersion?: number } = {}, options: WithKey = {}): Promise<DeleteResult> {
    return this.#call('deleteFile', { params: { path }, query, headers: keyHeader(options) }, options);
  }

  /**
   * `POST /v1/files/{path}/versions`: commits version `from`'s content as the newest version
   * (only if the head is `ifVersion`, when given); no bytes are sent.
   */
  restoreVersion(
    path: string,
    from: number,
    request: { ifVersion?: number } = {},
    options: WithKey = {},
  ): Promise<RestoreResult> {
    const body = { from, ...(request.ifVersion === undefined ? {} : { ifVersion: request.ifVersion }) };
    return this.#call('restoreVersion', { params: { path }, body, headers: keyHeader(options) }, options);
  }

  /** `GET /v1/changes`: the change feed after `cursor` (from the start without one). */
  listChanges(
    query: { cursor?: string; limit?: number } = {},
    options: CallOptions = {},
  ): Promise<ChangesPage> {
    return this.#call('listChanges', { query }, options);
  }

  /** `GET /v1/targets`, with each target's lag measured from the ledger. */
  listTargets(options: CallOptions = {}): Promise<TargetList> {
    return this.#call('listTargets', {}, options);
  }

  /** `GET /v1/limits`: sizes, part plan, content types and URL lifetime the deployment enforces. */
  limits(options: CallOptions = {}): Promise<Limits> {
    return this.#call('getLimits', {}, options);
  }

  /** `GET /v1/health`. */
  health(options: CallOptions = {}): Promise<Health> {
    return this.#call('getHealth', {}, options);
  }

  /**
   * `GET /v1/files/{path}/content`: where the bytes are (the 302's Location), not the bytes.
   * Only where redirects can be read (Node; a browser's fetch follows them).
   */
  async contentUrl(
    path: string,
    query: { target?: string; version?: number } = {},
    options: CallOptions = {},
  ): Promise<string> {
    const route = `${routePath(routes.getContent.path, { path })}${queryString(query)}`;
    const answer = await this.#send('GET', route, options.signal, undefined, {}, 'manual');
    const location = answer.status === 302 ? answer.headers.get('location') : null;
    if (location === null) {
      throw new ApiError(
        `GET ${routes.getContent.path}: expected a 302 with a Location, got ${answer.status}`,
        'bad_answer',
        answer.status,
      );
    }
    return location;
  }

  /**
   * `GET /metrics` (the local stack's Prometheus text, no token); undefined when the API has
   * none (API Gateway on AWS) or it cannot be read. Never throws.
   */
  async metricsText(): Promise<string | undefined> {
    try {
      const response = await this.#fetch(`${this.baseUrl}/metrics`, {
        method: 'GET',
        headers: { accept: 'text/plain' },
        signal: AbortSignal.timeout(Math.min(this.#timeoutMs ?? 5_000, 5_000)),
      });
      const text = await response.text();
      return response.ok && /^# (HELP|TYPE) /m.test(text) ? text : undefined;
    } catch {
      return undefined;
    }
  }

  #call<R extends RouteName>(name: R, request: Request, options: CallOptions): Promise<RouteAnswer<R>> {
    const contract = routes[name];
    const route = `${routePath(contract.path, request.params)}${queryString(request.query)}`;
    const once = async () => {
      const answer = await this.#send(
        contract.method,
        route,
        options.signal,
        request.body,
        request.headers ?? {},
      );
      const responses = contract.responses as Readonly<Record<number, { body?: z.ZodType }>>;
      return parseAnswer(responses[answer.status]?.body, `${contract.method} ${contract.path}`, answer);
    };
    if (options.retry === false) return once() as Promise<RouteAnswer<R>>;
    const retry = {
      retries: this.#retries,
      backoff: this.#backoff,
      retryWindowMs: this.#retryWindowMs,
      signal: options.signal,
    };
    return withRetries(once, retry) as Promise<RouteAnswer<R>>;
  }

  async #send(
    method: string,
    route: string,
    signal: AbortSignal | undefined,
    body: unknown,
    extraHeaders: Record<string, string>,
    redirect: RequestRedirect = 'follow',
  ): Promise<{ status: number; text: string; headers: Headers }> {
    const what = `${method} ${route.split('?')[0]}`;
    const headers: Record<string, string> = { ...extraHeaders, accept: 'application/json' };
    const text = body === undefined ? undefined : JSON.stringify(body);
    if (text !== undefined) headers['content-type'] = 'application/json';
    const url = `${this.baseUrl}${route}`;
    const unsigned = { ...headers };
    for (let resent = false; ; resent = true) {
      const sent = await this.#sendOnce(method, url, what, signal, text, unsigned, redirect);
      const corrected = this.#authorize.observeDate?.(sent.response.headers.get('date')) ?? false;
      if (sent.response.status === 403 && corrected && !resent) continue;
      return this.#answer(what, sent.response, sent.answer, redirect);
    }
  }

  async #sendOnce(
    method: string,
    url: string,
    what: string,
    signal: AbortSignal | undefined,
    text: string | undefined,
    unsigned: Record<string, string>,
    redirect: RequestRedirect,
  ): Promise<{ response: Response; answer: string }> {
    const headers = { ...unsigned };
    Object.assign(headers, await this.#authorize({ method, url, headers: { ...headers }, body: text }));
    const request = requestSignal(signal, this.#timeoutMs);
    // A signed request is never followed elsewhere: a redirect would carry its session token and
    // date (fetch drops only `authorization`) to another host. The API redirects nowhere but the
    // content link, which is read by hand.
    const mode: RequestRedirect = this.#signs ? 'manual' : redirect;
    const init: RequestInit = { method, headers, signal: request.signal, redirect: mode };
    if (text !== undefined) init.body = text;
    let response: Response;
    let answer: string;
    try {
      try {
        response = await this.#fetch(url, init);
      } catch (error) {
        if (signal?.aborted) throw abortReason(signal);
        const local = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(this.baseUrl);
        const hint = local ? '; is the local stack running (npm start)?' : '';
        const message = `cannot reach the API at ${this.baseUrl} (${what}): ${describeFetchError(error)}${hint}`;
        throw transientError(message, 0, undefined, { cause: error });
      }
      answer = await response.text().catch(() => '');
    } finally {
      request.release();
    }
    return { response, answer };
  }

  #answer(
    what: string,
    response: Response,
    answer: string,
    redirect: RequestRedirect,
  ): { status: number; text: string; headers: Headers } {
    if (!response.ok && !(redirect === 'manual' && response.status === 302)) {
      throw isRedirect(response.status) ? notFollowed(what, response) : toApiError(what, response, answer);
    }
    return { status: response.status, text: answer, headers: response.headers };
  }
}

const isRedirect = (status: number) => status >= 300 && status < 400;

function notFollowed(what: string, response: Response): ApiError {
  const to = response.headers.get('location') ?? 'nowhere';
  return new ApiError(
    `${what}: the API answered ${response.status} to ${to}; not followed`,
    'bad_answer',
    response.status,
  );
}

/** An answer checked against the body the route table gives its status. */
function parseAnswer(
  schema: z.ZodType | undefined,
  what: string,
  answer: { status: number; text: string },
): unknown {
  let json: unknown;
  try {
    json = answer.text === '' ? undefined : JSON.parse(answer.text);
  } catch (error) {
    const message = `${what}: response ${answer.status} is not JSON: ${snippet(answer.text)}`;
    throw new ApiError(message, 'bad_answer', answer.status, undefined, { cause: error });
  }
  if (schema === undefined) {
    throw new ApiError(`${what}: unexpected status ${answer.status}`, 'bad_answer', answer.status);
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
  throw new ApiError(
    `${what}: unexpected response ${answer.status}: ${problems.join('; ')}`,
    'bad_answer',
    answer.status,
  );
}

/**
 * A non-2xx answer as an ApiError, from `{error:{code,message,field?}}` when the body has it.
 * Throttling, 5xx and a claim whose first request still runs are transient.
 */
export function toApiError(
  what: string,
  response: { status: number; statusText: string; headers: Headers },
  text: string,
): ApiError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = errorBodySchema.safeParse(json);
  const error = parsed.success ? parsed.data.error : undefined;
  // API Gateway's own refusals (authorizer, throttling) carry only a message.
  const gateway = gatewayMessageSchema.safeParse(json);
  const status = response.status;
  const message =
    error?.message ??
    (gateway.success ? gateway.data.message : undefined) ??
    (text.trim() === '' ? response.statusText || 'no details' : snippet(text));
  if (isRetryableStatus(status) || error?.code === 'idempotency_in_progress') {
    const retryAfter = retryAfterMs(response.headers.get('retry-after'), Date.now());
    return new ApiError(
      `${what} answered ${status}: ${message}`,
      error?.code ?? 'unavailable',
      status,
      error?.field,
      {
        cause: json ?? text,
        transient: true,
        retryAfterMs: retryAfter,
      },
    );
  }
  return new ApiError(message, error?.code ?? `http_${status}`, status, error?.field, {
    cause: json ?? text,
  });
}

function snippet(text: string, max = 200): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}

function describeFetchError(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    // undici puts the socket error (ECONNREFUSED, ENOTFOUND...) in `cause`.
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (cause && typeof cause.code === 'string') return cause.code;
    if (cause && typeof cause.message === 'string') return cause.message;
    return err.message;
  }
  return String(err);
}
