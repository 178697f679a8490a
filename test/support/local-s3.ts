/**
 * Helpers for tests of the local S3 (local/s3/): the two buckets they start from, and SigV4 header
 * signing of a raw request as the SDK signs one, for requests the SDK would never send (a body
 * other than the signed one, a body held back).
 */
import { createHash, createHmac } from 'node:crypto';
import { CreateBucketCommand, PutBucketVersioningCommand, type S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { LOCAL_CREDENTIALS } from '../../local/emulators.ts';

type SourceData = string | ArrayBuffer | ArrayBufferView;
class Sha256 {
  #h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: SourceData) {
    this.#h =
      secret === undefined ? createHash('sha256') : createHmac('sha256', Buffer.from(secret as string));
  }
  update(d: SourceData) {
    this.#h.update(typeof d === 'string' ? d : Buffer.from(d as ArrayBuffer));
  }
  async digest() {
    return new Uint8Array(this.#h.digest());
  }
}

/** The headers of a request signed with the local stack's keys (`host` among them). */
export async function signS3Headers(
  endpoint: string,
  request: {
    readonly method: string;
    readonly path: string;
    readonly headers: Record<string, string>;
    readonly query?: Record<string, string>;
    readonly region?: string;
  },
): Promise<Record<string, string>> {
  const url = new URL(endpoint);
  const signer = new SignatureV4({
    service: 's3',
    region: request.region ?? 'us-east-1',
    credentials: { ...LOCAL_CREDENTIALS },
    sha256: Sha256,
    uriEscapePath: false,
  });
  const signed = await signer.sign({
    method: request.method,
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: request.path,
    headers: { host: url.host, ...request.headers },
    query: request.query ?? {},
  });
  return signed.headers;
}

/** The buckets the tests start from: `plain` (no versions) and `versioned`. */
export async function createPlainAndVersionedBuckets(client: S3Client): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: 'plain' }));
  await client.send(new CreateBucketCommand({ Bucket: 'versioned' }));
  await client.send(
    new PutBucketVersioningCommand({ Bucket: 'versioned', VersioningConfiguration: { Status: 'Enabled' } }),
  );
}
