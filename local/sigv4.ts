/**
 * One SigV4 verifier for every local port (S3, DynamoDB, SQS).
 *
 * The signature is recomputed with the AWS SDK's own signer (`@smithy/signature-v4`),
 * from the request as received, and compared in constant time: whatever the SDK signs,
 * the local stack accepts, and nothing else. A hand-written canonicalisation would drift
 * from the SDK's in exactly the corners (escaping, hoisted query parameters, header
 * folding) where a bug should show up locally rather than on AWS.
 *
 * Usage:
 *
 *   const result = await verifySigV4(
 *     { method: req.method, url: req.url, headers: req.headers, payloadHash },
 *     { service: 'dynamodb', credentials: LOCAL_CREDENTIALS },
 *   );
 *   if (!result.ok) answer(result.status, result.code, result.message);
 *
 * What it does not do: chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies
 * (only the seed signature over the headers), SigV4a, session tokens (the local
 * credentials have none), IAM policy.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { SigningSha256 } from '../common/sha256-node.ts';

/** The services whose error vocabulary the verifier speaks. */
export type SigV4Service = 's3' | 'dynamodb' | 'sqs' | 'execute-api';

export interface SigV4Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** The request as the port received it. */
export interface SigV4Request {
  readonly method: string;
  /**
   * Path and query exactly as received (Node's `req.url`), percent-encoding preserved:
   * S3 signs the path as sent, the other services sign it escaped once more, and the
   * verifier does what the SDK does for the service.
   */
  readonly url: string;
  /** Header names in any case; repeated headers as arrays (Node's `req.headers`). */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /**
   * The hash the signer put in the canonical request; the caller decides it:
   * - DynamoDB, SQS: hex SHA-256 of the body ({@link sha256Hex});
   * - S3: leave undefined; the `x-amz-content-sha256` header is used as sent
   *   (a hex hash, `UNSIGNED-PAYLOAD` or `STREAMING-*`), and `UNSIGNED-PAYLOAD` for a
   *   presigned URL without one. The caller must still check the body against a hex value.
   */
  readonly payloadHash?: string;
}

export interface SigV4Expectation {
  readonly service: SigV4Service;
  /** The only key pair accepted. */
  readonly credentials: SigV4Credentials;
  /** When set, a credential scope naming another region is refused. */
  readonly region?: string;
  /**
   * Lower-case headers that, when present, must be among the signed ones: the JSON protocols name
   * the operation in `x-amz-target`, which a client that signs only the body could not protect.
   */
  readonly mustSign?: readonly string[];
  /** Defaults to the current time; tests pass a fixed one. */
  readonly now?: Date;
  /**
   * Presigned requests signed longer ago than this are refused as S3 refuses them under the
   * buckets' `s3:signatureAge` policy (lib/constructs/signature-age.ts): 403 AccessDenied.
   * @default none: only the URL's own expiry
   */
  readonly maxPresignedAgeMs?: number;
}

export interface SigV4Accepted {
  readonly ok: true;
  readonly presigned: boolean;
  /** Lower-case names of the headers covered by the signature, in signing order. */
  readonly signedHeaders: readonly string[];
  /** The region of the credential scope. */
  readonly region: string;
  readonly signingDate: Date;
  /** Presigned URLs only: the instant after which the URL is refused. */
  readonly expiresAt?: Date;
}

/**
 * Why a request was refused:
 * - `missing`: neither an `Authorization` header nor `X-Amz-Signature` (anonymous);
 * - `malformed`: present but unreadable (bad algorithm, credential, date, expiry);
 * - `unknown-key`: an access key other than the local one;
 * - `scope`: a credential scope for another service or region, or another day than the request date;
 * - `signature`: the recomputed signature differs;
 * - `expired`: a presigned URL past its expiry (or not valid yet);
 * - `skewed`: an `Authorization`-header request dated more than 15 minutes from now.
 */
export type SigV4Reason =
  | 'missing'
  | 'malformed'
  | 'unknown-key'
  | 'scope'
  | 'signature'
  | 'expired'
  | 'skewed';

export interface SigV4Refused {
  readonly ok: false;
  readonly reason: SigV4Reason;
  /** The service's own error code, e.g. `SignatureDoesNotMatch`. */
  readonly code: string;
  readonly status: number;
  readonly message: string;
}

export type SigV4Result = SigV4Accepted | SigV4Refused;

/** AWS refuses header-signed requests dated further than this from its clock. */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
/** SigV4 presigned URLs live at most a week. */
export const MAX_PRESIGNED_EXPIRES_SECONDS = 7 * 24 * 60 * 60;

const ALGORITHM = 'AWS4-HMAC-SHA256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const CONTENT_SHA256 = 'x-amz-content-sha256';

/**
 * Each service's code for each refusal. DynamoDB answers every one with 400, the others with
 * 403, as on AWS (docs/local-gates.md).
 */
const CODES: Record<SigV4Service, Record<SigV4Reason, string>> = {
  s3: {
    missing: 'AccessDenied',
    malformed: 'AuthorizationHeaderMalformed',
    'unknown-key': 'InvalidAccessKeyId',
    scope: 'AuthorizationHeaderMalformed',
    signature: 'SignatureDoesNotMatch',
    expired: 'AccessDenied',
    skewed: 'RequestTimeTooSkewed',
  },
  dynamodb: {
    missing: 'MissingAuthenticationTokenException',
    malformed: 'IncompleteSignatureException',
    'unknown-key': 'UnrecognizedClientException',
    scope: 'InvalidSignatureException',
    signature: 'InvalidSignatureException',
    expired: 'InvalidSignatureException',
    skewed: 'InvalidSignatureException',
  },
  // API Gateway answers `{"message": ...}` with 403 and no code; these name the refusal for logs.
  'execute-api': {
    missing: 'MissingAuthenticationToken',
    malformed: 'IncompleteSignature',
    'unknown-key': 'UnrecognizedClient',
    scope: 'InvalidSignature',
    signature: 'InvalidSignature',
    expired: 'InvalidSignature',
    skewed: 'InvalidSignature',
  },
  sqs: {
    missing: 'MissingAuthenticationToken',
    malformed: 'IncompleteSignature',
    'unknown-key': 'InvalidClientTokenId',
    scope: 'SignatureDoesNotMatch',
    signature: 'SignatureDoesNotMatch',
    expired: 'RequestExpired',
    skewed: 'RequestExpired',
  },
};

/** The service's error code for a refusal reason. */
export function sigV4ErrorCode(service: SigV4Service, reason: SigV4Reason): string {
  return CODES[service][reason];
}

/** Hex SHA-256, the payload hash DynamoDB and SQS requests sign. */
export function sha256Hex(body: Uint8Array | string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** Verifies a request's SigV4 signature (header or presigned query) against one key pair. */
export async function verifySigV4(request: SigV4Request, expect: SigV4Expectation): Promise<SigV4Result> {
  const refuse = (reason: SigV4Reason, message: string): SigV4Refused => ({
    ok: false,
    reason,
    code: CODES[expect.service][reason],
    status: expect.service === 'dynamodb' ? 400 : 403,
    message,
  });
  const read = readClaim(request, expect, refuse);
  if (!read.ok) return read;
  const { claim, headers, presigned } = read;
  const wrongScope = checkScope(claim, expect, refuse);
  if (wrongScope !== undefined) return wrongScope;
  const unsigned = expect.mustSign?.find((name) => headers.has(name) && !claim.signedHeaders.includes(name));
  if (unsigned !== undefined) {
    return refuse('signature', `the ${unsigned} header must be among the signed headers`);
  }
  const time = checkTime(claim, expect, refuse);
  if (!time.ok) return time;

  const payloadHash =
    request.payloadHash ?? headers.get(CONTENT_SHA256) ?? (presigned ? UNSIGNED_PAYLOAD : undefined);
  if (payloadHash === undefined) {
    return refuse('malformed', `Missing required header for this request: ${CONTENT_SHA256}`);
  }
  let expected: string | undefined;
  try {
    expected = await expectedSignature(request, expect, read, payloadHash);
  } catch (err) {
    return refuse('malformed', `the request cannot be signed: ${(err as Error).message ?? String(err)}`);
  }
  if (expected === undefined || !sameHex(expected, claim.signature)) {
    return refuse(
      'signature',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    );
  }
  return {
    ok: true,
    presigned,
    signedHeaders: claim.signedHeaders,
    region: claim.credential[2],
    signingDate: claim.signingDate,
    ...(time.expiresAt === undefined ? {} : { expiresAt: time.expiresAt }),
  };
}

interface ReadClaim {
  readonly ok: true;
  readonly claim: Claim;
  readonly headers: Map<string, string>;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly presigned: boolean;
}

/** The signature's claim, from the Authorization header or the presigned query (exactly one). */
function readClaim(
  request: SigV4Request,
  expect: SigV4Expectation,
  refuse: Refuse,
): ReadClaim | SigV4Refused {
  const headers = lowerCaseHeaders(request.headers);
  const { path, query } = splitUrl(request.url);
  if (query === undefined) return refuse('malformed', 'the query string is not valid percent-encoding');
  const authorization = headers.get('authorization');
  const presigned = query.has('X-Amz-Signature') || query.has('X-Amz-Algorithm');
  if (authorization !== undefined && presigned) {
    return refuse('malformed', 'only one authentication mechanism is allowed: Authorization header or query');
  }
  if (authorization === undefined && !presigned && query.has('AWSAccessKeyId') && query.has('Signature')) {
    // AWS CLI v1 presigns with Signature Version 2 by default: name the way out, not "Access Denied".
    return refuse(
      'malformed',
      'the authorization mechanism you have provided (Signature Version 2) is not supported: use AWS4-HMAC-SHA256 (AWS CLI v1: aws configure set default.s3.signature_version s3v4)',
    );
  }
  if (authorization === undefined && !presigned) {
    return refuse(
      'missing',
      expect.service === 's3' ? 'Access Denied' : 'Request is missing Authentication Token',
    );
  }
  const claim = presigned
    ? readQueryClaim(query, refuse)
    : readHeaderClaim(authorization ?? '', headers, refuse);
  if (!claim.ok) return claim;
  return { ok: true, claim, headers, path, query, presigned };
}

/** The key, service, region and day the credential names must be the expected ones. */
function checkScope(claim: Claim, expect: SigV4Expectation, refuse: Refuse): SigV4Refused | undefined {
  const [accessKeyId, shortDate, region, service, terminator] = claim.credential;
  if (accessKeyId !== expect.credentials.accessKeyId) {
    return refuse(
      'unknown-key',
      expect.service === 's3'
        ? 'The AWS Access Key Id you provided does not exist in our records.'
        : 'The security token included in the request is invalid.',
    );
  }
  if (terminator !== 'aws4_request' || service !== expect.service) {
    return refuse(
      'scope',
      `the credential scope must name service "${expect.service}" and end in aws4_request`,
    );
  }
  if (expect.region !== undefined && region !== expect.region) {
    return refuse(
      'scope',
      // DynamoDB's own words, trailing space included; S3's name the region it expects.
      expect.service === 'dynamodb'
        ? 'Credential should be scoped to a valid region. '
        : `the region "${region}" is wrong; expecting "${expect.region}"`,
    );
  }
  if (shortDate !== claim.longDate.slice(0, 8)) {
    return refuse(
      'scope',
      `the credential date ${shortDate} is not the day of the request date ${claim.longDate}`,
    );
  }
  return undefined;
}

/** A presigned request must be within its validity; a header-signed one within the clock skew. */
function checkTime(
  claim: Claim,
  expect: SigV4Expectation,
  refuse: Refuse,
): { ok: true; expiresAt: Date | undefined } | SigV4Refused {
  const now = expect.now ?? new Date();
  const signingDate = claim.signingDate;
  if (claim.expiresSeconds !== undefined) {
    const expiresAt = new Date(signingDate.getTime() + claim.expiresSeconds * 1000);
    if (now.getTime() > expiresAt.getTime()) return refuse('expired', 'Request has expired');
    if (
      expect.maxPresignedAgeMs !== undefined &&
      now.getTime() - signingDate.getTime() > expect.maxPresignedAgeMs
    )
      return refuse('expired', 'Access Denied');
    if (signingDate.getTime() - now.getTime() > MAX_CLOCK_SKEW_MS)
      return refuse('expired', 'Request is not yet valid');
    return { ok: true, expiresAt };
  }
  if (Math.abs(signingDate.getTime() - now.getTime()) > MAX_CLOCK_SKEW_MS) {
    return refuse(
      'skewed',
      expect.service === 's3'
        ? 'The difference between the request time and the current time is too large.'
        : `Signature expired: ${claim.longDate} is now earlier or later than ${formatLongDate(now)} by more than 15 minutes`,
    );
  }
  return { ok: true, expiresAt: undefined };
}

/** The signature the SDK's signer computes for the request as it arrived (undefined if none). */
async function expectedSignature(
  request: SigV4Request,
  expect: SigV4Expectation,
  read: ReadClaim,
  payloadHash: string,
): Promise<string | undefined> {
  const { claim, headers, presigned, query } = read;
  const region = claim.credential[2];
  const signed = new Set(claim.signedHeaders);
  const toSign: Record<string, string> = {};
  for (const name of claim.signedHeaders) {
    const value = headers.get(name);
    // A signed header that did not arrive cannot be reproduced: the signature will differ.
    if (value !== undefined) toSign[name] = value;
  }
  // The signer reads the payload hash from this header; it is part of the canonical
  // headers only when the client signed it.
  toSign[CONTENT_SHA256] = payloadHash;
  const unsignable = new Set<string>(signed.has(CONTENT_SHA256) ? [] : [CONTENT_SHA256]);

  const signer = signerFor(expect.service, region, expect.credentials);
  const httpRequest = {
    method: request.method.toUpperCase(),
    protocol: 'http:',
    // The canonical request reads the Host header, never this.
    hostname: 'signing.invalid',
    path: read.path,
    headers: toSign,
    query: canonicalQuery(query, presigned),
  };
  const options = {
    signingDate: claim.signingDate,
    signingRegion: region,
    signingService: expect.service,
    signableHeaders: signed,
    unsignableHeaders: unsignable,
  };
  if (presigned) {
    const out = await signer.presign(httpRequest, {
      ...options,
      expiresIn: claim.expiresSeconds,
      // The headers are those the client kept out of the query: none may move.
      unhoistableHeaders: new Set(Object.keys(toSign)),
    });
    const value = out.query?.['X-Amz-Signature'];
    return typeof value === 'string' ? value : undefined;
  }
  const out = await signer.sign(httpRequest, options);
  return /Signature=([0-9a-f]+)/.exec(String(out.headers.authorization ?? ''))?.[1];
}

/**
 * Every value of a repeated parameter, as AWS canonicalises them (the signer sorts them): the
 * services read one of them, so keeping only one here would let a value nobody signed be put
 * beside the signed one.
 */
function canonicalQuery(query: URLSearchParams, presigned: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name of new Set(query.keys())) {
    if (presigned && name === 'X-Amz-Signature') continue;
    const values = query.getAll(name);
    out[name] = values.length === 1 ? (values[0] as string) : values;
  }
  return out;
}

// One signer per service, region and key pair: each keeps the SDK's cache of derived signing keys.
const signers = new Map<string, SignatureV4>();

function signerFor(service: SigV4Service, region: string, credentials: SigV4Credentials): SignatureV4 {
  const key = JSON.stringify([service, region, credentials.accessKeyId, credentials.secretAccessKey]);
  let signer = signers.get(key);
  if (signer === undefined) {
    // Bounded: regions come from requests, and a client may name any.
    if (signers.size >= 64) signers.clear();
    signer = new SignatureV4({
      service,
      region,
      credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
      sha256: SigningSha256,
      uriEscapePath: service !== 's3',
      applyChecksum: false,
    });
    signers.set(key, signer);
  }
  return signer;
}

// ---------------------------------------------------------------- parsing

interface Claim {
  readonly ok: true;
  /** accessKeyId, date, region, service, terminator */
  readonly credential: readonly [string, string, string, string, string];
  readonly longDate: string;
  readonly signingDate: Date;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
  readonly expiresSeconds?: number;
}

type Refuse = (reason: SigV4Reason, message: string) => SigV4Refused;

function readHeaderClaim(
  authorization: string,
  headers: Map<string, string>,
  refuse: Refuse,
): Claim | SigV4Refused {
  const space = authorization.indexOf(' ');
  const algorithm = space < 0 ? authorization : authorization.slice(0, space);
  if (algorithm !== ALGORITHM) {
    return refuse('malformed', `the authorization mechanism must be ${ALGORITHM}`);
  }
  const fields = new Map<string, string>();
  for (const part of authorization.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0)
      return refuse('malformed', `the Authorization header has a part without "=": "${part.trim()}"`);
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const longDate = headers.get('x-amz-date');
  if (longDate === undefined) return refuse('malformed', 'the x-amz-date header is missing');
  return buildClaim(
    {
      credential: fields.get('Credential'),
      longDate,
      signedHeaders: fields.get('SignedHeaders'),
      signature: fields.get('Signature'),
    },
    refuse,
  );
}

function readQueryClaim(query: URLSearchParams, refuse: Refuse): Claim | SigV4Refused {
  if (query.get('X-Amz-Algorithm') !== ALGORITHM) {
    return refuse('malformed', `X-Amz-Algorithm must be ${ALGORITHM}`);
  }
  const expires = query.get('X-Amz-Expires');
  if (expires === null || !/^\d{1,7}$/.test(expires)) {
    return refuse('malformed', 'X-Amz-Expires must be a whole number of seconds');
  }
  const expiresSeconds = Number(expires);
  if (expiresSeconds > MAX_PRESIGNED_EXPIRES_SECONDS) {
    return refuse(
      'malformed',
      'X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds',
    );
  }
  const claim = buildClaim(
    {
      credential: query.get('X-Amz-Credential') ?? undefined,
      longDate: query.get('X-Amz-Date') ?? undefined,
      signedHeaders: query.get('X-Amz-SignedHeaders') ?? undefined,
      signature: query.get('X-Amz-Signature') ?? undefined,
    },
    refuse,
  );
  return claim.ok ? { ...claim, expiresSeconds } : claim;
}

function buildClaim(
  raw: { credential?: string; longDate?: string; signedHeaders?: string; signature?: string },
  refuse: Refuse,
): Claim | SigV4Refused {
  const credential = raw.credential?.split('/');
  if (credential?.length !== 5 || credential.some((part) => part === '')) {
    return refuse(
      'malformed',
      'the credential must be <access key>/<yyyymmdd>/<region>/<service>/aws4_request',
    );
  }
  if (
    raw.signedHeaders === undefined ||
    !/^[a-z0-9!#$%&'*+.^_`|~-]+(;[a-z0-9!#$%&'*+.^_`|~-]+)*$/.test(raw.signedHeaders)
  ) {
    return refuse('malformed', 'the signed headers must be lower-case header names separated by ";"');
  }
  if (raw.signature === undefined || !/^[0-9a-f]{64}$/.test(raw.signature)) {
    return refuse('malformed', 'the signature must be 64 lower-case hex digits');
  }
  const signingDate = raw.longDate === undefined ? undefined : parseLongDate(raw.longDate);
  if (raw.longDate === undefined || signingDate === undefined) {
    return refuse('malformed', 'the request date must be in ISO 8601 basic format, yyyyMMddTHHmmssZ');
  }
  const signedHeaders = raw.signedHeaders.split(';');
  if (!signedHeaders.includes('host')) {
    return refuse('malformed', 'the host header must be signed');
  }
  return {
    ok: true,
    credential: credential as unknown as Claim['credential'],
    longDate: raw.longDate,
    signingDate,
    signedHeaders,
    signature: raw.signature,
  };
}

function parseLongDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Reject dates that roll over (20260231T…): the client meant something else.
  return formatLongDate(date) === value ? date : undefined;
}

function formatLongDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function lowerCaseHeaders(headers: SigV4Request['headers']): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out.set(name.toLowerCase(), typeof value === 'string' ? value : value.join(','));
  }
  return out;
}

/**
 * Splits `req.url` into the path as sent and the decoded query. Query values are decoded
 * once (`+` stays `+`, as AWS reads it) because the signer escapes them again; a value
 * without `=` (`?uploads`) is the empty string, as the SDK signs it.
 */
function splitUrl(url: string): { path: string; query: URLSearchParams | undefined } {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams();
  if (q < 0) return { path, query };
  try {
    for (const pair of url.slice(q + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const name = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
      query.append(name, value);
    }
  } catch {
    return { path, query: undefined };
  }
  return { path, query };
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
