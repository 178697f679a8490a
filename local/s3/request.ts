/**
 * What a request addresses (path-style `/<bucket>/<key>`, the key taken literally) and
 * who sent it (SigV4 through the shared verifier, local/sigv4.ts).
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SigV4Credentials, SigV4Request, SigV4Result } from '../sigv4.ts';
import { type ChunkSigning, headerValue } from './body.ts';
import { errors, S3Error } from './xml.ts';

export interface Target {
  readonly bucket: string | undefined;
  /** Decoded once, never normalised: `a/../b` is the key `a/../b`. */
  readonly key: string | undefined;
  readonly query: URLSearchParams;
  /** The path as sent, for error documents. */
  readonly resource: string;
}

/** A query string, percent-decoded; a parameter without `=` (`?uploads`) is the empty string. */
function parseQuery(raw: string): URLSearchParams {
  const query = new URLSearchParams();
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    query.append(
      decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq)),
      eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1)),
    );
  }
  return query;
}

/**
 * Splits `req.url` without `new URL()`, which would resolve `.` and `..` segments.
 * Query values without `=` (`?uploads`) are the empty string.
 */
export function parseTarget(url: string): Target {
  if (!url.startsWith('/')) throw new S3Error(400, 'InvalidURI', "Couldn't parse the specified URI.");
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  let path: string;
  let query: URLSearchParams;
  try {
    path = decodeURIComponent(rawPath);
    query = parseQuery(q < 0 ? '' : url.slice(q + 1));
  } catch {
    throw new S3Error(400, 'InvalidURI', "Couldn't parse the specified URI.");
  }
  const slash = path.indexOf('/', 1);
  const bucket = slash < 0 ? path.slice(1) : path.slice(1, slash);
  const key = slash < 0 ? undefined : path.slice(slash + 1);
  if (bucket !== '' && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new S3Error(400, 'InvalidBucketName', 'The specified bucket is not valid.', { BucketName: bucket });
  }
  if (key !== undefined && Buffer.byteLength(key) > 1024) {
    throw new S3Error(400, 'KeyTooLongError', 'Your key is too long');
  }
  return { bucket: bucket || undefined, key: key || undefined, query, resource: rawPath };
}

/** The verifier's signature: local/sigv4.ts's `verifySigV4` with the S3 expectation bound. */
export type RequestVerifier = (request: SigV4Request) => Promise<SigV4Result>;

/**
 * A signature binds the headers it names: S3 refuses any other `x-amz-*` header (metadata, an
 * ACL, tags, a copy source) rather than let a URL's holder, or whatever handled a request after it
 * was signed, add what its signer never allowed. `x-amz-content-sha256` is the one S3 takes unsigned.
 */
function refuseUnsignedAmzHeaders(req: IncomingMessage, signedHeaders: readonly string[]): void {
  const signed = new Set(signedHeaders);
  const unsigned = Object.keys(req.headers).filter(
    (name) => name.startsWith('x-amz-') && name !== 'x-amz-content-sha256' && !signed.has(name),
  );
  if (unsigned.length > 0) {
    throw new S3Error(
      403,
      'AccessDenied',
      'There were headers present in the request which were not signed',
      {
        HeadersNotSigned: unsigned.join(', '),
      },
    );
  }
}

/**
 * The headers as SigV4 signs them: a header sent more than once is all its values, each trimmed,
 * joined by commas (AWS's canonical headers). Node's `req.headers` keeps only the first
 * Content-Type, Content-Length or Host (and joins others with ", "): checked on that, a URL signed
 * for one type passed with a second one added, which S3 refuses (SignatureDoesNotMatch).
 */
function everyValue(req: IncomingMessage): Record<string, string> {
  // No prototype: a header named `constructor` is that header, not Object's member.
  const out: Record<string, string> = Object.create(null);
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = (raw[i + 1] as string).trim();
    const earlier = out[name];
    out[name] = earlier === undefined ? value : `${earlier},${value}`;
  }
  return out;
}

/**
 * Checks the request's signature; resolves with what a signed streaming body needs to
 * check its chunk signatures, or throws the refusal in S3's shape.
 */
export async function authenticate(
  req: IncomingMessage,
  verify: RequestVerifier,
  credentials: SigV4Credentials,
  bucketRegion: string | undefined,
): Promise<ChunkSigning | undefined> {
  const result = await verify({ method: req.method ?? 'GET', url: req.url ?? '/', headers: everyValue(req) });
  if (!result.ok) throw new S3Error(result.status, result.code, result.message);
  if (bucketRegion !== undefined && result.region !== bucketRegion) {
    // S3's answer to a scope for another region than the bucket's (a copy is signed for its
    // destination's): 400, naming the region to sign for.
    const wrong = `the region '${result.region}' is wrong; expecting '${bucketRegion}'`;
    throw result.presigned
      ? new S3Error(
          400,
          'AuthorizationQueryParametersError',
          `Error parsing the X-Amz-Credential parameter; ${wrong}`,
          {
            Region: bucketRegion,
          },
        )
      : new S3Error(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; ${wrong}`, {
          Region: bucketRegion,
        });
  }
  // Header-signed requests too: S3 asks every x-amz-* header sent to be signed either way.
  refuseUnsignedAmzHeaders(req, result.signedHeaders);
  const authorization = headerValue(req.headers, 'authorization');
  const datetime = headerValue(req.headers, 'x-amz-date');
  const signature = /Signature=([0-9a-f]{64})/.exec(authorization ?? '')?.[1];
  const scope = /Credential=[^/,]+\/([^,]+)/.exec(authorization ?? '')?.[1];
  if (result.presigned || !signature || !datetime || !scope) return undefined;
  // Chunk signatures chain from the header's signature with the same signing key; the
  // SDK's signer computes them (signString), as it does when it signs the chunks.
  const signer = new SignatureV4({
    service: 's3',
    region: result.region,
    credentials: { ...credentials },
    sha256: Sha256,
    applyChecksum: false,
  });
  return {
    seedSignature: signature,
    datetime,
    scope,
    sign: (stringToSign) =>
      signer.sign(stringToSign, {
        signingDate: result.signingDate,
        signingRegion: result.region,
        signingService: 's3',
      }),
  };
}

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: SourceData) =>
  typeof data === 'string'
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);

/** SHA-256 / HMAC-SHA-256 in the shape the SDK's signer takes. */
class Sha256 {
  #hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.digest()));
  }
}

/** The `x-amz-meta-*` headers of a request, names lower-case without the prefix. */
export function userMetadata(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  let size = 0;
  for (const [name, value] of Object.entries(req.headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : value;
    size += name.length - 11 + Buffer.byteLength(v);
    out.push([name.slice(11), v]);
  }
  if (size > 2048) {
    throw new S3Error(
      400,
      'MetadataTooLarge',
      'Your metadata headers exceed the maximum allowed metadata size.',
    );
  }
  return out;
}

const STORED_HEADERS = [
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'expires',
];

/** Representation headers S3 keeps with an object. `aws-chunked` is framing, not content. */
export function storedHeaders(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  for (const name of STORED_HEADERS) {
    let value = headerValue(req.headers, name);
    if (name === 'content-encoding' && value !== undefined) {
      value = value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '' && s !== 'aws-chunked')
        .join(',');
    }
    if (value) out.push([name, value]);
  }
  return out;
}

/** `versionId` of the query, refusing an empty one as S3 does. */
export function versionIdParam(query: URLSearchParams): string | undefined {
  const value = query.get('versionId');
  if (value === null) return undefined;
  if (value === '') throw errors.invalidArgument('Version id cannot be the empty string', 'versionId', '');
  return value;
}
