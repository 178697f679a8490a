/**
 * API Gateway HTTP API (payload 2.0) → the upload API's use cases. Requests are validated and
 * answers checked against contracts/api.ts, the API's one statement: an answer that does not
 * match it is a 500, never a silent change of the API.
 */
import httpRouter from '@middy/http-router';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { z } from 'zod';
import {
  apiLimits,
  type CreateUploadResponse,
  changesQuerySchema,
  contentQuerySchema,
  routes as contract,
  deleteFileQuerySchema,
  errorBodySchema,
  filesQuerySchema,
  noQuerySchema,
  partNumberParam,
  type RouteContract,
  uploadIdSchema,
  versionsQuerySchema,
} from '../../contracts/api.js';
import type { FileVersion } from '../../contracts/model.js';
import {
  PREFERRED_PART_BYTES,
  S3_MAX_PART_BYTES,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
} from '../../contracts/multipart.js';
import { S3_MAX_KEY_BYTES } from '../../contracts/paths.js';
import type { Telemetry } from '../adapters/powertools.js';
import { decodeCursor, encodeCursor, readChanges } from '../core/changes.js';
import { MirrorError, ValidationError } from '../core/errors.js';
import { listFiles } from '../core/file-listing.js';
import { type StoredLag, storedLag } from '../core/lag.js';
import { PathPolicy } from '../core/paths.js';
import { restoreRequestId, restoreVersion } from '../core/restore.js';
import {
  abortUpload,
  claimReadsHead,
  completeUpload,
  contentUrl,
  createUpload,
  deleteFile,
  deleteRequestId,
  describeUpload,
  getFile,
  presignParts,
  proveUploadById,
  recordPart,
  recordParts,
  refreshReplayedClaim,
  type UploadDeps,
} from '../core/uploads.js';
import { listFileVersions } from '../core/versions.js';
import { answerOnce, type HttpAnswer, idempotencyKeyOf } from './idempotent.js';
import { routingPath } from './routing.js';

type Event = APIGatewayProxyEventV2;
type Result = APIGatewayProxyStructuredResultV2;
export type ApiHandler = (event: Event, context: Context) => Promise<Result>;
/** What a route reads of its Lambda invocation: how long it may still run (an Idempotency-Key's claim lasts that long). */
type Invocation = Pick<Context, 'getRemainingTimeInMillis'>;

/** A target as the API shows it (`GET /v1/targets`) and the path policy weighs it. */
export interface ApiTarget {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  readonly region?: string | undefined;
  readonly pathPrefix?: string | undefined;
  readonly keyPrefix?: string | undefined;
  readonly dryRun?: boolean | undefined;
}

export interface ApiDeps extends UploadDeps {
  readonly targets: readonly ApiTarget[];
  readonly telemetry: Telemetry;
}

// ---------------------------------------------------------------------------------------------
// Answers, checked against the contract
// ---------------------------------------------------------------------------------------------

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;
type BodyOf<R> = R extends { body: infer B extends z.ZodType } ? DeepReadonly<z.input<B>> : never;
type Status<R extends RouteContract> = keyof R['responses'] & number;

/** The answer broke contracts/api.ts: a bug here, answered as a 500. */
class ContractViolation extends Error {
  constructor(route: RouteContract, status: number, problem: string) {
    super(`${route.method} ${route.path} answered ${status} outside contracts/api.ts: ${problem}`);
    this.name = 'ContractViolation';
  }
}

/** Throws unless `body` is what the route's contract says it answers with `status`. */
function checkAnswer(route: RouteContract, status: number, body: unknown): void {
  const response = route.responses[status];
  if (!response) throw new ContractViolation(route, status, 'status not in the contract');
  const checked = response.body?.safeParse(body);
  if (checked && !checked.success) throw new ContractViolation(route, status, checked.error.message);
}

const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): Result => ({
  statusCode,
  headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
  body: JSON.stringify(body),
});

function reply<R extends RouteContract, S extends Status<R>>(
  route: R,
  status: S,
  body: BodyOf<R['responses'][S]>,
): Result {
  checkAnswer(route, status, body);
  return json(status, body);
}

/** An answer from answerOnce (a first run or a replay): checked as any other. */
function replyOnce(route: RouteContract, answer: HttpAnswer): Result {
  checkAnswer(route, answer.statusCode, answer.body);
  return json(answer.statusCode, answer.body, answer.headers);
}

function errorBody(status: number, code: string, message: string, field?: string): Result {
  return json(status, { error: { code, message, ...(field === undefined ? {} : { field }) } });
}

// ---------------------------------------------------------------------------------------------
// Requests, parsed with the contract's schemas
// ---------------------------------------------------------------------------------------------

/** Parses with a schema; the first issue becomes a 400 naming its field. */
function parse<T extends z.ZodType>(schema: T, value: unknown, fieldPrefix = ''): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [fieldPrefix, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.') || 'body';
  const message =
    issue?.code === 'unrecognized_keys'
      ? `unknown field(s): ${issue.keys.join(', ')}`
      : `${field} ${issue?.message ?? 'is invalid'}`;
  throw new ValidationError(issue?.code === 'unrecognized_keys' ? (issue.keys[0] ?? field) : field, message);
}

/** Refuses bytes that are not UTF-8: decoded leniently they would become U+FFFD, and distinct paths one. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function jsonBody(event: Event): unknown {
  if (!event.body) throw new ValidationError('body', 'a JSON body is required', { code: 'invalid_json' });
  const bytes = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : undefined;
  // The bound GET /v1/limits publishes, as the local front enforces it: API Gateway takes 10 MB.
  if ((bytes?.length ?? Buffer.byteLength(event.body)) > apiLimits.maxRequestBodyBytes) {
    throw new ValidationError(
      'body',
      `request bodies are limited to ${apiLimits.maxRequestBodyBytes} bytes`,
      {
        code: 'payload_too_large',
        status: 413,
      },
    );
  }
  let text = event.body;
  if (bytes !== undefined) {
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      throw new ValidationError('body', 'the body is not valid UTF-8', { code: 'invalid_json' });
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError('body', 'the body is not valid JSON', { code: 'invalid_json' });
  }
}

const uploadIdParam = (event: Event) => parse(uploadIdSchema, event.pathParameters?.id, 'uploadId');
const query = <T extends z.ZodType>(schema: T, event: Event) =>
  parse(schema, event.queryStringParameters ?? {});

/**
 * The file path of a `/v1/files/...` route. Routing joined its segments into one (see
 * routing.ts), so `a/b.jpg` and `a%2Fb.jpg` name the same file.
 */
function pathParam(paths: PathPolicy, event: Event): string {
  const raw = event.pathParameters?.path ?? '';
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new ValidationError('path', 'path is not valid percent-encoding', { code: 'invalid_path' });
  }
  return paths.check(decoded);
}

// ---------------------------------------------------------------------------------------------
// Views: what a client sees of the domain's records
// ---------------------------------------------------------------------------------------------

const versionView = (v: FileVersion) => ({
  version: v.version,
  sha256: v.sha256,
  size: v.size,
  contentType: v.contentType,
  committedAt: v.committedAt,
  deleted: v.deleted,
});

function targetView(t: ApiTarget, l: StoredLag | undefined) {
  return {
    id: t.id,
    kind: t.kind,
    ...(t.region ? { region: t.region } : {}),
    ...(t.pathPrefix ? { pathPrefix: t.pathPrefix } : {}),
    ...(t.dryRun ? { dryRun: true as const } : {}),
    lag: {
      lagSeconds: l?.lagSeconds ?? 0,
      pending: l?.pending ?? 0,
      pendingCapped: l?.pendingCapped ?? false,
      caughtUp: l?.caughtUp ?? false,
      ...(l?.measuredAt ? { measuredAt: l.measuredAt } : {}),
      ...(l?.oldestPending ? { oldestPending: l.oldestPending } : {}),
      ...(t.kind === 'pull' ? { heartbeatAgeSeconds: l?.heartbeatAgeSeconds ?? null } : {}),
      ...(t.kind === 'pull' && l?.agentConditions ? { agentConditions: [...l.agentConditions] } : {}),
      ...(t.kind === 'pull' && l?.agentRebuilding === true ? { agentRebuilding: true as const } : {}),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

interface RouteScope {
  readonly deps: ApiDeps;
  readonly paths: PathPolicy;
}

async function listTargets({ deps }: RouteScope): Promise<Result> {
  // The lag monitor's stored figures: a bounded read per target, however long the backlog
  // (walking the feed here could outlast the API's 29 s); the heartbeat age is read fresh.
  const report = await storedLag({ ledger: deps.ledger, clock: deps.clock, targets: deps.targets });
  const lag = new Map(report.map((t) => [t.targetId, t]));
  return reply(contract.listTargets, 200, {
    targets: deps.targets.map((t) => targetView(t, lag.get(t.id))),
  });
}

/** A target's key prefix takes its share of S3's key length (the path policy's rule). */
const longestKeyPrefix = (targets: readonly ApiTarget[]) =>
  Math.max(0, ...targets.map((t) => Buffer.byteLength(t.keyPrefix ?? '', 'utf8')));

/** `GET /v1/limits`: the deployment's configured limits, and the fixed ones a client must respect too. */
function limits({ deps }: RouteScope): Result {
  const { maxUploadBytes, multipartThresholdBytes, contentTypes, presignTtlSeconds } = deps.limits;
  return reply(contract.getLimits, 200, {
    maxUploadBytes,
    multipartThresholdBytes,
    partBytes: PREFERRED_PART_BYTES,
    minPartBytes: S3_MIN_PART_BYTES,
    maxPartBytes: S3_MAX_PART_BYTES,
    maxParts: S3_MAX_PARTS,
    contentTypes,
    presignTtlSeconds,
    maxPathBytes: S3_MAX_KEY_BYTES - longestKeyPrefix(deps.targets),
    defaultPageSize: apiLimits.defaultPageSize,
    maxPageSize: apiLimits.maxPageSize,
    maxRequestBodyBytes: apiLimits.maxRequestBodyBytes,
    maxPartsPerRequest: apiLimits.maxPartsPerRequest,
  });
}

/**
 * `GET /v1/paths?path=`: what a claim of the path answers for the path alone, writing nothing, so a
 * client learns a refusal before it hashes the file (minutes for a large one). The claim's own
 * checks, in its order: its schema for `path` (the query's), `admit` (every target's rules), then
 * the folder/file rule against the live heads. A change to the claim's path checks changes this.
 */
async function checkPath({ deps, paths }: RouteScope, event: Event): Promise<Result> {
  const path = paths.admit(query(contract.checkPath.query, event).path);
  await paths.checkOccupancy(path, deps.ledger);
  return reply(contract.checkPath, 200, { path, accepted: true });
}

async function claimUpload({ deps, paths }: RouteScope, event: Event, context?: Invocation): Promise<Result> {
  const body = parse(contract.createUpload.body, jsonBody(event));
  // The same checks as checkPath (GET /v1/paths), which clients ask before hashing.
  const path = paths.admit(body.path);
  const request = { route: 'POST /v1/uploads', ...body, path };
  const answer = await answerOnce(
    deps,
    event,
    request,
    async () => {
      // The folder rule's reads and the head's, side by side: one round trip to the ledger, not two.
      const head = claimReadsHead(body) ? deps.ledger.getHead(path) : undefined;
      head?.catch(() => undefined);
      await paths.checkOccupancy(path, deps.ledger);
      const result = await createUpload(deps, { ...body, path }, head);
      const statusCode = result.status === 'committed' ? 200 : 201;
      checkAnswer(contract.createUpload, statusCode, result);
      return { statusCode, body: result };
    },
    context,
  );
  if (answer.headers['idempotent-replayed'] !== undefined && answer.statusCode === 201) {
    const body = await refreshReplayedClaim(deps, answer.body as CreateUploadResponse);
    return replyOnce(contract.createUpload, { ...answer, body });
  }
  return replyOnce(contract.createUpload, answer);
}

async function files({ deps }: RouteScope, event: Event): Promise<Result> {
  const page = await listFiles(deps, query(filesQuerySchema, event));
  return reply(contract.listFiles, 200, {
    ...page,
    files: page.files.map(({ path, version, sha256, size, contentType, committedAt }) => ({
      path,
      version,
      sha256: sha256 as string,
      size,
      contentType,
      committedAt,
    })),
  });
}

async function fileStatus({ deps, paths }: RouteScope, event: Event): Promise<Result> {
  const view = await getFile(deps, pathParam(paths, event));
  const kinds = new Map(deps.targets.map((t) => [t.id, t.kind]));
  return reply(contract.getFile, 200, {
    path: view.path,
    head: versionView(view.head),
    targets: view.targets.map((t) => ({
      id: t.targetId,
      kind: kinds.get(t.targetId) as ApiTarget['kind'],
      appliedVersion: t.appliedVersion,
      status: t.status,
      appliedAt: 'appliedAt' in t ? (t.appliedAt ?? null) : null,
      ...('failure' in t && t.failure ? { failure: t.failure } : {}),
    })),
  });
}

async function fileVersions({ deps, paths }: RouteScope, event: Event): Promise<Result> {
  const path = pathParam(paths, event);
  const page = await listFileVersions(deps, path, query(versionsQuerySchema, event));
  return reply(contract.listVersions, 200, { ...page, versions: page.versions.map(versionView) });
}

async function fileContent({ deps, paths }: RouteScope, event: Event): Promise<Result> {
  const path = pathParam(paths, event);
  const { target, version } = query(contentQuerySchema, event);
  const url = await contentUrl(deps, path, target, version);
  checkAnswer(contract.getContent, 302, undefined);
  return { statusCode: 302, headers: { location: url, 'cache-control': 'no-store' }, body: '' };
}

async function removeFile({ deps, paths }: RouteScope, event: Event, context?: Invocation): Promise<Result> {
  const path = pathParam(paths, event);
  const { ifVersion } = query(deleteFileQuerySchema, event);
  const request = { route: 'DELETE /v1/files/{path}', path, ifVersion };
  const key = idempotencyKeyOf(event);
  // Under a key, every retry commits under one id: one that takes over a dead request's key finds its tombstone.
  const requestId = key === undefined ? undefined : deleteRequestId(key, path);
  const answer = await answerOnce(
    deps,
    event,
    request,
    async () => {
      const version = await deleteFile(deps, path, ifVersion, requestId);
      const body = { status: 'committed', path, version: version.version, deleted: true } as const;
      checkAnswer(contract.deleteFile, 200, body);
      return { statusCode: 200, body };
    },
    context,
  );
  return replyOnce(contract.deleteFile, answer);
}

async function restoreFile({ deps, paths }: RouteScope, event: Event, context?: Invocation): Promise<Result> {
  const path = pathParam(paths, event);
  const { from, ifVersion } = parse(contract.restoreVersion.body, jsonBody(event));
  const request = { route: 'POST /v1/files/{path}/versions', path, from, ifVersion };
  const key = idempotencyKeyOf(event);
  // As for deletes: a retry that takes over a dead request's key finds the version it committed.
  const requestId = key === undefined ? undefined : restoreRequestId(key, path, from);
  const answer = await answerOnce(
    deps,
    event,
    request,
    async () => {
      const version = await restoreVersion(deps, path, from, ifVersion, requestId);
      const body = {
        status: 'committed',
        path,
        version: version.version,
        restoredFrom: from,
        sha256: version.sha256 as string,
      } as const;
      checkAnswer(contract.restoreVersion, 201, body);
      return { statusCode: 201, body };
    },
    context,
  );
  return replyOnce(contract.restoreVersion, answer);
}

async function changes({ deps }: RouteScope, event: Event): Promise<Result> {
  const q = query(changesQuerySchema, event);
  const page = await readChanges(deps.ledger, decodeCursor(q.cursor, deps.feedShards), q.limit);
  return reply(contract.listChanges, 200, {
    changes: page.changes.map(({ shard: _s, seq: _q, appendedAt: _a, fannedOut: _f, ...change }) => change),
    cursor: encodeCursor(page.cursor),
  });
}

/** The upload routes under `/v1/uploads/{id}`. */
function uploadRoutes({ deps }: RouteScope) {
  return {
    getUpload: async (event: Event) =>
      reply(contract.getUpload, 200, await describeUpload(deps, uploadIdParam(event))),
    presignUploadParts: async (event: Event) => {
      const { parts } = parse(contract.presignUploadParts.body, jsonBody(event));
      const signed = await presignParts(deps, uploadIdParam(event), parts);
      return reply(contract.presignUploadParts, 200, { parts: signed });
    },
    recordUploadParts: async (event: Event) => {
      const { parts } = parse(contract.recordUploadParts.body, jsonBody(event));
      return reply(contract.recordUploadParts, 200, await recordParts(deps, uploadIdParam(event), parts));
    },
    recordUploadPart: async (event: Event) => {
      const partNumber = parse(partNumberParam, event.pathParameters?.partNumber, 'partNumber');
      const body = parse(contract.recordUploadPart.body, jsonBody(event));
      const view = await recordPart(deps, uploadIdParam(event), { ...body, partNumber });
      return reply(contract.recordUploadPart, 200, view);
    },
    proveUpload: async (event: Event) => {
      const body = parse(contract.proveUpload.body, jsonBody(event));
      return reply(contract.proveUpload, 200, await proveUploadById(deps, uploadIdParam(event), body.digest));
    },
    completeUpload: async (event: Event) => {
      const uploadId = uploadIdParam(event);
      const answer = await completeUpload(deps, uploadId);
      if (answer.status !== 'verifying') return reply(contract.completeUpload, 200, answer);
      checkAnswer(contract.completeUpload, 202, answer);
      return json(202, answer, { location: `/v1/uploads/${encodeURIComponent(uploadId)}` });
    },
    abortUpload: async (event: Event) => {
      const upload = await abortUpload(deps, uploadIdParam(event));
      return reply(contract.abortUpload, 200, {
        uploadId: upload.uploadId,
        status: upload.status,
        reason: upload.reason,
      });
    },
  };
}

type RouteName = keyof typeof contract;

/** Every route of the contract, answered. */
function answerers(
  scope: RouteScope,
): Record<RouteName, (event: Event, context?: Invocation) => Promise<Result>> {
  return {
    getHealth: async () => reply(contract.getHealth, 200, { status: 'ok', time: new Date().toISOString() }),
    getLimits: async () => limits(scope),
    listTargets: () => listTargets(scope),
    checkPath: (event) => checkPath(scope, event),
    createUpload: (event, context) => claimUpload(scope, event, context),
    ...uploadRoutes(scope),
    listFiles: (event) => files(scope, event),
    getFile: (event) => fileStatus(scope, event),
    listVersions: (event) => fileVersions(scope, event),
    getContent: (event) => fileContent(scope, event),
    deleteFile: (event, context) => removeFile(scope, event, context),
    restoreVersion: (event, context) => restoreFile(scope, event, context),
    listChanges: (event) => changes(scope, event),
  };
}

/**
 * A change that takes no body refuses one that says something, as a route refuses a query
 * parameter it does not know: `{"ifVersion": 3}` sent to `DELETE /v1/files/{path}` (whose
 * condition goes in the query) was ignored and the delete ran unconditionally. No body and `{}`
 * (what clients send for "nothing", the web client's complete among them) say nothing and pass.
 * Reads are left alone: a body on a GET is no instruction a client expects to be carried out.
 */
function refuseBody(route: RouteContract, event: Event): void {
  if (READ_METHODS.has(route.method) || !event.body) return;
  const body = jsonBody(event);
  const isObject = body !== null && typeof body === 'object' && !Array.isArray(body);
  const fields = isObject ? Object.keys(body) : [];
  if (isObject && fields.length === 0) return;
  const sent = fields.length > 0 ? `got ${fields.join(', ')}` : 'send {} or none';
  const where =
    route.query === undefined ? 'it takes no parameters' : 'its parameters go in the query string';
  throw new ValidationError(
    fields[0] ?? 'body',
    `${route.method} ${route.path} takes no body (${sent}): ${where}`,
  );
}

class NoRouteError extends MirrorError {
  constructor(method: string, path: string) {
    super(`no route for ${method} ${path}`, { code: 'no_route', status: 404 });
  }
}

function router(scope: RouteScope) {
  const answer = answerers(scope);
  return httpRouter({
    routes: (Object.keys(contract) as RouteName[]).map((name) => {
      const route: RouteContract = contract[name];
      return {
        method: route.method,
        path: route.path,
        // A route that takes no query parameter refuses one, as the others refuse one they do not
        // know: `?ifVersion=1` on a restore or a claim must not commit unconditionally, nor
        // `?version=1` on a file's status answer the head (docs/api.md).
        handler: (event: Event, context?: Invocation) => {
          if (route.query === undefined) query(noQuerySchema, event);
          if (route.body === undefined) refuseBody(route, event);
          return answer[name](event, context);
        },
      };
    }),
    notFoundResponse: ({ method, path }) => {
      throw new NoRouteError(method, path);
    },
  });
}

/** A failure as the API answers it: a domain error's own status and code, anything else a 500. */
function failure(telemetry: Telemetry, error: unknown): Result {
  const { logger } = telemetry;
  if (!(error instanceof MirrorError)) {
    logger.error('unexpected error', error as Error);
    return errorBody(500, 'internal', 'internal error; the request may be retried');
  }
  if (error.status >= 500) logger.error('request failed', error);
  const body = { error: { code: error.code, message: error.message, field: error.field } };
  if (!errorBodySchema.safeParse(body).success) logger.error('error code outside contracts/api.ts', error);
  return errorBody(error.status, error.code, error.message, error.field);
}

/** HTTP's preconditions (RFC 9110, 13.1): the API has no entity tags to evaluate them against. */
const CONDITIONAL_HEADERS = [
  'if-match',
  'if-none-match',
  'if-unmodified-since',
  'if-modified-since',
] as const;
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A change carrying an HTTP precondition is refused, not run unconditionally: a generic client's
 * `If-Match` would otherwise be ignored and its delete or upload go through whatever the head is.
 * The API's precondition is `ifVersion`. Reads may carry them (caches send them); they answer whole.
 */
function refuseConditionalChange(event: Event): void {
  if (READ_METHODS.has(event.requestContext.http.method.toUpperCase())) return;
  const header = CONDITIONAL_HEADERS.find((name) => event.headers?.[name] !== undefined);
  if (header === undefined) return;
  throw new ValidationError(
    header,
    `${header} is not supported: send ifVersion (the head version the change expects; 0 for a path that must not exist)`,
  );
}

export function createApiHandler(deps: ApiDeps): ApiHandler {
  const route = router({ deps, paths: new PathPolicy(deps.targets) });
  const answer = async (
    event: Event,
    method: string,
    context: Parameters<ApiHandler>[1],
  ): Promise<Result> => {
    try {
      refuseConditionalChange(event);
      // Route on the raw (still percent-encoded) path, a file path's segments joined into one: the
      // file path's slashes, literal or %2F, must not become route separators.
      const routed = {
        ...event,
        requestContext: {
          ...event.requestContext,
          http: { ...event.requestContext.http, method, path: routingPath(event.rawPath) },
        },
      };
      return (await route(routed as never, context as never, undefined as never)) as Result;
    } catch (error) {
      return failure(deps.telemetry, error);
    }
  };
  return async (event, context) => {
    deps.telemetry.logger.addContext(context);
    try {
      // HEAD is GET without the body (RFC 9110, 9.3.2): an uptime check or `curl -I` of a file that
      // exists must not read 404.
      const method = event.requestContext.http.method;
      if (method.toUpperCase() !== 'HEAD') return await answer(event, method, context);
      const got = await answer(event, 'GET', context);
      // Its length is GET's (RFC 9110, 8.6): a front that measured the empty body would say 0.
      const length = String(Buffer.byteLength(String(got.body ?? '')));
      return { ...got, headers: { ...got.headers, 'content-length': length }, body: '' };
    } finally {
      deps.telemetry.flush();
    }
  };
}
