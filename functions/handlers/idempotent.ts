/** The HTTP side of Idempotency-Key (core/idempotency.ts): read the header, answer a replay or a busy key. */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { IdempotencyInProgressError } from '../core/errors.js';
import {
  type Answer,
  callerScopedKey,
  IDEMPOTENCY_HEADER,
  type IdempotencyDeps,
  parseIdempotencyKey,
  runOnce,
} from '../core/idempotency.js';

export interface HttpAnswer extends Answer {
  readonly headers: Record<string, string>;
}

/** What API Gateway's authorizer tells of the caller (payload 2.0): IAM's `iam`, or JWT's `jwt`. */
interface AuthorizedContext {
  readonly authorizer?: {
    readonly iam?: {
      readonly userArn?: string;
      readonly cognitoIdentity?: { readonly identityId?: string } | null;
    };
    readonly jwt?: { readonly claims?: Readonly<Record<string, unknown>> };
  } | null;
}

/**
 * Who is calling, as the API's authorizer says: an IAM principal (its ARN, and its Cognito
 * identity: an identity pool's callers all sign as one role and session name), or a JWT's issuer
 * and subject. Undefined without an authorizer (the local stack's bearer token: one identity).
 */
export function callerOf(event: Pick<APIGatewayProxyEventV2, 'requestContext'>): string | undefined {
  const { authorizer } = event.requestContext as AuthorizedContext;
  if (authorizer?.iam) {
    const { userArn, cognitoIdentity } = authorizer.iam;
    return JSON.stringify(['iam', userArn ?? null, cognitoIdentity?.identityId ?? null]);
  }
  if (authorizer?.jwt) {
    const claims = authorizer.jwt.claims ?? {};
    return JSON.stringify(['jwt', claims.iss ?? null, claims.sub ?? null]);
  }
  return undefined;
}

/**
 * The key the request is remembered under: its Idempotency-Key, checked, and its caller's
 * (callerScopedKey); undefined when it has none.
 */
export function idempotencyKeyOf(
  event: Pick<APIGatewayProxyEventV2, 'headers' | 'requestContext'>,
): string | undefined {
  // API Gateway (payload 2.0) and the local front hand headers over with lower-case names.
  const key = parseIdempotencyKey(event.headers?.[IDEMPOTENCY_HEADER.toLowerCase()]);
  return callerScopedKey(callerOf(event), key);
}

/**
 * Runs `run` at most once per Idempotency-Key and caller (the header is optional). `request` names
 * the route and carries the validated request: the same key with another request is refused. The
 * claim on the key lasts as long as `context`'s invocation may run; a retry meanwhile is answered
 * 409 with `Retry-After` (the seconds until it may take the key over).
 */
export async function answerOnce(
  deps: IdempotencyDeps,
  event: Pick<APIGatewayProxyEventV2, 'headers' | 'requestContext'>,
  request: Record<string, unknown> & { route: string },
  run: () => Promise<Answer>,
  context?: Pick<Context, 'getRemainingTimeInMillis'> | undefined,
): Promise<HttpAnswer> {
  const key = idempotencyKeyOf(event);
  try {
    const answer = await runOnce(deps, key, request, run, {
      remainingMs: context?.getRemainingTimeInMillis(),
    });
    return {
      statusCode: answer.statusCode,
      body: answer.body,
      headers: answer.replayed ? { 'idempotent-replayed': 'true' } : {},
    };
  } catch (error) {
    if (!(error instanceof IdempotencyInProgressError)) throw error;
    return {
      statusCode: error.status,
      body: { error: { code: error.code, message: error.message, field: error.field } },
      headers: { 'retry-after': String(error.retryAfterSeconds) },
    };
  }
}
