/**
 * The API answers through contracts/api.ts: an answer the contract does not allow is never sent
 * (a 500, logged), and a request is parsed with the contract's schemas.
 */
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { apiLimits, type RouteContract, routeList } from '../../../contracts/api.js';
import type { Upload } from '../../../contracts/model.js';
import { quietTelemetry } from '../../../functions/adapters/powertools.js';
import { systemClock } from '../../../functions/adapters/wiring.js';
import type { Ledger } from '../../../functions/core/ports.js';
import { type ApiDeps, createApiHandler } from '../../../functions/handlers/api-handler.js';
import { httpEvent, lambdaContext } from '../../support/api-events.js';
import { RecordingMetrics } from '../../support/domain.js';

const committed: Upload = {
  uploadId: '467bcecd-fa44-4700-afaf-697141a52797',
  path: 'photos/a.jpg',
  sha256: 'a'.repeat(64),
  size: 5,
  contentType: 'image/jpeg',
  status: 'committed',
  version: 1,
  createdAt: '2025-05-04T10:15:30.120Z',
  updatedAt: '2025-05-04T10:15:31.120Z',
};

/** An API whose ledger holds one upload record, as given; nothing else is reached. */
function apiWith(record: Record<string, unknown>) {
  const ledger = { getUpload: async () => record } as unknown as Ledger;
  const deps = {
    ledger,
    clock: systemClock,
    targets: [],
    feedShards: 4,
    telemetry: quietTelemetry(new RecordingMetrics()),
  } as unknown as ApiDeps;
  const handler = createApiHandler(deps);
  return async (path: string) => {
    const result = await handler(httpEvent('GET', path), lambdaContext('api'));
    return { status: result.statusCode, body: JSON.parse(String(result.body)) };
  };
}

describe('the API against contracts/api.ts', () => {
  it('sends an answer the contract allows', async () => {
    const get = apiWith({ ...committed });
    expect(await get(`/v1/uploads/${committed.uploadId}`)).toEqual({ status: 200, body: committed });
  });

  it('does not send an answer the contract does not allow: a field it does not know is a 500', async () => {
    const get = apiWith({ ...committed, ownerEmail: 'someone@example.com' });
    const answer = await get(`/v1/uploads/${committed.uploadId}`);
    expect(answer).toEqual({
      status: 500,
      body: { error: { code: 'internal', message: 'internal error; the request may be retried' } },
    });
  });

  it('refuses a path parameter the contract refuses, naming it', async () => {
    const get = apiWith({ ...committed });
    const answer = await get('/v1/uploads/not_an_id');
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'invalid', field: 'uploadId' });
  });
});

/** An API that reaches nothing (a route's input is refused before the ledger is asked). */
const handler = createApiHandler({
  ledger: {} as Ledger,
  clock: systemClock,
  targets: [],
  feedShards: 4,
  telemetry: quietTelemetry(new RecordingMetrics()),
} as unknown as ApiDeps);

/** A value for each query parameter a route requires (GET /v1/paths: `path`): then only the unknown one is refused. */
const requiredQuery = (route: RouteContract): Record<string, string> =>
  Object.fromEntries(
    Object.entries(route.query?.shape ?? {})
      .filter(([, schema]) => !(schema as z.ZodType).safeParse(undefined).success)
      .map(([name]) => [name, 'photos/a.jpg']),
  );

/** A route's path template with its parameters filled in. */
const concrete = (template: string) =>
  template.replace('{id}', committed.uploadId).replace('{partNumber}', '1').replace('{path}', 'photos/a.jpg');

describe('an unknown query parameter, on every route', () => {
  // docs/api.md: "any query parameter on a route that takes none" is 400 `invalid`. The contract
  // lists every status a route answers, and docs/openapi.json is held to it: a client generated
  // from either must expect that 400 on GET /v1/health, /v1/limits and /v1/targets too.
  it.each(routeList.map((route) => [`${route.method} ${route.path}`, route] as const))(
    '%s answers 400 invalid naming it, a status its contract lists',
    async (_name, route) => {
      const result = await handler(
        httpEvent(route.method, concrete(route.path), { query: { ...requiredQuery(route), zz: '1' } }),
        lambdaContext('api'),
      );
      expect(result.statusCode).toBe(400);
      expect(JSON.parse(String(result.body)).error).toMatchObject({ code: 'invalid', field: 'zz' });
      expect(Object.keys(route.responses)).toContain('400');
    },
  );
});

describe('a request body over limits.maxRequestBodyBytes, on every route that takes one', () => {
  // GET /v1/limits publishes the bound; the local front enforced it, the Lambda did not, so on AWS
  // (API Gateway takes 10 MB) a client keeping to the published limit and one ignoring it met two
  // APIs (probe limits). Valid JSON, so only the size can refuse it.
  const oversized = JSON.stringify({ padding: 'x'.repeat(apiLimits.maxRequestBodyBytes) });
  const withBody = routeList.filter((route) => 'body' in route);

  it.each(withBody.map((route) => [`${route.method} ${route.path}`, route] as const))(
    '%s answers 413 payload_too_large naming the body, a status its contract lists',
    async (_name, route) => {
      for (const isBase64Encoded of [false, true]) {
        const event = httpEvent(route.method, concrete(route.path), {
          rawBody: isBase64Encoded ? Buffer.from(oversized).toString('base64') : oversized,
        });
        const result = await handler({ ...event, isBase64Encoded }, lambdaContext('api'));
        expect(result.statusCode).toBe(413);
        expect(JSON.parse(String(result.body)).error).toMatchObject({
          code: 'payload_too_large',
          field: 'body',
        });
      }
      expect(Object.keys(route.responses)).toContain('413');
    },
  );
});
