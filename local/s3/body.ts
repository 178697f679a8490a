/**
 * Request bodies, streamed to a temp file and hashed as they arrive: the length must be
 * the declared one, `aws-chunked` framing is decoded (chunk signatures checked), and
 * every checksum the client declared or signed (header, presigned query, trailer,
 * Content-MD5, x-amz-content-sha256) must match, or nothing is kept.
 */
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { streamToNewFile } from '../../common/stream-to-file.ts';
import type { ChecksumAlgorithm, S3Store } from './store.ts';
import { errors, S3Error } from './xml.ts';

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/** Signs a chunk's string to sign with the request's signing key (for signed streaming bodies). */
export type ChunkSigner = (stringToSign: string) => Promise<string>;

export interface ChunkSigning {
  readonly sign: ChunkSigner;
  /** The request's signature (the seed of the chain). */
  readonly seedSignature: string;
  /** `X-Amz-Date` of the request. */
  readonly datetime: string;
  /** `<date>/<region>/s3/aws4_request` */
  readonly scope: string;
}

export interface ReceivedBody {
  readonly tempId: string;
  readonly size: number;
  /** Hex MD5 of the decoded bytes. */
  readonly md5: string;
  /** The checksum the client declared and that matched, if any. */
  readonly checksum: { readonly algorithm: ChecksumAlgorithm; readonly value: string } | undefined;
}

const ALGORITHMS: Record<string, ChecksumAlgorithm> = {
  'x-amz-checksum-crc32': 'CRC32',
  'x-amz-checksum-sha1': 'SHA1',
  'x-amz-checksum-sha256': 'SHA256',
};
const UNSUPPORTED = ['x-amz-checksum-crc32c', 'x-amz-checksum-crc64nvme'];

/** Running checksum of one algorithm; `digest()` is base64 as S3 reports it. */
export function checksumHasher(algorithm: ChecksumAlgorithm): { update(b: Buffer): void; digest(): string } {
  if (algorithm === 'CRC32') {
    let value = 0;
    return {
      update: (b) => {
        value = crc32(b, value);
      },
      digest: () => {
        const out = Buffer.alloc(4);
        out.writeUInt32BE(value >>> 0);
        return out.toString('base64');
      },
    };
  }
  if (algorithm === 'CRC32C') throw errors.notImplemented('CRC32C checksums');
  const hash: Hash = createHash(algorithm === 'SHA1' ? 'sha1' : 'sha256');
  return { update: (b) => hash.update(b), digest: () => hash.digest('base64') };
}

/** Pulls bytes from a stream on demand: lines for chunk headers, runs of bytes for data. */
class ByteReader {
  private buffer: Buffer = Buffer.alloc(0);
  private done = false;
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const next = await this.source.next();
    if (next.done) {
      this.done = true;
      return false;
    }
    this.buffer = this.buffer.length === 0 ? next.value : Buffer.concat([this.buffer, next.value]);
    return true;
  }

  async line(max: number): Promise<string> {
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end >= 0) {
        const line = this.buffer.subarray(0, end).toString('latin1');
        this.buffer = this.buffer.subarray(end + 2);
        return line;
      }
      if (this.buffer.length > max) throw malformedChunk('chunk header too long');
      if (!(await this.fill())) throw errors.incompleteBody();
    }
  }

  /** Up to `n` bytes (at least one), or throws at the end of the stream. */
  async take(n: number): Promise<Buffer> {
    if (this.buffer.length === 0 && !(await this.fill())) throw errors.incompleteBody();
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(out.length);
    return out;
  }

  async atEnd(): Promise<boolean> {
    while (this.buffer.length === 0) if (!(await this.fill())) return true;
    return false;
  }
}

const malformedChunk = (why: string) =>
  new S3Error(
    400,
    'InvalidChunkSizeError',
    `Only the last chunk is allowed to have a size less than 8192 bytes, or the aws-chunked body is malformed: ${why}`,
  );

/** A chunk header: `<hex size>[;chunk-signature=<sig>]`; a signature exactly when the body is signed. */
async function readChunkHeader(
  reader: ByteReader,
  signed: boolean,
): Promise<{ size: number; signature: string | undefined }> {
  const header = await reader.line(4096);
  const match = /^([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(header);
  if (!match?.[1]) throw malformedChunk(`bad chunk header "${header.slice(0, 80)}"`);
  const signature = match[2];
  if (signed !== (signature !== undefined)) throw malformedChunk('chunk signature missing or unexpected');
  return { size: Number.parseInt(match[1], 16), signature };
}

/** Each chunk's signature chains on the previous one (the request's for the first). */
async function checkChunkSignature(
  signing: ChunkSigning,
  previous: string,
  signature: string,
  dataHash: string,
): Promise<void> {
  const { sign, datetime, scope } = signing;
  const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', datetime, scope, previous, EMPTY_SHA256, dataHash].join(
    '\n',
  );
  if ((await sign(stringToSign)) !== signature) {
    throw new S3Error(
      403,
      'SignatureDoesNotMatch',
      'The chunk signature we calculated does not match the signature you provided.',
    );
  }
}

/** Trailer lines (`name:value`) up to an empty line. */
async function readTrailers(reader: ByteReader, trailers: Map<string, string>): Promise<void> {
  for (;;) {
    const line = await reader.line(4096);
    if (line === '') return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformedChunk('bad trailer line');
    trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
}

/**
 * Decodes an `aws-chunked` body: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`...,
 * a zero-size chunk, then (unsigned with trailer) trailer lines and an empty line.
 */
async function* decodeAwsChunked(
  source: AsyncIterable<Buffer>,
  options: { signing: ChunkSigning | undefined; trailers: Map<string, string> },
): AsyncGenerator<Buffer> {
  const { signing } = options;
  const reader = new ByteReader(source[Symbol.asyncIterator]());
  let previous = signing?.seedSignature;
  for (;;) {
    const { size, signature } = await readChunkHeader(reader, signing !== undefined);
    const hash = signing ? createHash('sha256') : undefined;
    for (let left = size; left > 0; ) {
      const data = await reader.take(left);
      left -= data.length;
      hash?.update(data);
      yield data;
    }
    if (signing && hash && signature !== undefined && previous !== undefined) {
      await checkChunkSignature(signing, previous, signature, hash.digest('hex'));
      previous = signature;
    }
    if (size === 0) break;
    if ((await reader.line(0)) !== '') throw malformedChunk('chunk data longer than its size');
  }
  if (!signing) await readTrailers(reader, options.trailers);
  else if ((await reader.line(0)) !== '') throw malformedChunk('missing final CRLF');
  if (!(await reader.atEnd())) throw malformedChunk('bytes after the final chunk');
}

/** The one checksum a request declares: header, presigned query parameter, or trailer name. */
function declaredChecksum(
  headers: IncomingMessage['headers'],
  query: URLSearchParams,
): { algorithm: ChecksumAlgorithm; value: string | undefined } | undefined {
  const found: { algorithm: ChecksumAlgorithm; value: string | undefined }[] = [];
  for (const name of UNSUPPORTED) {
    if (headers[name] !== undefined || query.has(name))
      throw errors.notImplemented(`${name} (this emulator checks CRC32, SHA1 and SHA256)`);
  }
  for (const [name, algorithm] of Object.entries(ALGORITHMS)) {
    const value = headerValue(headers, name) ?? query.get(name) ?? undefined;
    if (value !== undefined) found.push({ algorithm, value });
  }
  const trailer = headerValue(headers, 'x-amz-trailer')?.toLowerCase();
  if (trailer !== undefined) {
    const algorithm = ALGORITHMS[trailer];
    if (!algorithm) {
      if (UNSUPPORTED.includes(trailer)) throw errors.notImplemented(`${trailer} trailers`);
      throw errors.invalidArgument(
        'The value specified in the x-amz-trailer header is not supported',
        'x-amz-trailer',
        trailer,
      );
    }
    found.push({ algorithm, value: undefined });
  }
  if (found.length > 1)
    throw errors.invalidRequest(
      'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.',
    );
  return found[0];
}

export function headerValue(headers: IncomingMessage['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function parseLength(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw errors.invalidArgument(`${name} is not a valid length`, name, raw);
  return Number(raw);
}

/** S3's largest single PUT or part. */
const MAX_BODY_BYTES = 5 * 1024 ** 3;

export const missingLength = () =>
  new S3Error(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.');

type Declared = { algorithm: ChecksumAlgorithm; value: string | undefined };

/** How the body is framed and how long it is, from the request's headers (nothing read yet). */
interface Framing {
  /** Bytes on the wire (Content-Length), when given. */
  readonly contentLength: number | undefined;
  /** x-amz-content-sha256: UNSIGNED-PAYLOAD, STREAMING-*, or the hex digest of the body. */
  readonly payload: string;
  readonly chunked: boolean;
  /** Decoded bytes. */
  readonly size: number;
}

function bodyFraming(req: IncomingMessage, signing: ChunkSigning | undefined): Framing {
  const contentLength = parseLength(headerValue(req.headers, 'content-length'), 'Content-Length');
  const payload = headerValue(req.headers, 'x-amz-content-sha256') ?? 'UNSIGNED-PAYLOAD';
  const chunked = payload.startsWith('STREAMING-');
  // An aws-chunked body may come with Transfer-Encoding: chunked (the SDK sends streams
  // so); its length is then x-amz-decoded-content-length. Any other body needs Content-Length.
  if (contentLength === undefined && !chunked) throw missingLength();
  checkPayloadMode(payload, chunked, signing);
  const size = chunked
    ? parseLength(headerValue(req.headers, 'x-amz-decoded-content-length'), 'x-amz-decoded-content-length')
    : contentLength;
  if (size === undefined) throw missingLength();
  if (size > MAX_BODY_BYTES) {
    throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size', {
      ProposedSize: String(size),
      MaxSizeAllowed: String(MAX_BODY_BYTES),
    });
  }
  return { contentLength, payload, chunked, size };
}

function checkPayloadMode(payload: string, chunked: boolean, signing: ChunkSigning | undefined): void {
  if (
    payload === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER' ||
    payload.startsWith('STREAMING-AWS4-ECDSA')
  ) {
    throw errors.notImplemented(`x-amz-content-sha256: ${payload}`);
  }
  if (!chunked && payload !== 'UNSIGNED-PAYLOAD' && !/^[0-9a-f]{64}$/.test(payload)) {
    throw errors.invalidArgument(
      'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a SHA-256 hex digest',
      'x-amz-content-sha256',
      payload,
    );
  }
  if (
    chunked &&
    payload !== 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' &&
    payload !== 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'
  ) {
    throw errors.invalidArgument('unknown streaming payload', 'x-amz-content-sha256', payload);
  }
  if (payload === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' && !signing) {
    throw errors.invalidRequest('A signed streaming body needs an Authorization header');
  }
}

/** The checksums the request declares, checked for form before any byte is read. */
function declaredDigests(
  req: IncomingMessage,
  query: URLSearchParams,
  payload: string,
): { declared: Declared | undefined; contentMd5: string | undefined } {
  const declared = declaredChecksum(req.headers, query);
  if (
    declared?.value === undefined &&
    declared !== undefined &&
    payload !== 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'
  ) {
    throw errors.invalidRequest(
      'x-amz-trailer needs an aws-chunked body with STREAMING-UNSIGNED-PAYLOAD-TRAILER',
    );
  }
  const contentMd5 = headerValue(req.headers, 'content-md5');
  if (contentMd5 !== undefined && Buffer.from(contentMd5, 'base64').length !== 16) {
    throw new S3Error(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.');
  }
  return { declared, contentMd5 };
}

/** The hashes of the decoded bytes, and the byte counts on the wire and decoded. */
class BodyHashes {
  readonly md5 = createHash('md5');
  readonly payloadHash: Hash | undefined;
  readonly checksum: ReturnType<typeof checksumHasher> | undefined;
  received = 0;
  wire = 0;

  constructor(
    private readonly framing: Framing,
    declared: Declared | undefined,
  ) {
    this.payloadHash = /^[0-9a-f]{64}$/.test(framing.payload) ? createHash('sha256') : undefined;
    this.checksum = declared ? checksumHasher(declared.algorithm) : undefined;
  }

  /** Counts wire bytes, refusing more than Content-Length. */
  async *counted(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const { contentLength } = this.framing;
    for await (const chunk of source) {
      this.wire += chunk.length;
      if (contentLength !== undefined && this.wire > contentLength)
        throw new S3Error(400, 'IncompleteBody', 'The request body is longer than its Content-Length');
      yield chunk;
    }
  }

  /** Hashes decoded bytes, refusing more than the decoded size. */
  async *hashing(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      this.received += chunk.length;
      if (this.received > this.framing.size)
        throw new S3Error(
          400,
          'IncompleteBody',
          'The decoded body is longer than x-amz-decoded-content-length',
        );
      this.md5.update(chunk);
      this.payloadHash?.update(chunk);
      this.checksum?.update(chunk);
      yield chunk;
    }
  }
}

const payloadHashMismatch = () =>
  new S3Error(
    400,
    'XAmzContentSHA256Mismatch',
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
  );

/** After the last byte: lengths, Content-MD5, x-amz-content-sha256 and the declared checksum must match. */
function verifyReceived(
  hashes: BodyHashes,
  framing: Framing,
  digests: { declared: Declared | undefined; contentMd5: string | undefined },
  trailers: Map<string, string>,
): { md5: string; checksum: ReceivedBody['checksum'] } {
  const { contentLength, size, payload } = framing;
  if ((contentLength !== undefined && hashes.wire !== contentLength) || hashes.received !== size)
    throw errors.incompleteBody();
  const md5Hex = hashes.md5.digest('hex');
  const { contentMd5, declared } = digests;
  if (contentMd5 !== undefined && Buffer.from(contentMd5, 'base64').toString('hex') !== md5Hex) {
    throw errors.badDigest('The Content-MD5 you specified did not match what we received.');
  }
  if (hashes.payloadHash && hashes.payloadHash.digest('hex') !== payload) throw payloadHashMismatch();
  if (!declared || !hashes.checksum) return { md5: md5Hex, checksum: undefined };
  const expected = declared.value ?? trailers.get(`x-amz-checksum-${declared.algorithm.toLowerCase()}`);
  if (expected === undefined) throw errors.invalidRequest('The trailer named in x-amz-trailer was not sent');
  const actual = hashes.checksum.digest();
  if (actual !== expected) {
    throw errors.badDigest(`The ${declared.algorithm} you specified did not match the calculated checksum.`);
  }
  return { md5: md5Hex, checksum: { algorithm: declared.algorithm, value: actual } };
}

/**
 * Receives a request body into a temp file of the store. On any failure the temp file is
 * removed and the error (an S3Error where the client is at fault) is thrown.
 */
export async function receiveBody(
  req: IncomingMessage,
  query: URLSearchParams,
  store: S3Store,
  signing: ChunkSigning | undefined,
): Promise<ReceivedBody> {
  const framing = bodyFraming(req, signing);
  const digests = declaredDigests(req, query, framing.payload);
  const hashes = new BodyHashes(framing, digests.declared);
  const trailers = new Map<string, string>();
  const counted = hashes.counted(req);
  const decoded = framing.chunked
    ? decodeAwsChunked(counted, {
        signing: framing.payload === 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' ? signing : undefined,
        trailers,
      })
    : counted;
  const temp = store.tempFile();
  try {
    await streamToNewFile(temp.path, { flags: 'w', highWaterMark: 1024 * 1024 }, (out) =>
      pipeline(decoded, (source: AsyncIterable<Buffer>) => hashes.hashing(source), out),
    );
    const { md5, checksum } = verifyReceived(hashes, framing, digests, trailers);
    return { tempId: temp.id, size: hashes.received, md5, checksum };
  } catch (err) {
    await store.discardTemp(temp.id);
    if (err instanceof S3Error) throw err;
    // The client went away or stopped mid-body.
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as Error).message === 'aborted') {
      throw errors.incompleteBody();
    }
    throw err;
  }
}

/** Reads a small body (XML documents) into memory, refusing more than `max` bytes. */
export async function readSmallBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = parseLength(headerValue(req.headers, 'content-length'), 'Content-Length');
  if (declared !== undefined && declared > max) {
    throw new S3Error(400, 'MaxMessageLengthExceeded', 'Your request was too big.');
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > max) throw new S3Error(400, 'MaxMessageLengthExceeded', 'Your request was too big.');
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof S3Error) throw err;
    throw errors.incompleteBody();
  }
  if (declared !== undefined && total !== declared) throw errors.incompleteBody();
  const body = Buffer.concat(chunks);
  // The signature covers the body through this hash only: a body other than the signed one is
  // refused, as S3 does, or a signed request could carry any document (another key to delete).
  const payload = headerValue(req.headers, 'x-amz-content-sha256');
  if (payload !== undefined && /^[0-9a-f]{64}$/.test(payload)) {
    if (createHash('sha256').update(body).digest('hex') !== payload) throw payloadHashMismatch();
  }
  // Every small body is an XML document, which S3 reads as UTF-8 only. Decoded leniently, bad bytes
  // would become U+FFFD and the Content-MD5 would be checked against text the client never sent.
  try {
    return STRICT_UTF8.decode(body);
  } catch {
    throw errors.malformedXml();
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
