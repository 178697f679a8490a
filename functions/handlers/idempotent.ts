/** The HTTP side of Idempotency-Key (core/idempotency.ts): read the header, answer a replay or a busy key. */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { IdempotencyInProgressError } from '../core/errors.js';
import {
  type Answer,
  IDEMPOTENCY_HEADER,
  type IdempotencyDeps,
  parseIdempotencyKey,
  runOnce,
} from '../core/idempotency.js';

export interface HttpAnswer extends Answer {
  readonly headers: Record<string, string>;
}

/** The request's Idempotency-Key, checked; undefined when it has none. */
export function idempotencyKeyOf(event: Pick<APIGatewayProxyEventV2, 'headers'>): string | undefined {
  // API Gateway (payload 2.0) and the local front hand headers over with lower-case names.
  return parseIdempotencyKey(event.headers?.[IDEMPOTENCY_HEADER.toLowerCase()]);
}

/**
 * Runs `run` at most once per Idempotency-Key (the header is optional). `request` names the route
 * and carries the validated request: the same key with another request is refused. The claim on the
 * key lasts as long as `context`'s invocation may run; a retry meanwhile is answered 409 with
 * `Retry-After` (the seconds until it may take the key over).
 */
export async function answerOnce(
  deps: IdempotencyDeps,
  event: Pick<APIGatewayProxyEventV2, 'headers'>,
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
