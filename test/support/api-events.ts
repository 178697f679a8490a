/** Typed API Gateway HTTP API (payload 2.0) events, shaped as AWS documents them. */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

export function httpEvent(
  method: string,
  rawPath: string,
  options: {
    body?: unknown;
    rawBody?: string;
    query?: Record<string, string>;
    headers?: Record<string, string>;
    /** `requestContext.authorizer`, as API Gateway's authorizer fills it (iamAuthorizer, jwtAuthorizer). */
    authorizer?: Record<string, unknown>;
  } = {},
): APIGatewayProxyEventV2 {
  const rawQueryString = new URLSearchParams(options.query ?? {}).toString();
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers: { 'content-type': 'application/json', host: 'api.example.com', ...options.headers },
    ...(options.query ? { queryStringParameters: options.query } : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'api-id',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'vitest' },
      requestId: `req-${Math.random().toString(36).slice(2)}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
      ...(options.authorizer ? { authorizer: options.authorizer } : {}),
    } as APIGatewayProxyEventV2['requestContext'],
    isBase64Encoded: false,
    ...(body === undefined ? {} : { body }),
  };
}

/**
 * What the IAM authorizer puts in `requestContext.authorizer` for a caller signing as `userArn`
 * (a role session here); `cognitoIdentityId` for credentials of a Cognito identity pool, whose
 * callers all share the pool's role and session name.
 */
export function iamAuthorizer(userArn: string, cognitoIdentityId?: string) {
  const session = userArn.split('/').at(-1) ?? 'session';
  return {
    iam: {
      accessKey: 'ASIAEXAMPLEACCESSKEY',
      accountId: '123456789012',
      callerId: `AROAEXAMPLEROLEID:${session}`,
      cognitoIdentity:
        cognitoIdentityId === undefined
          ? null
          : {
              amr: ['authenticated'],
              identityId: cognitoIdentityId,
              identityPoolId: 'us-east-1:11111111-2222-3333-4444-555555555555',
            },
      principalOrgId: null,
      userArn,
      userId: `AROAEXAMPLEROLEID:${session}`,
    },
  };
}

/** What the JWT authorizer puts in `requestContext.authorizer` for a token of `sub`. */
export function jwtAuthorizer(sub: string, iss = 'https://idp.example.com/') {
  return {
    principalId: '',
    integrationLatency: 0,
    jwt: {
      claims: { iss, sub, aud: 'media-mirror', exp: '1893456000', iat: '1893452400', scope: 'mirror/write' },
      scopes: ['mirror/write'],
    },
  };
}

export function lambdaContext(functionName = 'test'): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: `req-${Math.random().toString(36).slice(2)}`,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
