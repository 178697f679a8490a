/**
 * What bounds the API on AWS (docs/deploy.md, "Settings worth knowing"): the stage's throttle and
 * the api function's reserved concurrency, so that a bulk import (ingest and replicate functions
 * at their event sources' caps) cannot take the account's concurrency away from the API.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { largestUploadApiCalls, minimumApiRate, type Topology } from '../../contracts/topology.js';
import { apiReservedConcurrency } from '../../lib/constructs/upload-api.js';
import {
  API_LIMITS_CONTEXT,
  buildMirrorApp,
  createMirrorApp,
  type MirrorAppOptions,
} from '../../lib/mirror-app.js';
import { buildTestApp, props, resourcesOfType, TEST_CONTEXT, testTopology } from './fixture.js';

type Json = Record<string, unknown>;

/** The app with extra context, as `cdk deploy -c key=value` gives it (values are strings there). */
function withContext(context: Record<string, unknown>, options: MirrorAppOptions = {}, topology?: Topology) {
  const app = createMirrorApp({ context: { ...TEST_CONTEXT, ...context } });
  return buildMirrorApp(topology ?? testTopology(), { app, nag: false, ...options });
}

/** The api function's reserved concurrency and the stage's throttle, as the template says. */
function limitsOf(mirror: ReturnType<typeof buildTestApp>) {
  const template = Template.fromStack(mirror.home);
  const apiId = mirror.home.getLogicalId(mirror.home.api.handler.function.node.defaultChild as never);
  const functions = resourcesOfType(template, 'AWS::Lambda::Function');
  const reserved = Object.fromEntries(
    Object.entries(functions)
      .map(([id, fn]) => [id, props(fn).ReservedConcurrentExecutions] as const)
      .filter(([, n]) => n !== undefined),
  );
  const stages = Object.values(resourcesOfType(template, 'AWS::ApiGatewayV2::Stage'));
  expect(stages).toHaveLength(1);
  const throttle = (props(stages[0] as Json).DefaultRouteSettings ?? {}) as Json;
  return {
    apiId,
    reserved,
    rate: throttle.ThrottlingRateLimit,
    burst: throttle.ThrottlingBurstLimit,
  };
}

describe('reserved concurrency of the api function', () => {
  it('by default 25 (50 requests/s at 0.5 s each), and no other function reserves any', () => {
    const limits = limitsOf(buildTestApp(testTopology(), { nag: false }));
    expect(limits.reserved).toEqual({ [limits.apiId]: 25 });
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 50, burst: 100 });
  });

  it('follows the stage rate it must serve, never below 10', () => {
    expect(apiReservedConcurrency()).toBe(25);
    expect(apiReservedConcurrency(200)).toBe(100);
    expect(apiReservedConcurrency(5)).toBe(10);
    expect(apiReservedConcurrency(33)).toBe(17);
  });
});

describe('API limits from the CDK context (`-c mirror:apiThrottleRateLimit=200`)', () => {
  it('a rate from the context sizes the throttle and the reserved concurrency with it', () => {
    const limits = limitsOf(
      withContext({
        [API_LIMITS_CONTEXT.throttleRateLimit]: '200',
        [API_LIMITS_CONTEXT.throttleBurstLimit]: 400,
      }),
    );
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 200, burst: 400 });
    expect(limits.reserved).toEqual({ [limits.apiId]: 100 });
  });

  it('an explicit reserved concurrency wins over the derived one', () => {
    const limits = limitsOf(withContext({ [API_LIMITS_CONTEXT.reservedConcurrency]: '40' }));
    expect(limits.reserved).toEqual({ [limits.apiId]: 40 });
    expect(limits.rate).toBe(50);
  });

  it('`none` reserves nothing (an account whose concurrency quota is too low to reserve any)', () => {
    const limits = limitsOf(withContext({ [API_LIMITS_CONTEXT.reservedConcurrency]: 'none' }));
    expect(limits.reserved).toEqual({});
    expect(limits.rate).toBe(50);
  });

  it('options given in code win over the context', () => {
    const limits = limitsOf(
      withContext(
        { [API_LIMITS_CONTEXT.reservedConcurrency]: '40' },
        { apiLimits: { reservedConcurrency: 12, throttleRateLimit: 20 } },
      ),
    );
    expect(limits.reserved).toEqual({ [limits.apiId]: 12 });
    expect(limits.rate).toBe(20);
  });

  it('a value that is not a positive number fails the synth, naming the key', () => {
    expect(() => withContext({ [API_LIMITS_CONTEXT.throttleRateLimit]: 'fast' })).toThrow(
      /mirror:apiThrottleRateLimit: expected a positive number, got "fast"/,
    );
    expect(() => withContext({ [API_LIMITS_CONTEXT.reservedConcurrency]: '0' })).toThrow(
      /mirror:apiReservedConcurrency: expected a positive number/,
    );
  });

  it('a reserved concurrency that is not a whole number fails, naming the prop', () => {
    expect(() => withContext({}, { apiLimits: { reservedConcurrency: 2.5 } })).toThrow(
      /reservedConcurrency: 2.5 is not a whole number of at least 1/,
    );
    expect(() => withContext({}, { apiLimits: { throttleBurstLimit: 0 } })).toThrow(
      /throttleBurstLimit: 0 is not a whole number of at least 1/,
    );
  });
});

describe("API limits from mirror.config.json (the topology's `api` settings)", () => {
  const TiB = 1024 ** 4;

  it("a rate, burst and reservation set in the topology are the stage's and the function's", () => {
    const limits = limitsOf(
      withContext(
        {},
        {},
        testTopology({
          api: { auth: 'iam', throttleRateLimit: 120, throttleBurstLimit: 300, reservedConcurrency: 40 },
        }),
      ),
    );
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 120, burst: 300 });
    expect(limits.reserved).toEqual({ [limits.apiId]: 40 });
  });

  it('a rate alone brings its burst (twice it) and its reservation (0.5 s per request)', () => {
    const limits = limitsOf(
      withContext({}, {}, testTopology({ api: { auth: 'iam', throttleRateLimit: 120 } })),
    );
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 120, burst: 240 });
    expect(limits.reserved).toEqual({ [limits.apiId]: 60 });
  });

  it('`"none"` in the topology reserves nothing', () => {
    const limits = limitsOf(
      withContext({}, {}, testTopology({ api: { auth: 'iam', reservedConcurrency: 'none' } })),
    );
    expect(limits.reserved).toEqual({});
  });

  it('parts presigned and recorded in batches: the largest upload S3 allows needs 6 requests/s, below the default', () => {
    // 5 TiB in 9,987 parts of 525 MiB, 64 a call: 157 batches, 2 calls each, 32 more: 346 calls.
    expect(largestUploadApiCalls({ maxUploadBytes: 5 * TiB, presignTtlSeconds: 60 })).toEqual({
      parts: 9987,
      partBytes: 525 * 1024 ** 2,
      calls: 346,
    });
    // Within 60 s that is 6 requests/s; 50 GiB in 6,400 parts of 8 MiB at 900 s: 232 calls, 1.
    expect(minimumApiRate({ maxUploadBytes: 5 * TiB, presignTtlSeconds: 60 })).toBe(6);
    expect(minimumApiRate({ maxUploadBytes: 50 * 1024 ** 3, presignTtlSeconds: 900 })).toBe(1);
    const limits = limitsOf(
      withContext({}, {}, testTopology({ limits: { maxUploadBytes: 5 * TiB, presignTtlSeconds: 60 } })),
    );
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 50, burst: 100 });
    expect(limits.reserved).toEqual({ [limits.apiId]: 25 });
  });

  it('a topology rate that cannot carry the largest upload is refused with the rate it needs', () => {
    // 50 GiB in 6,400 parts of 8 MiB, 64 a call: 232 calls within 60 s is 4 requests/s.
    expect(() =>
      testTopology({
        limits: { maxUploadBytes: 50 * 1024 ** 3, presignTtlSeconds: 60 },
        api: { auth: 'iam', throttleRateLimit: 3 },
      }),
    ).toThrow(
      /api\.throttleRateLimit: 3 requests\/s cannot carry the 232 API calls of an upload of limits\.maxUploadBytes \(53687091200 bytes: 6400 parts of 8 MiB, presigned and recorded 64 a call[\s\S]*set at least 4/,
    );
  });

  it('the context overrides the topology key by key; a context rate too low for the largest upload is refused', () => {
    const topology = testTopology({
      limits: { maxUploadBytes: 50 * 1024 ** 3, presignTtlSeconds: 60 },
      api: { auth: 'iam', throttleRateLimit: 300, reservedConcurrency: 90 },
    });
    const limits = limitsOf(withContext({ [API_LIMITS_CONTEXT.throttleRateLimit]: '400' }, {}, topology));
    expect({ rate: limits.rate, burst: limits.burst }).toEqual({ rate: 400, burst: 800 });
    expect(limits.reserved).toEqual({ [limits.apiId]: 90 });
    expect(() => withContext({ [API_LIMITS_CONTEXT.throttleRateLimit]: '3' }, {}, topology)).toThrow(
      /mirror:apiThrottleRateLimit: 3 requests\/s cannot carry[\s\S]*set at least 4/,
    );
  });

  it('values the API could not run with are refused, naming the field', () => {
    expect(() => testTopology({ api: { auth: 'iam', throttleRateLimit: 0 } })).toThrow(
      /api\.throttleRateLimit: a positive number of requests per second/,
    );
    expect(() => testTopology({ api: { auth: 'iam', throttleBurstLimit: 2.5 } })).toThrow(
      /api\.throttleBurstLimit: a whole number of requests/,
    );
    expect(() => testTopology({ api: { auth: 'iam', reservedConcurrency: 0 } })).toThrow(
      /api\.reservedConcurrency/,
    );
  });
});
