/**
 * The deployment's limits on a claim (`GET /v1/limits` publishes them): the API's own check of
 * `POST /v1/uploads`, and the page's and the Uppy plugin's before a file is hashed, so both say
 * the same thing. Hashing a file the claim then refuses cost minutes for a multi-GiB one.
 */
import { contentTypeAllowed } from './content-type.ts';

/** The limits a claim is held to, as `GET /v1/limits` answers them. */
export interface ClaimLimits {
  readonly maxUploadBytes: number;
  readonly contentTypes: readonly string[];
}

/** Why the API refuses such a claim: its error code, HTTP status, field and message. */
export interface ClaimLimitRefusal {
  readonly code: 'too_large' | 'unsupported_content_type';
  readonly status: 413 | 415;
  readonly field: 'size' | 'contentType';
  readonly message: string;
}

/** The API's refusal of a claim of `size` bytes of `contentType` under `limits`; undefined: within them. */
export function claimLimitRefusal(
  claim: { readonly size: number; readonly contentType: string },
  limits: ClaimLimits,
): ClaimLimitRefusal | undefined {
  if (claim.size > limits.maxUploadBytes) {
    const message = `size must be at most ${limits.maxUploadBytes} bytes`;
    return { code: 'too_large', status: 413, field: 'size', message };
  }
  if (!contentTypeAllowed(claim.contentType, limits.contentTypes)) {
    const message = `contentType ${claim.contentType} is not accepted: it must be one of ${limits.contentTypes.join(', ')}`;
    return { code: 'unsupported_content_type', status: 415, field: 'contentType', message };
  }
  return undefined;
}
