/**
 * A small typed client for the Media Mirror HTTP API. Every response is checked
 * against the documented shape, so a mismatch is one clear error rather than
 * an `undefined` further down.
 */
import { z } from 'zod';
import { ApiError, ApiResponseError, ApiUnreachableError } from './errors.ts';

const uploadStatus = z.enum(['pending', 'committed', 'rejected', 'expired']);
export type UploadStatus = z.infer<typeof uploadStatus>;

const version = z.number().int().nonnegative();

export const createUploadCommittedSchema = z.object({
  status: z.literal('committed'),
  uploadId: z.string().min(1),
  path: z.string(),
  version,
  deduplicated: z.boolean().default(true),
});

/** A claim's proof-of-possession challenge (docs/api.md): answered with `proveUpload`. */
export const challengeSchema = z.object({
  nonce: z.string().min(1),
  ranges: z.array(
    z.object({ offset: z.number().int().nonnegative(), length: z.number().int().nonnegative() }),
  ),
  expiresAt: z.string().optional(),
});

export const createUploadPendingSchema = z.object({
  status: z.literal('pending'),
  uploadId: z.string().min(1),
  path: z.string(),
  upload: z.object({
    method: z.literal('PUT'),
    url: z.url(),
    headers: z.record(z.string(), z.string()),
    expiresAt: z.string().optional(),
  }),
  challenge: challengeSchema.optional(),
});

/** Above the API's multipart threshold: a part plan instead of one presigned PUT. */
export const createUploadMultipartSchema = z.object({
  status: z.literal('pending'),
  uploadId: z.string().min(1),
  path: z.string(),
  resumed: z.boolean().default(false),
  multipart: z.object({
    partSize: z.number().int().positive(),
    partCount: z.number().int().positive(),
    uploadedParts: z.array(
      z.object({ partNumber: z.number().int(), size: z.number().int(), etag: z.string() }),
    ),
  }),
  challenge: challengeSchema.optional(),
});

export const createUploadResponseSchema = z.union([
  createUploadCommittedSchema,
  createUploadPendingSchema,
  createUploadMultipartSchema,
]);
export type CreateUploadResponse = z.infer<typeof createUploadResponseSchema>;
export type CreateUploadPending = z.infer<typeof createUploadPendingSchema>;

export interface CreateUploadRequest {
  path: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
  contentType: string;
  /** Commit only if the path's head is this version (optimistic concurrency). */
  ifVersion?: number | undefined;
  /** Sent as the Idempotency-Key header: a retry with the same key gets the first answer. */
  idempotencyKey?: string | undefined;
}

export const uploadRecordSchema = z.object({
  uploadId: z.string().min(1),
  status: uploadStatus,
  path: z.string(),
  sha256: z.string().optional(),
  size: z.number().optional(),
  contentType: z.string().optional(),
  version: version.nullish(),
  reason: z.string().nullish(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
export type UploadRecord = z.infer<typeof uploadRecordSchema>;

export const fileStatusSchema = z.object({
  path: z.string(),
  head: z.object({
    version,
    // A deleted file's head (a tombstone) has no content.
    sha256: z.string().nullable(),
    size: z.number(),
    contentType: z.string().nullish(),
    committedAt: z.string().nullish(),
    deleted: z.boolean().default(false),
  }),
  targets: z.array(
    z.object({
      id: z.string(),
      kind: z.string(),
      appliedVersion: version.nullish(),
      status: z.string(),
      appliedAt: z.string().nullish(),
      /** The last failure to apply a version at this target, when the API reports one. */
      failure: z
        .object({ version: z.number().int(), reason: z.string(), at: z.string().nullish() })
        .nullish(),
    }),
  ),
});
export type FileStatus = z.infer<typeof fileStatusSchema>;

/** A target's replication lag as the API measures it from the ledger (functions/core/lag.ts). */
export const targetLagSchema = z.object({
  /** Age of the oldest committed change the target has not applied; 0 when caught up. */
  lagSeconds: z.number().nonnegative(),
  /** Changes not applied, counted up to a look-ahead limit (`pendingCapped`). */
  pending: z.number().int().nonnegative(),
  pendingCapped: z.boolean().default(false),
  oldestPending: z.object({ path: z.string(), version: z.number().int(), committedAt: z.string() }).nullish(),
  /** Pull targets: seconds since the agent last reported; null if it never did. */
  heartbeatAgeSeconds: z.number().nonnegative().nullish(),
});
export type TargetLag = z.infer<typeof targetLagSchema>;

export const targetsResponseSchema = z.object({
  targets: z.array(
    z.object({
      id: z.string(),
      kind: z.string(),
      region: z.string().nullish(),
      pathPrefix: z.string().nullish(),
      dryRun: z.boolean().nullish(),
      lag: targetLagSchema.nullish(),
      /** Replication failures parked for the target (messages in its DLQ), when the API reports them. */
      failures: z.number().int().nonnegative().nullish(),
    }),
  ),
});
export type TargetsResponse = z.infer<typeof targetsResponseSchema>;

/** Health's shape is not pinned down; `status` is shown when present, the rest passed through. */
export const healthResponseSchema = z.looseObject({ status: z.string().optional() });
export type HealthResponse = z.infer<typeof healthResponseSchema>;

const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }),
});

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface MirrorApiClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:8787` or `https://x.execute-api.eu-west-1.amazonaws.com/prod`. */
  baseUrl: string;
  token: string;
  /** @default globalThis.fetch */
  fetch?: FetchLike | undefined;
  /** Per-request time limit. @default 30000 */
  timeoutMs?: number | undefined;
}

export class MirrorApiClient {
  readonly baseUrl: string;
  readonly #token: string;

  /** The bearer token, for the part uploader that talks to the same API. */
  get token(): string {
    return this.#token;
  }
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;

  constructor(options: MirrorApiClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** `POST /v1/uploads`: 200 committed (deduplicated) or 201 pending with a presigned PUT. */
  createUpload(request: CreateUploadRequest): Promise<CreateUploadResponse> {
    const body: Record<string, unknown> = {
      path: request.path,
      size: request.size,
      sha256: request.sha256.toLowerCase(),
      contentType: request.contentType,
    };
    if (request.ifVersion !== undefined) body.ifVersion = request.ifVersion;
    const headers: Record<string, string> =
      request.idempotencyKey === undefined ? {} : { 'idempotency-key': request.idempotencyKey };
    return this.#call('POST', '/v1/uploads', createUploadResponseSchema, body, headers);
  }

  /**
   * `POST /v1/uploads/{uploadId}/proof`: the digest answering the claim's challenge. 200 commits
   * (deduplicated); the API's `proof_not_accepted` (an ApiError) means: send the bytes.
   */
  proveUpload(uploadId: string, digest: string): Promise<z.infer<typeof createUploadCommittedSchema>> {
    return this.#call(
      'POST',
      `/v1/uploads/${encodeURIComponent(uploadId)}/proof`,
      createUploadCommittedSchema,
      {
        digest,
      },
    );
  }

  /** `GET /v1/uploads/{uploadId}`. */
  getUpload(uploadId: string): Promise<UploadRecord> {
    return this.#call('GET', `/v1/uploads/${encodeURIComponent(uploadId)}`, uploadRecordSchema);
  }

  /** `GET /v1/files/{path}`: the whole path is one encoded segment (`a/b.jpg` → `a%2Fb.jpg`). */
  getFile(path: string): Promise<FileStatus> {
    return this.#call('GET', `/v1/files/${encodeURIComponent(path)}`, fileStatusSchema);
  }

  /** `GET /v1/targets`. */
  listTargets(): Promise<TargetsResponse> {
    return this.#call('GET', '/v1/targets', targetsResponseSchema);
  }

  /** `GET /v1/health`. */
  health(): Promise<HealthResponse> {
    return this.#call('GET', '/v1/health', healthResponseSchema);
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
        signal: AbortSignal.timeout(Math.min(this.#timeoutMs, 5_000)),
      });
      const text = await response.text();
      return response.ok && /^# (HELP|TYPE) /m.test(text) ? text : undefined;
    } catch {
      return undefined;
    }
  }

  async #call<S extends z.ZodType>(
    method: 'GET' | 'POST',
    route: string,
    schema: S,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<z.infer<S>> {
    const what = `${method} ${route}`;
    const headers: Record<string, string> = {
      ...extraHeaders,
      authorization: `Bearer ${this.#token}`,
      accept: 'application/json',
    };
    const init: RequestInit = { method, headers, signal: AbortSignal.timeout(this.#timeoutMs) };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }

    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(`${this.baseUrl}${route}`, init);
      text = await response.text();
    } catch (err) {
      const local = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(this.baseUrl);
      const hint = local ? '; is the local stack running (npm start)?' : '';
      throw new ApiUnreachableError(
        `cannot reach the API at ${this.baseUrl} (${what}): ${describeFetchError(err)}${hint}`,
        { cause: err },
      );
    }

    if (!response.ok) throw toApiError(response.status, response.statusText, text);

    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch (err) {
      throw new ApiResponseError(`${what}: response ${response.status} is not JSON: ${snippet(text)}`, {
        cause: err,
      });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
      throw new ApiResponseError(`${what}: unexpected response ${response.status}: ${problems.join('; ')}`);
    }
    return parsed.data as z.infer<S>;
  }
}

/** Maps a non-2xx response to an ApiError, from `{error:{code,message,field?}}` when the body has it. */
export function toApiError(status: number, statusText: string, text: string): ApiError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = errorBodySchema.safeParse(json);
  if (parsed.success) {
    const { code, message, field } = parsed.data.error;
    return new ApiError({ status, code, message, field, cause: json });
  }
  const message = text.trim() === '' ? statusText || 'no details' : snippet(text);
  return new ApiError({ status, code: `http_${status}`, message, cause: text });
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
