/**
 * The presigned PUT: streams the file to storage with exactly the headers the API says to
 * send (`headers`: content-type, x-amz-checksum-sha256), and the content-length the URL is
 * signed for (`automaticHeaders`, which node:http would not set for a stream).
 *
 * node:http rather than fetch: fetch would send a streamed body chunked, and S3
 * refuses chunked PUTs to a presigned URL; here the body goes out with the signed
 * content-length, one chunk in memory at a time.
 */
import { createReadStream } from 'node:fs';
import {
  type ClientRequest,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { UploadPutError } from './errors.ts';

export interface PutFileRequest {
  url: string;
  /** The headers to send (the API's `headers`). */
  headers: Readonly<Record<string, string>>;
  /** Signed too, set by the HTTP client (the API's `automaticHeaders`): the length is checked against the file. */
  automaticHeaders?: Readonly<Record<string, string>> | undefined;
  file: string;
  /** Bytes the file has (from the hash pass). */
  size: number;
  /** Called as bytes are handed to the socket, with the running total. */
  onBytes?: ((bytesSent: number) => void) | undefined;
}

export type PutFile = (request: PutFileRequest) => Promise<void>;

export interface PutFileOptions {
  /** Abort when the socket is idle this long. @default 60000 */
  idleTimeoutMs?: number;
  /** @default 1 MiB: small enough for smooth progress, large enough for throughput. */
  chunkBytes?: number;
}

/** Where a presigned URL points, without its query (which holds the signature). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

export function createPutFile(options: PutFileOptions = {}): PutFile {
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;

  return async ({ url, headers, automaticHeaders, file, size, onBytes }) => {
    const target = new URL(url);
    const where = redactUrl(url);
    const sendHeaders = lengthChecked({ ...automaticHeaders, ...headers }, size, file);
    if (target.protocol !== 'https:' && target.protocol !== 'http:') {
      throw new UploadPutError(`upload URL has unsupported protocol ${target.protocol}`);
    }
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(target, { method: 'PUT', headers: sendHeaders });
    req.setTimeout(idleTimeoutMs, () => {
      req.destroy(new Error(`no progress for ${Math.round(idleTimeoutMs / 1000)} s`));
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
    });
    const sending = streamFile(file, chunkBytes, req, onBytes);
    let res: IncomingMessage;
    try {
      res = await response;
    } catch (err) {
      const cause = (await sending) ?? err;
      throw new UploadPutError(`upload PUT to ${where} failed: ${errorText(cause)}`, { cause });
    }
    await checkAnswer(res, req, sending, where);
  };
}

/**
 * The headers to send, with the content-length of the file (S3 refuses a chunked PUT), checked
 * against the length the URL is signed for. `host` node:http sets from the URL.
 */
function lengthChecked(
  headers: Readonly<Record<string, string>>,
  size: number,
  file: string,
): OutgoingHttpHeaders {
  const out: Record<string, string> = {};
  let signedLength: string | undefined;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'content-length') signedLength = value;
    else if (lower !== 'host') out[lower] = value;
  }
  if (signedLength !== undefined && Number(signedLength) !== size) {
    throw new UploadPutError(
      `the upload URL is signed for ${signedLength} bytes but ${file} has ${size}; try again`,
    );
  }
  return { ...out, 'content-length': String(size) };
}

/** Streams the file into the request; resolves with the send error, if any (never rejects). */
function streamFile(
  file: string,
  chunkBytes: number,
  req: ClientRequest,
  onBytes: ((bytesSent: number) => void) | undefined,
): Promise<unknown> {
  let sent = 0;
  return pipeline(
    createReadStream(file, { highWaterMark: chunkBytes }),
    async function* count(source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        sent += chunk.length;
        onBytes?.(sent);
        yield chunk;
      }
    },
    req,
  ).then(
    () => undefined,
    (err: unknown) => err,
  );
}

async function checkAnswer(
  res: IncomingMessage,
  req: ClientRequest,
  sending: Promise<unknown>,
  where: string,
): Promise<void> {
  const status = res.statusCode ?? 0;
  const body = await readBody(res);
  if (status < 200 || status > 299) {
    // Storage may answer before it has read the whole body; stop sending, and the
    // send error that follows is noise (`sending` already swallows it).
    req.destroy();
    throw new UploadPutError(
      `upload PUT failed: ${status} ${describeStorageError(body, res.statusMessage)}`,
      {
        status,
      },
    );
  }
  const sendError = await sending;
  if (sendError !== undefined) {
    throw new UploadPutError(`upload PUT to ${where} failed: ${errorText(sendError)}`, { cause: sendError });
  }
}

async function readBody(res: IncomingMessage, max = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (length < max) chunks.push(chunk);
    length += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, max);
}

/** S3 errors are XML `<Error><Code>..</Code><Message>..</Message></Error>`; show those, else the body's start. */
export function describeStorageError(body: string, statusMessage: string | undefined): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  if (code !== undefined) return message === undefined ? code : `${code}: ${message}`;
  const text = body.replace(/\s+/g, ' ').trim();
  if (text !== '') return text.length > 300 ? `${text.slice(0, 300)}…` : text;
  return statusMessage ?? 'no details';
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}
