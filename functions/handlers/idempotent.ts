/** The HTTP side of Idempotency-Key (core/idempotency.ts): read the header, answer a replay or a busy key. */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
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

/**
 * Runs `run` at most once per Idempotency-Key (the header is optional). `request` names the route
 * and carries the validated request: the same key with another request is refused.
 */
export async function answerOnce(
  deps: IdempotencyDeps,
  event: Pick<APIGatewayProxyEventV2, 'headers'>,
  request: Record<string, unknown> & { route: string },
  run: () => Promise<Answer>,
): Promise<HttpAnswer> {
  // API Gateway (payload 2.0) and the local front hand headers over with lower-case names.
  const key = parseIdempotencyKey(event.headers?.[IDEMPOTENCY_HEADER.toLowerCase()]);
  try {
    const answer = await runOnce(deps, key, request, run);
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
