/**
 * A `RequestSigner` from a SigV4 signer (`@smithy/signature-v4`'s `SignatureV4`, which the caller
 * brings: the client ships no AWS code), for an API behind API Gateway's IAM authorizer. The CLI's
 * `--auth iam` (cli/iam-auth.ts) and a page (docs/browser.md, "Tokens") share it.
 */
import type { RequestSigner, SignableRequest } from './api.ts';
import { type ApiClock, apiClock } from './api-clock.ts';

/** The request shape `SignatureV4.sign` takes (an `HttpRequest` of `@smithy/types`). */
export interface SigV4Request {
  readonly method: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port?: number;
  readonly path: string;
  readonly query: Record<string, string | string[]>;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}

/** What of `SignatureV4` this needs. */
export interface SigV4Signer {
  sign(request: SigV4Request, options: { signingDate: Date }): Promise<{ headers: Record<string, string> }>;
}

/**
 * Signs each request to `apiUrl`'s origin (no other: a content link's redirect goes to S3 with its
 * own signature), dated by `clock`, which each answer's `Date` corrects (web/client/api-clock.ts).
 */
export function sigV4RequestSigner(
  signer: SigV4Signer,
  apiUrl: string,
  clock: ApiClock = apiClock(),
): RequestSigner {
  const origin = new URL(apiUrl).origin;
  const sign = async ({ method, url, headers, body }: SignableRequest) => {
    const target = new URL(url);
    if (target.origin !== origin) return {};
    const query: Record<string, string | string[]> = {};
    for (const [name, value] of target.searchParams) {
      const held = query[name];
      query[name] = held === undefined ? value : [...(Array.isArray(held) ? held : [held]), value];
    }
    const signed = await signer.sign(
      {
        method,
        protocol: target.protocol,
        hostname: target.hostname,
        ...(target.port === '' ? {} : { port: Number(target.port) }),
        // As sent (each segment percent-encoded once); the signer encodes it once more, as API Gateway expects.
        path: target.pathname,
        query,
        headers: { ...headers, host: target.host },
        ...(body === undefined ? {} : { body }),
      },
      { signingDate: clock.now() },
    );
    const { host: _host, ...added } = signed.headers;
    return added;
  };
  return Object.assign(sign, { observeDate: clock.observeDate });
}
