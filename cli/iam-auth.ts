/**
 * `--auth iam`: the CLI against an API behind API Gateway's IAM authorizer (the topology's
 * `api.auth: "iam"`, the shipped default). Each request is signed with SigV4 for `execute-api`
 * with the caller's AWS credentials (the keys in the environment, else the SDK's default chain:
 * profile, SSO, instance role), as the AWS CLI signs its own calls. Loaded only when asked for: `--help` and the token
 * path never load the SDK.
 */

import type { RequestSigner } from '../web/client/api.ts';
import { apiClock } from '../web/client/api-clock.ts';
import { sigV4RequestSigner } from '../web/client/sigv4-signer.ts';
import { envCredentials } from './aws-credentials.ts';
import { ConfigError } from './errors.ts';

/** `https://<id>.execute-api.<region>.amazonaws.com[.cn]/...`: the region is in the host. */
const EXECUTE_API_HOST = /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

/**
 * The region to sign for: the API's own host names it; a custom domain needs `AWS_REGION` (or
 * `AWS_DEFAULT_REGION`).
 */
export function signingRegion(apiUrl: string, env: NodeJS.ProcessEnv): string {
  const fromHost = EXECUTE_API_HOST.exec(new URL(apiUrl).hostname)?.[1];
  const region = fromHost ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (region === undefined || region.trim() === '') {
    throw new ConfigError(
      `--auth iam: cannot tell the API's region from ${apiUrl}: set AWS_REGION (the region the API is deployed in)`,
    );
  }
  return region.trim();
}

/** A signer for every request to `apiUrl` (no other host: a content link's redirect goes to S3 unsigned). */
export async function iamSigner(
  apiUrl: string,
  env: NodeJS.ProcessEnv,
  now: () => number = Date.now,
): Promise<RequestSigner> {
  const region = signingRegion(apiUrl, env);
  const [{ SignatureV4 }, { defaultProvider }, { SigningSha256 }] = await Promise.all([
    import('@smithy/signature-v4'),
    import('@aws-sdk/credential-provider-node'),
    import('../common/sha256-node.ts'),
  ]);
  const signer = new SignatureV4({
    service: 'execute-api',
    region,
    credentials: envCredentials(env) ?? defaultProvider(),
    sha256: SigningSha256,
    uriEscapePath: true,
    applyChecksum: true,
  });
  // A laptop's clock minutes off (or stepped by NTP mid-run) would otherwise have every request
  // refused as "Signature expired"; the clock follows the API's as each answer tells it.
  return sigV4RequestSigner(signer, apiUrl, apiClock(now));
}
