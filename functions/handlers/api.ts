/** API Gateway HTTP API (payload 2.0) → the upload API's use cases. */
import httpRouter from '@middy/http-router';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { z } from 'zod';
import type { FileVersion } from '../../contracts/model.js';
import { makeLogger, makeMetrics, metricsPort, publishMetrics } from '../adapters/powertools.js';
import { readRuntimeConfig } from '../adapters/runtime-config.js';
import { makeDeps } from '../adapters/wiring.js';
import { decodeCursor, encodeCursor, readChanges } from '../core/changes.js';
import { MirrorError, ValidationError } from '../core/errors.js';
import { measureLag } from '../core/lag.js';
import { PathPolicy } from '../core/paths.js';
import {
  abortUpload,
  completeUpload,
  contentUrl,
  createUpload,
  deleteFile,
  describeUpload,
  getFile,
  presignPart,
  proveUploadById,
  recordPart,
} from '../core/uploads.js';
import { answerOnce } from './idempotent.js';
import { routingPath } from './routing.js';

const config = readRuntimeConfig();
const logger = makeLogger('api');
const metrics = makeMetrics('api');
const deps = makeDeps(config, metricsPort(metrics));
const paths = new PathPolicy(config.targets);

type Event = APIGatewayProxyEventV2;
type Result = APIGatewayProxyStructuredResultV2;

const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): Result => ({
  statusCode,
  headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
  body: JSON.stringify(body),
});

const errorBody = (status: number, code: string, message: string, field?: string): Result =>
  json(status, { error: { code, message, ...(field === undefined ? {} : { field }) } });

const uploadRequestSchema = z.strictObject({
  path: z.string().max(4096),
  size: z.number().int('must be a whole number of bytes').nonnegative().max(Number.MAX_SAFE_INTEGER),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal characters')
    .transform((s) => s.toLowerCase()),
  contentType: z
    .string()
    .max(255)
    .regex(/^[a-zA-Z0-9!#$&^_.+-]+\/[a-zA-Z0-9!#$&^_.+-]+$/, 'must be a MIME type such as image/jpeg'),
  ifVersion: z.number().int().nonnegative().optional(),
  newVersion: z.boolean().optional(),
});

const partRequestSchema = z.strictObject({
  partNumber: z.number().int().min(1).max(10_000),
  size: z.number().int().nonnegative(),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal characters')
    .transform((s) => s.toLowerCase()),
});

const proofRequestSchema = z.strictObject({
  digest: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hexadecimal characters')
    .transform((s) => s.toLowerCase()),
});

const partNumberSchema = z
  .string()
  .regex(/^\d{1,5}$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().min(1).max(10_000));

const storedPartSchema = z.strictObject({
  size: z.number().int().nonnegative(),
  sha256: partRequestSchema.shape.sha256,
  etag: z.string().min(1).max(200),
});

function uploadIdParam(event: Event): string {
  return parse(
    z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9-]+$/, 'is not an upload id'),
    event.pathParameters?.id,
    'uploadId',
  );
}

const versionNumber = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a whole number')
  .transform(Number);

/** Parses with a schema; the first issue becomes a 400 naming its field. */
function parse<T extends z.ZodType>(schema: T, value: unknown, fieldPrefix = ''): z.infer<T> {
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

function jsonBody(event: Event): unknown {
  if (!event.body) throw new ValidationError('body', 'a JSON body is required', { code: 'invalid_json' });
  const text = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError('body', 'the body is not valid JSON', { code: 'invalid_json' });
  }
}

/**
 * The file path of a `/v1/files/...` route. Routing joined its segments into one (see
 * routing.ts), so `a/b.jpg` and `a%2Fb.jpg` name the same file.
 */
function pathParam(event: Event): string {
  const raw = event.pathParameters?.path ?? '';
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new ValidationError('path', 'path is not valid percent-encoding', { code: 'invalid_path' });
  }
  return paths.check(decoded);
}

const versionView = (v: FileVersion) => ({
  version: v.version,
  sha256: v.sha256,
  size: v.size,
  contentType: v.contentType,
  committedAt: v.committedAt,
  deleted: v.deleted,
});

const routes = [
  {
    method: 'GET' as const,
    path: '/v1/health',
    handler: async () => json(200, { status: 'ok', time: new Date().toISOString() }),
  },
  {
    method: 'GET' as const,
    path: '/v1/targets',
    handler: async () => {
      // Measured on request from the ledger (as the scheduled monitor does): a dead agent shows here too.
      const lag = new Map(
        (
          await measureLag({
            ledger: deps.ledger,
            clock: deps.clock,
            feedShards: config.feedShards,
            targets: config.targets,
          })
        ).map((t) => [t.targetId, t]),
      );
      return json(200, {
        targets: config.targets.map((t) => {
          const l = lag.get(t.id);
          return {
            id: t.id,
            kind: t.kind,
            ...(t.region ? { region: t.region } : {}),
            ...(t.pathPrefix ? { pathPrefix: t.pathPrefix } : {}),
            ...(t.dryRun ? { dryRun: true } : {}),
            lag: {
              lagSeconds: l?.lagSeconds ?? 0,
              pending: l?.pending ?? 0,
              pendingCapped: l?.pendingCapped ?? false,
              ...(l?.oldestPending ? { oldestPending: l.oldestPending } : {}),
              ...(t.kind === 'pull' ? { heartbeatAgeSeconds: l?.heartbeatAgeSeconds ?? null } : {}),
            },
          };
        }),
      });
    },
  },
  {
    method: 'POST' as const,
    path: '/v1/uploads',
    handler: async (event: Event) => {
      const body = parse(uploadRequestSchema, jsonBody(event));
      const path = paths.admit(body.path);
      const answer = await answerOnce(deps, event, { route: 'POST /v1/uploads', ...body, path }, async () => {
        await paths.checkOccupancy(path, deps.ledger);
        const result = await createUpload(deps, { ...body, path });
        return { statusCode: result.status === 'committed' ? 200 : 201, body: result };
      });
      return json(answer.statusCode, answer.body, answer.headers);
    },
  },
  {
    method: 'GET' as const,
    path: '/v1/uploads/{id}',
    handler: async (event: Event) => json(200, await describeUpload(deps, uploadIdParam(event))),
  },
  {
    method: 'POST' as const,
    path: '/v1/uploads/{id}/parts',
    handler: async (event: Event) => {
      const body = parse(partRequestSchema, jsonBody(event));
      return json(200, await presignPart(deps, uploadIdParam(event), body));
    },
  },
  {
    method: 'PUT' as const,
    path: '/v1/uploads/{id}/parts/{partNumber}',
    handler: async (event: Event) => {
      const partNumber = parse(partNumberSchema, event.pathParameters?.partNumber, 'partNumber');
      const body = parse(storedPartSchema, jsonBody(event));
      return json(200, await recordPart(deps, uploadIdParam(event), { ...body, partNumber }));
    },
  },
  {
    method: 'POST' as const,
    path: '/v1/uploads/{id}/proof',
    handler: async (event: Event) => {
      const body = parse(proofRequestSchema, jsonBody(event));
      return json(200, await proveUploadById(deps, uploadIdParam(event), body.digest));
    },
  },
  {
    method: 'POST' as const,
    path: '/v1/uploads/{id}/complete',
    handler: async (event: Event) => json(202, await completeUpload(deps, uploadIdParam(event))),
  },
  {
    method: 'DELETE' as const,
    path: '/v1/uploads/{id}',
    handler: async (event: Event) => {
      const upload = await abortUpload(deps, uploadIdParam(event));
      return json(200, { uploadId: upload.uploadId, status: upload.status, reason: upload.reason });
    },
  },
  {
    method: 'GET' as const,
    path: '/v1/files/{path}',
    handler: async (event: Event) => {
      const view = await getFile(deps, pathParam(event));
      const kinds = new Map(config.targets.map((t) => [t.id, t.kind]));
      return json(200, {
        path: view.path,
        head: versionView(view.head),
        targets: view.targets.map((t) => ({
          id: t.targetId,
          kind: kinds.get(t.targetId),
          appliedVersion: t.appliedVersion,
          status: t.status,
          appliedAt: 'appliedAt' in t ? (t.appliedAt ?? null) : null,
          ...('failure' in t && t.failure ? { failure: t.failure } : {}),
        })),
      });
    },
  },
  {
    method: 'GET' as const,
    path: '/v1/files/{path}/versions',
    handler: async (event: Event) => {
      const path = pathParam(event);
      const query = parse(
        z.object({
          limit: z.coerce.number().int().min(1).max(1000).default(100),
          before: versionNumber.optional(),
        }),
        event.queryStringParameters ?? {},
      );
      const versions = await deps.ledger.listVersions(path, {
        limit: query.limit,
        ...(query.before === undefined ? {} : { before: query.before }),
      });
      if (versions.length === 0 && query.before === undefined) {
        return errorBody(404, 'not_found', `no file at "${path}"`, 'path');
      }
      const last = versions.at(-1);
      return json(200, {
        path,
        versions: versions.map(versionView),
        ...(versions.length === query.limit && last && last.version > 1 ? { nextBefore: last.version } : {}),
      });
    },
  },
  {
    method: 'GET' as const,
    path: '/v1/files/{path}/content',
    handler: async (event: Event) => {
      const path = pathParam(event);
      const target = event.queryStringParameters?.target;
      const url = await contentUrl(deps, path, target);
      return { statusCode: 302, headers: { location: url, 'cache-control': 'no-store' }, body: '' };
    },
  },
  {
    method: 'DELETE' as const,
    path: '/v1/files/{path}',
    handler: async (event: Event) => {
      const path = pathParam(event);
      const query = parse(
        z.object({ ifVersion: versionNumber.optional() }),
        event.queryStringParameters ?? {},
      );
      const request = { route: 'DELETE /v1/files/{path}', path, ifVersion: query.ifVersion };
      const answer = await answerOnce(deps, event, request, async () => {
        const version = await deleteFile(deps, path, query.ifVersion);
        return {
          statusCode: 200,
          body: { status: 'committed', path, version: version.version, deleted: true },
        };
      });
      return json(answer.statusCode, answer.body, answer.headers);
    },
  },
  {
    method: 'GET' as const,
    path: '/v1/changes',
    handler: async (event: Event) => {
      const query = parse(
        z.object({
          cursor: z.string().max(2048).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        event.queryStringParameters ?? {},
      );
      const cursor = decodeCursor(query.cursor, config.feedShards);
      const page = await readChanges(deps.ledger, cursor, query.limit);
      return json(200, {
        changes: page.changes.map(
          ({ shard: _s, seq: _q, appendedAt: _a, fannedOut: _f, ...change }) => change,
        ),
        cursor: encodeCursor(page.cursor),
      });
    },
  },
];

class NoRouteError extends MirrorError {
  constructor(method: string, path: string) {
    super(`no route for ${method} ${path}`, { code: 'no_route', status: 404 });
  }
}

const route = httpRouter({
  routes,
  notFoundResponse: ({ method, path }) => {
    throw new NoRouteError(method, path);
  },
});

export const handler = async (event: Event, context: Context): Promise<Result> => {
  logger.addContext(context);
  try {
    // Route on the raw (still percent-encoded) path, a file path's segments joined into one: the
    // file path's slashes, literal or %2F, must not become route separators.
    const routed = {
      ...event,
      requestContext: {
        ...event.requestContext,
        http: { ...event.requestContext.http, path: routingPath(event.rawPath) },
      },
    };
    return (await route(routed as never, context as never, undefined as never)) as Result;
  } catch (error) {
    if (error instanceof MirrorError) {
      if (error.status >= 500) logger.error('request failed', error);
      return errorBody(error.status, error.code, error.message, error.field);
    }
    logger.error('unexpected error', error as Error);
    return errorBody(500, 'internal', 'internal error; the request may be retried');
  } finally {
    publishMetrics(metrics);
  }
};
