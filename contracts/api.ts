/**
 * The HTTP API, stated once: every route's method and path, what it takes (body, path and
 * query parameters, headers) and what it answers (body per status), as zod schemas with their
 * inferred types. The API function validates requests and checks its answers with these; the
 * clients parse answers with them; docs/openapi.json is checked against them. Browser-safe:
 * imports only zod.
 */
// The namespace import lets bundlers drop what the schemas do not use (locales, JSON Schema):
// the page's bundle (web/build.ts) is 151 KB instead of 511 KB with `import { z }`.
import * as z from 'zod';
import { CONTENT_TYPE_PATTERN, CONTENT_TYPE_RULE, MAX_CONTENT_TYPE_LENGTH } from './content-type.ts';

// ---------------------------------------------------------------------------------------------
// Limits and shared values
// ---------------------------------------------------------------------------------------------

/** The request-side limits the API enforces before any rule that needs configuration. */
export const apiLimits = {
  /** A file path as sent; the path policy (docs/api.md, File paths) then allows at most 1024 bytes. */
  maxPathLength: 4096,
  maxContentTypeLength: MAX_CONTENT_TYPE_LENGTH,
  maxParts: 10_000,
  /**
   * Parts one request presigns or records: a 50 GiB upload (6,400 parts of 8 MiB) takes a few
   * dozen calls, and a request (about 160 bytes a part) stays far below `maxRequestBodyBytes`.
   */
  maxPartsPerRequest: 1000,
  maxEtagLength: 200,
  maxUploadIdLength: 100,
  maxCursorLength: 2048,
  /** `limit` of the version and change pages. */
  maxPageSize: 1000,
  defaultPageSize: 100,
  /** Largest version number a query parameter may name (fits a double exactly). */
  maxVersionDigits: 15,
  /** Larger request bodies are refused, 413 payload_too_large (field body): by the API and by the local front. */
  maxRequestBodyBytes: 1024 * 1024,
} as const;

export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

/**
 * The answer headers a page on an allowed origin may read (CORS `Access-Control-Expose-Headers`).
 * `date`: a page's SigV4 signer on a computer whose clock is off dates its signatures with the
 * API's time instead (web/client/api-clock.ts); hidden, every request stayed refused.
 */
export const API_EXPOSED_HEADERS = [
  'etag',
  'location',
  'retry-after',
  'idempotent-replayed',
  'date',
] as const;
/** The request headers a page on an allowed origin may send (CORS): its auth (a token or SigV4) and the API's own. */
export const API_CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'x-amz-date',
  'x-amz-security-token',
  'x-amz-content-sha256',
  'idempotency-key',
] as const;

const HEX64 = /^[0-9a-fA-F]{64}$/;
const LOWER_HEX64 = /^[0-9a-f]{64}$/;

/** A SHA-256 as a client sends it: 64 hex digits, either case; lower-cased once parsed. */
export const sha256Input = z
  .string()
  .regex(HEX64, 'must be 64 hexadecimal characters')
  .transform((s) => s.toLowerCase());

/** A SHA-256 as the API answers it: lower-case hex. */
export const sha256Hex = z.string().regex(LOWER_HEX64);

/** `type/subtype`, no parameters; case-insensitive (RFC 9110, 8.3.1), so lower-cased once parsed. */
export const contentTypeSchema = z
  .string()
  .max(apiLimits.maxContentTypeLength)
  .regex(CONTENT_TYPE_PATTERN, CONTENT_TYPE_RULE)
  .transform((s) => s.toLowerCase());

export const timestamp = z.iso.datetime();
export const versionNumberSchema = z.number().int().min(1);
const byteCount = z.number().int().nonnegative();
const partNumber = z.number().int().min(1).max(apiLimits.maxParts);
/** The base64 of a SHA-256 (the `x-amz-checksum-sha256` header). */
const checksumBase64 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/);

export const uploadIdSchema = z
  .string()
  .min(1)
  .max(apiLimits.maxUploadIdLength)
  .regex(/^[A-Za-z0-9-]+$/, 'is not an upload id');

/** A UUID fits, and so does any opaque token of the usual safe characters. */
export const idempotencyKeySchema = z.string().regex(/^[A-Za-z0-9._:~-]{1,128}$/);

export const targetKindSchema = z.enum(['s3', 'pull']);
export const uploadStatusSchema = z.enum(['pending', 'committed', 'rejected', 'expired']);
export const replicaStatusSchema = z.enum(['pending', 'copied', 'verified', 'failed']);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** Every `error.code` a client of the API can see (the API function's and the local front's). */
export const errorCodeSchema = z.enum([
  'invalid',
  'invalid_json',
  'invalid_path',
  'path_conflict',
  'invalid_cursor',
  'unknown_target',
  'not_readable',
  'not_multipart',
  'parts_missing',
  'invalid_parts',
  'unauthorized',
  'forbidden',
  'misdirected_request',
  'not_found',
  'no_route',
  'version_conflict',
  'upload_finished',
  'upload_expired',
  'proof_not_accepted',
  'too_large',
  'payload_too_large',
  'unsupported_content_type',
  'internal',
  'invalid_idempotency_key',
  'idempotency_in_progress',
  'idempotency_key_reused',
]);
export type ErrorCode = z.infer<typeof errorCodeSchema>;

/** The one error body: `code` is stable, `message` is for people, `field` names the input at fault. */
export const errorBodySchema = z.strictObject({
  error: z.strictObject({
    code: errorCodeSchema,
    message: z.string(),
    field: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

/** API Gateway's own answers on AWS (authorizer, throttling): not the API function's. */
export const gatewayMessageSchema = z.object({ message: z.string() });

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/** `POST /v1/uploads`. The path's rules (the path policy) are checked after this shape. */
export const uploadRequestSchema = z.strictObject({
  path: z.string().max(apiLimits.maxPathLength),
  size: z.number().int('must be a whole number of bytes').nonnegative().max(Number.MAX_SAFE_INTEGER),
  sha256: sha256Input,
  contentType: contentTypeSchema,
  ifVersion: z.number().int().nonnegative().optional(),
  newVersion: z.boolean().optional(),
});
export type UploadRequest = z.input<typeof uploadRequestSchema>;

/** `POST /v1/uploads/{id}/parts`: the part's own size and SHA-256. */
export const partRequestSchema = z.strictObject({
  partNumber,
  size: byteCount,
  sha256: sha256Input,
});
export type PartRequest = z.input<typeof partRequestSchema>;

/** An ETag as storage sends it: `"…"`, the quotes part of the value (RFC 9110, entity-tag). */
export function canonicalEtag(etag: string): string {
  return `"${etag.replace(/^"(.*)"$/, '$1')}"`;
}

/**
 * A part's ETag as an uploader reports it: quoted as S3 answers it, or with the quotes stripped
 * (Uppy 6 and some HTTP clients strip them). Either form names the same part: parsed to the
 * quoted form. The characters are an entity-tag's (visible ASCII but `"`); a weak `W/` tag is no
 * ETag storage answers for a part.
 */
export const etagInput = z
  .string()
  .max(apiLimits.maxEtagLength)
  .regex(
    /^(?:"[\x21\x23-\x7e]+"|[\x21\x23-\x7e]+)$/,
    'must be the ETag storage answered, with or without its quotes: visible ASCII, no space, no inner quote, no W/ prefix',
  )
  .transform(canonicalEtag);

/** `PUT /v1/uploads/{id}/parts/{partNumber}`: the part as stored, with the ETag storage answered. */
export const partReportSchema = z.strictObject({
  size: byteCount,
  sha256: sha256Input,
  etag: etagInput,
});
export type PartReport = z.input<typeof partReportSchema>;

/** Each part named once in a list of parts. */
const eachPartOnce = <T extends { partNumber: number }>(parts: readonly T[]) =>
  new Set(parts.map((p) => p.partNumber)).size === parts.length;

/** `POST /v1/uploads/{id}/parts`: the parts to presign, each with its own size and SHA-256. */
export const partBatchRequestSchema = z.strictObject({
  parts: z
    .array(partRequestSchema)
    .min(1)
    .max(apiLimits.maxPartsPerRequest)
    .refine(eachPartOnce, 'must name each partNumber once'),
});
export type PartBatchRequest = z.input<typeof partBatchRequestSchema>;

/** `PUT /v1/uploads/{id}/parts`: parts stored, each with the ETag storage answered. */
export const partReportBatchSchema = z.strictObject({
  parts: z
    .array(partReportSchema.extend({ partNumber }))
    .min(1)
    .max(apiLimits.maxPartsPerRequest)
    .refine(eachPartOnce, 'must name each partNumber once'),
});
export type PartReportBatch = z.input<typeof partReportBatchSchema>;

/** `POST /v1/files/{path}/versions`: commit version `from`'s content as the newest version. */
export const restoreRequestSchema = z.strictObject({
  from: versionNumberSchema,
  ifVersion: z.number().int().nonnegative().optional(),
});
export type RestoreRequest = z.input<typeof restoreRequestSchema>;

/** `POST /v1/uploads/{id}/proof`. */
export const proofRequestSchema = z.strictObject({ digest: sha256Input });
export type ProofRequest = z.input<typeof proofRequestSchema>;

// Path and query parameters arrive as strings.

const wholeNumberParam = z
  .string()
  .regex(new RegExp(`^\\d{1,${apiLimits.maxVersionDigits}}$`), 'must be a whole number')
  .transform(Number);

export const partNumberParam = z
  .string()
  .regex(/^\d{1,5}$/, 'must be a whole number')
  .transform(Number)
  .pipe(partNumber);

/** `{path}`: one segment, percent-encoded, or the path's own segments (docs/api.md, File paths). */
export const filePathParam = z.string();

// Digits only, as every number in a query: `0x3`, `1e1`, ` 2` or `2.0` are refused, not read as numbers.
const pageLimitRule = `must be a whole number from 1 to ${apiLimits.maxPageSize}`;
const pageLimit = z
  .string()
  .regex(/^\d{1,4}$/, pageLimitRule)
  .transform(Number)
  .refine((n) => n >= 1 && n <= apiLimits.maxPageSize, pageLimitRule)
  .default(apiLimits.defaultPageSize);

// Strict, as the bodies are: a misspelt parameter (`?ifversion=` on a delete) is refused, never ignored.
export const versionsQuerySchema = z.strictObject({ limit: pageLimit, before: wholeNumberParam.optional() });
export const changesQuerySchema = z.strictObject({
  cursor: z.string().max(apiLimits.maxCursorLength).optional(),
  limit: pageLimit,
});
/**
 * `GET /v1/files`: `prefix` is empty (every file) or names its top folder (`photos/`,
 * `photos/2024/IMG_`); its rules are checked after this shape (docs/api.md, Listing files).
 */
export const filesQuerySchema = z.strictObject({
  prefix: z.string().max(apiLimits.maxPathLength).default(''),
  cursor: z.string().max(apiLimits.maxCursorLength).optional(),
  limit: pageLimit,
});
/** What a route that takes no query parameter accepts: none (any is 400, named). */
export const noQuerySchema = z.strictObject({});
export const deleteFileQuerySchema = z.strictObject({ ifVersion: wholeNumberParam.optional() });
/**
 * Strict like every route's: a misspelt `?Version=3` or `?versionId=3` read as "no version" would
 * redirect to the head's bytes, `?Target=` to the origin's, with a 302 and no error.
 */
export const contentQuerySchema = z.strictObject({
  target: z.string().optional(),
  /** An older version's bytes (origin only: a target holds the version it applied). */
  version: wholeNumberParam.optional(),
});

/**
 * `GET /v1/paths`: the path a client means to claim, held to the claim's own schema for `path`
 * (the same field, bound and message).
 */
export const pathCheckQuerySchema = z.strictObject({ path: uploadRequestSchema.shape.path });

export const uploadIdParams = z.object({ id: uploadIdSchema });
export const partParams = z.object({ id: uploadIdSchema, partNumber: partNumberParam });
export const filePathParams = z.object({ path: filePathParam });
export const idempotencyHeaders = z.object({ [IDEMPOTENCY_HEADER]: idempotencyKeySchema.optional() });

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

export const healthSchema = z.strictObject({ status: z.literal('ok'), time: timestamp });
export type Health = z.infer<typeof healthSchema>;

/**
 * `GET /v1/paths`: a claim of this path would not be refused for it (now: another client may take
 * the name meanwhile, and the claim checks again). `path` is the path as the mirror stores it (NFC).
 */
export const pathCheckSchema = z.strictObject({ path: z.string(), accepted: z.literal(true) });
export type PathCheck = z.infer<typeof pathCheckSchema>;

/**
 * `GET /v1/limits`: what a client must respect, from the deployment's configuration, so no
 * client hard-codes a threshold the API decides.
 */
export const limitsSchema = z.strictObject({
  /** Largest `size` a claim may declare (413 `too_large` above). */
  maxUploadBytes: z.number().int().positive(),
  /** Claims larger than this get a part plan instead of one presigned PUT. */
  multipartThresholdBytes: z.number().int().positive(),
  /** The part size plans start from; a plan for a very large file uses larger parts (up to `maxParts`). */
  partBytes: z.number().int().positive(),
  /** Every part but the last is at least this (S3). */
  minPartBytes: z.number().int().positive(),
  maxPartBytes: z.number().int().positive(),
  maxParts: z.number().int().positive(),
  /** Accepted content types; `type/*` matches a family (415 `unsupported_content_type` otherwise). */
  contentTypes: z.array(z.string()).min(1),
  /** How long a presigned URL (whole file or part) stays valid. */
  presignTtlSeconds: z.number().int().positive(),
  /** A file path's longest UTF-8 length once normalized. */
  maxPathBytes: z.number().int().positive(),
  /** `limit` of the version and change pages: its default and its maximum. */
  defaultPageSize: z.number().int().positive(),
  maxPageSize: z.number().int().positive(),
  /** Largest JSON request body. */
  maxRequestBodyBytes: z.number().int().positive(),
  /** Parts one request presigns (`POST /v1/uploads/{id}/parts`) or records (`PUT /v1/uploads/{id}/parts`). */
  maxPartsPerRequest: z.number().int().positive(),
});
export type Limits = z.infer<typeof limitsSchema>;

/**
 * Replication lag as the scheduled lag monitor last measured it from the ledger (so a stopped agent
 * or a stuck queue shows here too); the API reads the stored figures, it measures nothing itself.
 */
export const targetLagSchema = z.strictObject({
  /** Age of the oldest change not applied, at `measuredAt`; an upper bound while `caughtUp` is false. */
  lagSeconds: z.number().nonnegative(),
  /** Changes not applied; a lower bound when `pendingCapped`. */
  pending: z.number().int().nonnegative(),
  pendingCapped: z.boolean(),
  /**
   * The monitor's scan reached the end of the feed (or the oldest unapplied change) in every shard;
   * false while it is still catching up (the figures are bounds then), and before its first run.
   */
  caughtUp: z.boolean().optional(),
  /** When the monitor measured the figures; absent before its first run (the figures are 0 then). */
  measuredAt: timestamp.optional(),
  oldestPending: z
    .strictObject({ path: z.string(), version: versionNumberSchema, committedAt: timestamp })
    .optional(),
  /** Pull targets only: seconds since the agent's last heartbeat; null before its first. */
  heartbeatAgeSeconds: z.number().nonnegative().nullable().optional(),
  /**
   * Pull targets only: what keeps the agent from applying, as it last reported (`disk-full`,
   * `permission-denied`, `read-only-filesystem`, `network`, `access-denied`...); empty while it works.
   */
  agentConditions: z.array(z.string()).optional(),
  /**
   * Pull targets only, true while the agent rebuilds its folder from the change feed (it started
   * over: a new server, an empty disk): the lag counts from the oldest change it may still lack.
   */
  agentRebuilding: z.literal(true).optional(),
});

export const targetSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$/),
  kind: targetKindSchema,
  region: z.string().optional(),
  pathPrefix: z.string().optional(),
  dryRun: z.literal(true).optional(),
  lag: targetLagSchema,
});
export const targetListSchema = z.strictObject({ targets: z.array(targetSchema) });
export type TargetList = z.infer<typeof targetListSchema>;

export const challengeSchema = z.strictObject({
  /** 32 random bytes, base64. */
  nonce: z.string().min(1),
  ranges: z.array(z.strictObject({ offset: byteCount, length: z.number().int().min(0).max(262_144) })).max(4),
  expiresAt: timestamp,
});
export type Challenge = z.infer<typeof challengeSchema>;

/**
 * Headers signed into a presigned URL that every HTTP client sets on its own, from the URL
 * (`host`) and the body (`content-length`): browsers refuse to set them, so they are never among
 * the headers to send.
 */
export const AUTOMATIC_HEADERS = ['content-length', 'host'] as const;

/** The headers an uploader must send to a presigned URL, exactly these values: signed in. */
const headersToSend = <T extends z.ZodRawShape>(shape: T) =>
  z
    .object(shape)
    .catchall(z.string())
    .refine((headers) => !Object.keys(headers).some((name) => AUTOMATIC_HEADERS.some((a) => a === name)), {
      message: `must not hold ${AUTOMATIC_HEADERS.join(' or ')}: those are in automaticHeaders`,
    });

/**
 * Signed too, but set by the HTTP client itself: do not set them (a browser refuses to), send
 * a body of exactly `content-length` bytes to `url` (whose host is `host`).
 */
export const automaticHeadersSchema = z.strictObject({
  'content-length': z.string().regex(/^[0-9]+$/),
  host: z.string().min(1),
});

/** One PUT of the whole file: send `headers` exactly; `automaticHeaders` the HTTP client sets. */
export const presignedPutSchema = z.strictObject({
  method: z.literal('PUT'),
  url: z.url(),
  headers: headersToSend({
    'content-type': z.string(),
    'x-amz-checksum-sha256': checksumBase64,
    /**
     * The upload id, stored with the bytes: the ingest commits only the upload whose URL stored them.
     * Always sent by this API; optional here so that a client reads an answer of an older one.
     */
    'x-amz-meta-mirror-upload': z.string().optional(),
  }),
  automaticHeaders: automaticHeadersSchema,
  expiresAt: timestamp,
});
export type PresignedPut = z.infer<typeof presignedPutSchema>;

export const uploadedPartSchema = z.strictObject({ partNumber, size: byteCount, etag: z.string() });

/** The part plan: `partCount` parts of `partSize` bytes, the last holding the rest. */
export const multipartPlanSchema = z.strictObject({
  partSize: z.number().int().positive(),
  partCount: z.number().int().min(1).max(apiLimits.maxParts),
});
export const multipartViewSchema = multipartPlanSchema.extend({
  uploadedParts: z.array(uploadedPartSchema).max(apiLimits.maxParts),
});
export type MultipartView = z.infer<typeof multipartViewSchema>;

const uploadCommittedSchema = z.strictObject({
  status: z.literal('committed'),
  uploadId: z.string(),
  path: z.string(),
  version: versionNumberSchema,
});
/** The content equals the path's head: nothing new is committed. */
export const uploadUnchangedSchema = uploadCommittedSchema.extend({ unchanged: z.literal(true) });
/** A proof accepted: the version is committed without the bytes. */
export const uploadDeduplicatedSchema = uploadCommittedSchema.extend({ deduplicated: z.literal(true) });
export type UploadDeduplicated = z.infer<typeof uploadDeduplicatedSchema>;
export const uploadPendingSchema = z.strictObject({
  status: z.literal('pending'),
  uploadId: z.string(),
  path: z.string(),
  upload: presignedPutSchema,
  challenge: challengeSchema,
});
export const uploadPendingMultipartSchema = z.strictObject({
  status: z.literal('pending'),
  uploadId: z.string(),
  path: z.string(),
  resumed: z.boolean(),
  multipart: multipartViewSchema,
  challenge: challengeSchema,
});
export const uploadCreatedSchema = z.union([uploadPendingSchema, uploadPendingMultipartSchema]);
/** Every answer to `POST /v1/uploads` but an error. */
export const createUploadResponseSchema = z.union([
  uploadUnchangedSchema,
  uploadDeduplicatedSchema,
  uploadPendingSchema,
  uploadPendingMultipartSchema,
]);
export type CreateUploadResponse = z.infer<typeof createUploadResponseSchema>;
export type UploadPending = z.infer<typeof uploadPendingSchema>;
export type UploadPendingMultipart = z.infer<typeof uploadPendingMultipartSchema>;

/** `GET /v1/uploads/{id}`: an upload as a client sees it. */
export const uploadSchema = z.strictObject({
  uploadId: z.string(),
  path: z.string(),
  sha256: sha256Hex,
  size: byteCount,
  contentType: z.string(),
  ifVersion: z.number().int().nonnegative().optional(),
  newVersion: z.boolean().optional(),
  status: uploadStatusSchema,
  version: versionNumberSchema.optional(),
  reason: z.string().optional(),
  deduplicated: z.boolean().optional(),
  /** The plan, with the parts recorded so far while the upload is pending. */
  multipart: z.union([multipartViewSchema, multipartPlanSchema]).optional(),
  expiresAt: timestamp.optional(),
  createdAt: timestamp,
  updatedAt: timestamp,
});
export type Upload = z.infer<typeof uploadSchema>;

/** One part's PUT: send `headers` exactly (the part's SHA-256 is signed in); `automaticHeaders` the HTTP client sets. */
export const presignedPartSchema = z.strictObject({
  partNumber,
  url: z.url(),
  headers: headersToSend({ 'x-amz-checksum-sha256': checksumBase64 }),
  automaticHeaders: automaticHeadersSchema,
  expiresAt: timestamp,
});
export type PresignedPart = z.infer<typeof presignedPartSchema>;
/** The answer to `POST /v1/uploads/{id}/parts`: a presigned PUT per part asked, in the order asked. */
export const presignedPartListSchema = z.strictObject({
  parts: z.array(presignedPartSchema).min(1).max(apiLimits.maxPartsPerRequest),
});
export type PresignedPartList = z.infer<typeof presignedPartListSchema>;

export const uploadVerifyingSchema = z.strictObject({ status: z.literal('verifying'), uploadId: z.string() });
export const uploadAbortedSchema = z.strictObject({
  uploadId: z.string(),
  status: uploadStatusSchema,
  reason: z.string().optional(),
});

export const fileVersionSchema = z.strictObject({
  version: versionNumberSchema,
  /** Null for a tombstone. */
  sha256: sha256Hex.nullable(),
  size: byteCount,
  contentType: z.string().nullable(),
  committedAt: timestamp,
  deleted: z.boolean(),
});
export type FileVersionView = z.infer<typeof fileVersionSchema>;

/** A live file as `GET /v1/files` lists it: its head. */
export const listedFileSchema = z.strictObject({
  path: z.string(),
  version: versionNumberSchema,
  sha256: sha256Hex,
  size: byteCount,
  contentType: z.string().nullable(),
  committedAt: timestamp,
});
export type ListedFile = z.infer<typeof listedFileSchema>;

export const fileListSchema = z.strictObject({
  prefix: z.string(),
  /** In path order (UTF-8 bytes) under a prefix; in no particular order without one. */
  files: z.array(listedFileSchema).max(apiLimits.maxPageSize),
  /** Present while more files may follow (a page may be short and still have one): pass it back as `cursor`. */
  cursor: z.string().optional(),
});
export type FileList = z.infer<typeof fileListSchema>;

export const targetStatusSchema = z.strictObject({
  id: z.string(),
  kind: targetKindSchema,
  appliedVersion: z.number().int().nonnegative(),
  status: replicaStatusSchema,
  appliedAt: timestamp.nullable(),
  failure: z.strictObject({ version: versionNumberSchema, reason: z.string(), at: timestamp }).optional(),
});
export const fileStatusSchema = z.strictObject({
  path: z.string(),
  head: fileVersionSchema,
  targets: z.array(targetStatusSchema),
});
export type FileStatus = z.infer<typeof fileStatusSchema>;

export const versionListSchema = z.strictObject({
  path: z.string(),
  versions: z.array(fileVersionSchema),
  /** Present when older versions remain: pass it as `before` for the next page. */
  nextBefore: z.number().int().min(2).optional(),
});
export type VersionList = z.infer<typeof versionListSchema>;

export const restoreResultSchema = z.strictObject({
  status: z.literal('committed'),
  path: z.string(),
  version: z.number().int().min(2),
  restoredFrom: versionNumberSchema,
  sha256: sha256Hex,
});
export type RestoreResult = z.infer<typeof restoreResultSchema>;

export const deleteResultSchema = z.strictObject({
  status: z.literal('committed'),
  path: z.string(),
  version: z.number().int().min(2),
  deleted: z.literal(true),
});
export type DeleteResult = z.infer<typeof deleteResultSchema>;

export const changeSchema = z.strictObject({
  path: z.string(),
  version: versionNumberSchema,
  sha256: sha256Hex.nullable(),
  size: byteCount,
  contentType: z.string().nullable(),
  deleted: z.boolean(),
  committedAt: timestamp,
});
export const changesPageSchema = z.strictObject({
  changes: z.array(changeSchema).max(apiLimits.maxPageSize),
  /** Opaque: pass it back as `cursor` for the changes after these. */
  cursor: z.string(),
});
export type ChangesPage = z.infer<typeof changesPageSchema>;

// ---------------------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------------------

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One answer: a JSON body, or (a redirect) only headers. */
export interface ResponseContract {
  readonly body?: z.ZodType;
  readonly headers?: z.ZodType;
}

export interface RouteContract {
  readonly operationId: string;
  readonly method: HttpMethod;
  /** OpenAPI-style template: `{name}` is a path parameter. */
  readonly path: string;
  /** `none`: no credentials (health); otherwise the deployment's authorizer or the local token. */
  readonly auth: 'none' | 'required';
  readonly params?: z.ZodObject;
  readonly query?: z.ZodObject;
  readonly headers?: z.ZodObject;
  readonly body?: z.ZodType;
  /** Every status the API function answers on this route, with what it carries. */
  readonly responses: Readonly<Record<number, ResponseContract>>;
}

const error = { body: errorBodySchema } as const;
const ok = <T extends z.ZodType>(body: T) => ({ body }) as const;
const idempotentReplay = z.object({ 'idempotent-replayed': z.literal('true').optional() });

export const routes = {
  getHealth: {
    operationId: 'getHealth',
    method: 'GET',
    path: '/v1/health',
    auth: 'none',
    responses: { 200: ok(healthSchema), 400: error, 500: error },
  },
  getLimits: {
    operationId: 'getLimits',
    method: 'GET',
    path: '/v1/limits',
    auth: 'required',
    responses: { 200: ok(limitsSchema), 400: error, 500: error },
  },
  listTargets: {
    operationId: 'listTargets',
    method: 'GET',
    path: '/v1/targets',
    auth: 'required',
    responses: { 200: ok(targetListSchema), 400: error, 500: error },
  },
  checkPath: {
    operationId: 'checkPath',
    method: 'GET',
    path: '/v1/paths',
    auth: 'required',
    query: pathCheckQuerySchema,
    responses: { 200: ok(pathCheckSchema), 400: error, 500: error },
  },
  createUpload: {
    operationId: 'createUpload',
    method: 'POST',
    path: '/v1/uploads',
    auth: 'required',
    headers: idempotencyHeaders,
    body: uploadRequestSchema,
    responses: {
      200: { body: uploadUnchangedSchema, headers: idempotentReplay },
      201: { body: uploadCreatedSchema, headers: idempotentReplay },
      400: error,
      409: error,
      413: error,
      415: error,
      422: error,
      500: error,
    },
  },
  getUpload: {
    operationId: 'getUpload',
    method: 'GET',
    path: '/v1/uploads/{id}',
    auth: 'required',
    params: uploadIdParams,
    responses: { 200: ok(uploadSchema), 400: error, 404: error, 500: error },
  },
  abortUpload: {
    operationId: 'abortUpload',
    method: 'DELETE',
    path: '/v1/uploads/{id}',
    auth: 'required',
    params: uploadIdParams,
    responses: { 200: ok(uploadAbortedSchema), 400: error, 404: error, 500: error },
  },
  presignUploadParts: {
    operationId: 'presignUploadParts',
    method: 'POST',
    path: '/v1/uploads/{id}/parts',
    auth: 'required',
    params: uploadIdParams,
    body: partBatchRequestSchema,
    responses: {
      200: ok(presignedPartListSchema),
      400: error,
      404: error,
      409: error,
      413: error,
      500: error,
    },
  },
  recordUploadParts: {
    operationId: 'recordUploadParts',
    method: 'PUT',
    path: '/v1/uploads/{id}/parts',
    auth: 'required',
    params: uploadIdParams,
    body: partReportBatchSchema,
    responses: { 200: ok(multipartViewSchema), 400: error, 404: error, 409: error, 413: error, 500: error },
  },
  recordUploadPart: {
    operationId: 'recordUploadPart',
    method: 'PUT',
    path: '/v1/uploads/{id}/parts/{partNumber}',
    auth: 'required',
    params: partParams,
    body: partReportSchema,
    responses: { 200: ok(multipartViewSchema), 400: error, 404: error, 409: error, 413: error, 500: error },
  },
  completeUpload: {
    operationId: 'completeUpload',
    method: 'POST',
    path: '/v1/uploads/{id}/complete',
    auth: 'required',
    params: uploadIdParams,
    responses: {
      /** Committed already (a retried complete): the upload. */
      200: ok(uploadSchema),
      /** Accepted: S3 assembles the parts in the background, the ingest verifies; poll `location`. */
      202: { body: uploadVerifyingSchema, headers: z.object({ location: z.string() }) },
      400: error,
      404: error,
      409: error,
      500: error,
    },
  },
  proveUpload: {
    operationId: 'proveUpload',
    method: 'POST',
    path: '/v1/uploads/{id}/proof',
    auth: 'required',
    params: uploadIdParams,
    body: proofRequestSchema,
    responses: {
      200: ok(uploadDeduplicatedSchema),
      400: error,
      404: error,
      409: error,
      422: error,
      413: error,
      500: error,
    },
  },
  listFiles: {
    operationId: 'listFiles',
    method: 'GET',
    path: '/v1/files',
    auth: 'required',
    query: filesQuerySchema,
    responses: { 200: ok(fileListSchema), 400: error, 500: error },
  },
  getFile: {
    operationId: 'getFile',
    method: 'GET',
    path: '/v1/files/{path}',
    auth: 'required',
    params: filePathParams,
    responses: { 200: ok(fileStatusSchema), 400: error, 404: error, 500: error },
  },
  deleteFile: {
    operationId: 'deleteFile',
    method: 'DELETE',
    path: '/v1/files/{path}',
    auth: 'required',
    params: filePathParams,
    query: deleteFileQuerySchema,
    headers: idempotencyHeaders,
    responses: {
      200: { body: deleteResultSchema, headers: idempotentReplay },
      400: error,
      404: error,
      409: error,
      422: error,
      500: error,
    },
  },
  listVersions: {
    operationId: 'listVersions',
    method: 'GET',
    path: '/v1/files/{path}/versions',
    auth: 'required',
    params: filePathParams,
    query: versionsQuerySchema,
    responses: { 200: ok(versionListSchema), 400: error, 404: error, 500: error },
  },
  restoreVersion: {
    operationId: 'restoreVersion',
    method: 'POST',
    path: '/v1/files/{path}/versions',
    auth: 'required',
    params: filePathParams,
    headers: idempotencyHeaders,
    body: restoreRequestSchema,
    responses: {
      201: { body: restoreResultSchema, headers: idempotentReplay },
      400: error,
      404: error,
      409: error,
      422: error,
      413: error,
      500: error,
    },
  },
  getContent: {
    operationId: 'getContent',
    method: 'GET',
    path: '/v1/files/{path}/content',
    auth: 'required',
    params: filePathParams,
    query: contentQuerySchema,
    responses: {
      302: { headers: z.object({ location: z.url() }) },
      400: error,
      404: error,
      500: error,
    },
  },
  listChanges: {
    operationId: 'listChanges',
    method: 'GET',
    path: '/v1/changes',
    auth: 'required',
    query: changesQuerySchema,
    responses: { 200: ok(changesPageSchema), 400: error, 500: error },
  },
} as const satisfies Record<string, RouteContract>;

export type RouteName = keyof typeof routes;

/** The body a route answers with a status, as a type: `ResponseBody<'getFile', 200>`. */
export type ResponseBody<
  R extends RouteName,
  S extends keyof (typeof routes)[R]['responses'],
> = (typeof routes)[R]['responses'][S] extends { body: infer B extends z.ZodType } ? z.infer<B> : never;

/** The route table as a list, for walking (tests, documents). */
export const routeList: readonly RouteContract[] = Object.values(routes);
