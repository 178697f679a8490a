/**
 * `uploadFile`: a browser upload to Media Mirror, straight to S3.
 *
 * 1. SHA-256 of the whole file, streamed in a Web Worker.
 * 2. `POST /v1/uploads` with path, size, hash and type. Every answer carries a
 *    proof-of-possession challenge: the digest of a nonce and a few ranges of the file
 *    (read from the file alone) goes to `POST /v1/uploads/{id}/proof`. Content the mirror
 *    holds is then committed at once ("deduplicated": no byte is sent); any other answer
 *    (`proof_not_accepted`) means: send the bytes.
 * 3. Up to the server's threshold: one PUT to the presigned URL, with the signed
 *    headers. Above it: the server's part plan; each missing part is hashed (a second,
 *    bounded read of that slice), presigned with its SHA-256, PUT, and recorded with
 *    the ETag storage answered; several in parallel, each retried with backoff. A plan
 *    the server resumed skips the parts already recorded. Then
 *    `POST /v1/uploads/{id}/complete`.
 * 4. Polls `GET /v1/uploads/{id}` while the ingest verifies the whole object, until
 *    it is committed or rejected.
 *
 * `signal` aborts what is in flight and asks the API to abort the upload
 * (`DELETE /v1/uploads/{id}`), which also aborts the S3 multipart upload.
 */
import { type Hasher, inlineHasher, workerHasher } from './hashing.ts';
import {
  allParts,
  type BackoffOptions,
  checkPlan,
  isRetryableStatus,
  missingParts,
  type PartPlan,
  PartProgress,
  type PartRange,
  ProgressMeter,
  retryAfterMs,
  retryDelay,
  type StoredPart,
  storedBytes,
  type UploadProgress,
} from './plan.ts';
import { type Challenge, isChallenge, proofDigest } from './proof.ts';

export type { Phase, UploadProgress } from './plan.ts';

export interface UploadFileOptions {
  /** The API's base URL, e.g. `https://media.example.com` or `http://127.0.0.1:8787`. */
  readonly api: string;
  /** The file's path in the mirror, e.g. `photos/2024/beach.jpg`. */
  readonly path: string;
  /** Bearer token for the API. */
  readonly token: string;
  /** @default file.type, else `application/octet-stream` */
  readonly contentType?: string;
  /** Write only if the path's latest version is this one (0: only if the path is new). */
  readonly ifVersion?: number;
  readonly onProgress?: (progress: UploadProgress) => void;
  /** Aborts the upload (in-flight requests, and the upload itself at the API). */
  readonly signal?: AbortSignal;
  /** Parts sent at once. @default 4 */
  readonly partConcurrency?: number;
  /** Retries of each request (a part: its presign and its PUT) after a network error, 408, 429 or 5xx. @default 4 */
  readonly retries?: number;
  /** Backoff between retries. @default { baseMs: 500, maxMs: 15000 } */
  readonly backoff?: BackoffOptions;
  /** For tests or instrumentation. @default globalThis.fetch; when given, part PUTs use it too (no byte-level progress). */
  readonly fetch?: typeof fetch;
  /**
   * Where `hash-worker.js` is served. `null` hashes on the calling thread (blocks a page
   * for large files). @default `hash-worker.js` next to this module, when `Worker` exists
   */
  readonly workerUrl?: string | URL | null;
  /**
   * The whole file's SHA-256 (hex), when the caller has it already (the CLI hashes with
   * Node's native SHA-256, faster than WebAssembly): skips the hashing pass. Parts are
   * still hashed as they are sent. @default computed here
   */
  readonly sha256?: string;
  /**
   * Idempotency-Key of the claim, kept for its retries: a caller that retries the whole upload
   * (a Retry button) passes the same key again, and gets the same upload. @default a random UUID
   */
  readonly idempotencyKey?: string;
  /**
   * Answer the claim's proof-of-possession challenge, so known content is committed without
   * sending it. `false` skips it (a caller that already tried for this file). @default true
   */
  readonly proof?: boolean;
  /** Bytes per read while hashing. @default 4 MiB */
  readonly chunkBytes?: number;
  /** First wait between status polls while the ingest verifies; it grows to 2 s. @default 250 */
  readonly pollIntervalMs?: number;
  /**
   * Gives up waiting for the verification after this long (the upload stays pending at
   * the API; its status can still be read). @default 30 minutes
   */
  readonly verifyTimeoutMs?: number;
}

export interface UploadResult {
  readonly status: 'committed' | 'rejected';
  readonly uploadId: string;
  readonly path: string;
  /** The committed version. */
  readonly version?: number;
  /** The content was already stored: nothing was uploaded. */
  readonly deduplicated: boolean;
  /** Why the upload was rejected (e.g. the stored bytes do not match the SHA-256). */
  readonly reason?: string;
  readonly sha256: string;
  readonly size: number;
  /** A multipart upload that continued one already under way. */
  readonly resumed: boolean;
  /** Parts sent by this call (0 for a single PUT or a deduplicated upload). */
  readonly partsSent: number;
  /** Parts the store already held when this call started. */
  readonly partsSkipped: number;
  /** Bytes this call sent to storage. */
  readonly bytesSent: number;
}

/** An error the API or storage answered, or an upload that cannot go on. */
export class UploadError extends Error {
  override readonly name = 'UploadError';
  constructor(
    message: string,
    /** The API's error code (`version_conflict`, `too_large`, ...) or a client one (`network`, `storage_rejected`, ...). */
    readonly code: string,
    /** HTTP status, 0 for a network error. */
    readonly status: number,
    /** The request field the API named. */
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A failure worth retrying (network, 408, 429, 5xx), with the server's Retry-After if any. */
class TransientError extends UploadError {
  constructor(
    message: string,
    status: number,
    readonly retryAfter?: number,
    options?: ErrorOptions,
  ) {
    super(message, status === 0 ? 'network' : 'unavailable', status, undefined, options);
  }
}

// ---- API answers (what this module reads of them) ----

interface MultipartState {
  readonly partSize: number;
  readonly partCount: number;
  readonly uploadedParts?: readonly { partNumber: number; size: number; etag?: string }[];
}

type CreateAnswer =
  | { status: 'committed'; uploadId: string; path: string; version: number; deduplicated: true }
  | {
      status: 'pending';
      uploadId: string;
      path: string;
      upload: { method: 'PUT'; url: string; headers: Record<string, string>; expiresAt: string };
      challenge?: Challenge;
    }
  | {
      status: 'pending';
      uploadId: string;
      path: string;
      resumed?: boolean;
      multipart: MultipartState;
      challenge?: Challenge;
    };

interface ProofAnswer {
  readonly status: 'committed';
  readonly uploadId: string;
  readonly path?: string;
  readonly version: number;
}

interface UploadState {
  readonly uploadId: string;
  /** `expired`: the bytes were not stored in time; reported to the caller as `rejected` with its reason. */
  readonly status: 'pending' | 'committed' | 'rejected' | 'expired';
  readonly version?: number;
  readonly reason?: string;
  readonly deduplicated?: boolean;
  readonly multipart?: MultipartState;
}

interface PartUrl {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly expiresAt?: string;
}

// ---- small helpers ----

const abortReason = (signal: AbortSignal): unknown =>
  signal.reason ?? new DOMException('The upload was aborted.', 'AbortError');

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Headers to send to a presigned URL: all the signed ones except those the browser sets itself. */
export function sendableHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'host') continue;
    out[lower] = value;
  }
  return out;
}

/** `<Code>` and `<Message>` of an S3 error document. */
function storageMessage(status: number, body: string): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  if (code || message)
    return `storage answered ${status} ${code ?? ''}${message ? `: ${message}` : ''}`.trim();
  return `storage answered ${status}`;
}

interface PutAnswer {
  readonly status: number;
  readonly body: string;
  /** The `ETag` header, when storage's CORS rules expose it (`ExposeHeaders: ETag`). */
  readonly etag: string | undefined;
}

type Putter = (
  url: string,
  headers: Record<string, string>,
  body: Blob,
  signal: AbortSignal,
  onSent: (bytes: number) => void,
) => Promise<PutAnswer>;

function fetchPutter(fetchImpl: typeof fetch): Putter {
  return async (url, headers, body, signal, onSent) => {
    let response: Response;
    try {
      response = await fetchImpl(url, { method: 'PUT', headers, body, signal });
    } catch (error) {
      if (signal.aborted) throw abortReason(signal);
      throw new TransientError(`could not reach storage (${(error as Error).message})`, 0, undefined, {
        cause: error,
      });
    }
    const text = await response.text().catch(() => '');
    if (response.ok) onSent(body.size);
    return { status: response.status, body: text, etag: response.headers.get('etag') ?? undefined };
  };
}

/**
 * The ETag among the headers the browser lets the page read. (Reading a header CORS
 * does not expose with getResponseHeader would log an error in the console.)
 */
function etagOf(allHeaders: string): string | undefined {
  for (const line of allHeaders.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'etag')
      return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** XMLHttpRequest reports upload progress, which fetch does not. */
function xhrPutter(): Putter {
  return (url, headers, body, signal, onSent) =>
    new Promise<PutAnswer>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const xhr = new XMLHttpRequest();
      const onAbort = () => xhr.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      const settle = () => signal.removeEventListener('abort', onAbort);
      xhr.open('PUT', url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => onSent(event.loaded);
      xhr.onload = () => {
        settle();
        if (xhr.status >= 200 && xhr.status < 300) onSent(body.size);
        resolve({
          status: xhr.status,
          body: typeof xhr.responseText === 'string' ? xhr.responseText : '',
          etag: etagOf(xhr.getAllResponseHeaders()),
        });
      };
      xhr.onerror = () => {
        settle();
        reject(new TransientError('could not reach storage (network error)', 0));
      };
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = () => {
        settle();
        reject(
          signal.aborted ? abortReason(signal) : new TransientError('the request to storage was cut', 0),
        );
      };
      xhr.send(body);
    });
}

/** `hash-worker.js` next to this module (the layout `web/build.ts` emits). */
function defaultWorkerUrl(): URL | null {
  if (typeof Worker === 'undefined') return null;
  try {
    return new URL('./hash-worker.js', import.meta.url);
  } catch {
    return null;
  }
}

/**
 * The SHA-256 (hex) of a file, streamed in a Web Worker (or on this thread with
 * `workerUrl: null`, or where there are no workers): what `uploadFile` declares.
 */
export async function sha256File(
  file: Blob,
  options: {
    readonly workerUrl?: string | URL | null;
    readonly chunkBytes?: number;
    readonly onBytes?: (bytes: number) => void;
  } = {},
): Promise<string> {
  const workerUrl = options.workerUrl === undefined ? defaultWorkerUrl() : options.workerUrl;
  const hasher = workerUrl === null ? inlineHasher() : workerHasher(workerUrl);
  try {
    return await hasher.hash(
      {
        blob: file,
        start: 0,
        end: file.size,
        ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}),
      },
      options.onBytes,
    );
  } finally {
    hasher.close();
  }
}

/** Runs `task` with retries on transient failures; returns its value or throws its last error. */
async function withRetries<T>(
  task: (attempt: number) => Promise<T>,
  options: { retries: number; backoff: BackoffOptions; signal: AbortSignal },
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await task(attempt);
    } catch (error) {
      if (options.signal.aborted) throw abortReason(options.signal);
      if (!(error instanceof TransientError) || attempt >= options.retries) {
        if (error instanceof TransientError && attempt > 0) {
          error.message = `${error.message} (gave up after ${attempt + 1} attempts)`;
        }
        throw error;
      }
      const wait = Math.max(retryDelay(attempt, options.backoff), error.retryAfter ?? 0);
      await sleep(wait, options.signal);
    }
  }
}

class ApiClient {
  private readonly base: string;

  constructor(
    api: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch,
    private readonly retry: { retries: number; backoff: BackoffOptions },
  ) {
    this.base = api.replace(/\/+$/, '');
  }

  /** One API call with retries; non-2xx answers become UploadErrors carrying the API's code and field. */
  call<T>(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
    extraHeaders: Record<string, string> = {},
  ): Promise<{ status: number; data: T }> {
    return withRetries(() => this.once<T>(method, path, body, signal, extraHeaders), {
      ...this.retry,
      signal,
    });
  }

  async once<T>(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
    extraHeaders: Record<string, string> = {},
  ): Promise<{ status: number; data: T }> {
    const headers: Record<string, string> = {
      ...extraHeaders,
      authorization: `Bearer ${this.token}`,
      accept: 'application/json',
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.base}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw abortReason(signal);
      throw new TransientError(
        `could not reach the API at ${this.base} (${(error as Error).message})`,
        0,
        undefined,
        {
          cause: error,
        },
      );
    }
    const text = await response.text().catch(() => '');
    let data: unknown;
    try {
      data = text === '' ? undefined : JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (response.ok) return { status: response.status, data: data as T };
    const error = (data as { error?: { code?: string; message?: string; field?: string } } | undefined)
      ?.error;
    const message = error?.message ?? (text.slice(0, 200) || response.statusText || 'no details');
    const what = `${method} ${path.split('?')[0]} answered ${response.status}: ${message}`;
    // The first request with this Idempotency-Key is still running: its answer comes with a retry.
    if (isRetryableStatus(response.status) || error?.code === 'idempotency_in_progress') {
      throw new TransientError(
        what,
        response.status,
        retryAfterMs(response.headers.get('retry-after'), Date.now()),
      );
    }
    throw new UploadError(message, error?.code ?? `http_${response.status}`, response.status, error?.field);
  }
}

/** A random key; `randomUUID` exists only in secure contexts, `getRandomValues` everywhere. */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Uploads `file` to `options.path`. Resolves when the upload is committed or rejected
 * (rejection: the stored bytes failed verification, see `reason`); throws an
 * `UploadError` when the API refuses it or the network gives out, and the signal's
 * reason (an `AbortError`) when aborted.
 */
export async function uploadFile(
  file: Blob & { readonly name?: string },
  options: UploadFileOptions,
): Promise<UploadResult> {
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const retries = Math.max(0, options.retries ?? 4);
  const backoff = options.backoff ?? {};
  const concurrency = Math.max(1, Math.floor(options.partConcurrency ?? 4));
  const api = new ApiClient(options.api, options.token, fetchImpl, { retries, backoff });
  const putter: Putter =
    options.fetch === undefined && typeof XMLHttpRequest !== 'undefined'
      ? xhrPutter()
      : fetchPutter(fetchImpl);
  const size = file.size;
  const contentType = options.contentType || file.type || 'application/octet-stream';
  const report = options.onProgress ?? (() => undefined);
  const pollFirstMs = options.pollIntervalMs ?? 250;

  // One controller for everything in flight: the caller's signal or our own failure aborts it.
  const inner = new AbortController();
  const outer = options.signal;
  const forward = () => inner.abort(outer ? abortReason(outer) : undefined);
  if (outer?.aborted) throw abortReason(outer);
  outer?.addEventListener('abort', forward, { once: true });
  const signal = inner.signal;

  const workerUrl = options.workerUrl === undefined ? defaultWorkerUrl() : options.workerUrl;
  const hasher: Hasher = workerUrl === null ? inlineHasher() : workerHasher(workerUrl);
  const hash = (start: number, end: number, onBytes?: (bytes: number) => void) =>
    new Promise<string>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = () => reject(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      hasher
        .hash(
          { blob: file, start, end, ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}) },
          onBytes,
        )
        .then(resolve, (error: unknown) => {
          if (signal.aborted) reject(abortReason(signal));
          else {
            const message = error instanceof Error ? error.message : String(error);
            reject(
              new UploadError(`cannot read the file: ${message}`, 'file_unreadable', 0, undefined, {
                cause: error,
              }),
            );
          }
        })
        .finally(() => signal.removeEventListener('abort', onAbort));
    });

  let uploadId: string | undefined;
  let finished = false;
  try {
    // 1. Hash.
    const hashing = new ProgressMeter('hashing', size);
    report(hashing.snapshot());
    const sha256 =
      options.sha256?.toLowerCase() ?? (await hash(0, size, (bytes) => report(hashing.set(bytes))));
    report(hashing.set(size));

    // 2. Claim.
    const created = await api.call<CreateAnswer>(
      'POST',
      '/v1/uploads',
      {
        path: options.path,
        size,
        sha256,
        contentType,
        ...(options.ifVersion === undefined ? {} : { ifVersion: options.ifVersion }),
      },
      signal,
      // Every retry of this claim (network error, 5xx) carries the same key: one upload, one version.
      { 'idempotency-key': options.idempotencyKey ?? newIdempotencyKey() },
    );
    const answer = created.data;
    uploadId = answer.uploadId;
    const base = { uploadId: answer.uploadId, path: answer.path ?? options.path, sha256, size };
    const proven =
      answer.status === 'pending' && options.proof !== false && isChallenge(answer.challenge)
        ? await prove(api, file, answer.uploadId, answer.challenge, signal)
        : undefined;
    const committed = answer.status === 'committed' ? answer : proven;
    if (committed) {
      finished = true;
      report({ phase: 'deduplicated', bytesDone: size, bytesTotal: size, bytesPerSecond: 0 });
      return {
        ...base,
        status: 'committed',
        version: committed.version,
        deduplicated: true,
        resumed: false,
        partsSent: 0,
        partsSkipped: 0,
        bytesSent: 0,
      };
    }

    // 3. Send.
    let sent = { parts: 0, skipped: 0, bytes: 0, resumed: false };
    if ('upload' in answer) {
      const uploading = new ProgressMeter('uploading', size);
      report(uploading.snapshot());
      const body = file.slice(0, size, contentType);
      const headers = sendableHeaders(answer.upload.headers);
      await withRetries(
        async () => {
          const put = await putter(answer.upload.url, headers, body, signal, (bytes) =>
            report(uploading.set(bytes)),
          );
          if (put.status >= 200 && put.status < 300) return;
          const message = `uploading the file: ${storageMessage(put.status, put.body)}`;
          if (isRetryableStatus(put.status)) throw new TransientError(message, put.status);
          throw new UploadError(message, 'storage_rejected', put.status);
        },
        { retries, backoff, signal },
      );
      sent = { parts: 0, skipped: 0, bytes: size, resumed: false };
    } else if ('multipart' in answer) {
      sent = await sendParts({
        uploadId: answer.uploadId,
        size,
        state: answer.multipart,
        resumed: answer.resumed === true,
        file,
        api,
        putter,
        hash,
        concurrency,
        retries,
        backoff,
        signal,
        report,
      });
    } else {
      throw new UploadError(
        'the API answered an upload with neither a PUT URL nor a part plan',
        'bad_answer',
        0,
      );
    }

    // 4. Verify.
    report({ phase: 'verifying', bytesDone: size, bytesTotal: size, bytesPerSecond: 0 });
    const id = encodeURIComponent(answer.uploadId);
    let wait = pollFirstMs;
    const verifyDeadline = Date.now() + (options.verifyTimeoutMs ?? 30 * 60_000);
    for (;;) {
      const { data: state } = await api.call<UploadState>('GET', `/v1/uploads/${id}`, undefined, signal);
      if (state.status !== 'pending') {
        finished = true;
        const committed = state.status === 'committed';
        report({
          phase: committed ? 'committed' : 'rejected',
          bytesDone: size,
          bytesTotal: size,
          bytesPerSecond: 0,
        });
        return {
          ...base,
          status: committed ? 'committed' : 'rejected',
          ...(state.version === undefined ? {} : { version: state.version }),
          ...(state.reason === undefined ? {} : { reason: state.reason }),
          deduplicated: state.deduplicated === true,
          resumed: sent.resumed,
          partsSent: sent.parts,
          partsSkipped: sent.skipped,
          bytesSent: sent.bytes,
        };
      }
      if (Date.now() >= verifyDeadline) {
        throw new UploadError(
          `the upload was stored but not verified within ${Math.round((options.verifyTimeoutMs ?? 1_800_000) / 1000)} s; ` +
            `GET /v1/uploads/${answer.uploadId} tells how it ends`,
          'verify_timeout',
          0,
        );
      }
      await sleep(wait, signal);
      wait = Math.min(2000, wait * 2);
    }
  } catch (error) {
    const aborted = outer?.aborted === true;
    inner.abort(aborted && outer ? abortReason(outer) : error);
    if (aborted && uploadId !== undefined && !finished) {
      // Best effort, on a fresh signal: the upload is abandoned whatever the API answers.
      await api
        .once('DELETE', `/v1/uploads/${encodeURIComponent(uploadId)}`, undefined, AbortSignal.timeout(10_000))
        .catch(() => undefined);
    }
    if (aborted && outer) throw abortReason(outer);
    throw error;
  } finally {
    outer?.removeEventListener('abort', forward);
    hasher.close();
  }
}

/**
 * Answers the claim's challenge. Resolves with the commit when the mirror holds the content;
 * undefined when it asks for the bytes (`proof_not_accepted`, the same answer whatever the
 * reason); throws other errors (a version conflict, the network giving out).
 */
async function prove(
  api: ApiClient,
  file: Blob,
  uploadId: string,
  challenge: Challenge,
  signal: AbortSignal,
): Promise<ProofAnswer | undefined> {
  let digest: string;
  try {
    digest = await proofDigest(file, challenge);
  } catch (error) {
    if (signal.aborted) throw abortReason(signal);
    const message = error instanceof Error ? error.message : String(error);
    throw new UploadError(`cannot read the file: ${message}`, 'file_unreadable', 0, undefined, {
      cause: error,
    });
  }
  try {
    const { data } = await api.call<ProofAnswer>(
      'POST',
      `/v1/uploads/${encodeURIComponent(uploadId)}/proof`,
      { digest },
      signal,
    );
    return data;
  } catch (error) {
    if (error instanceof UploadError && error.code === 'proof_not_accepted') return undefined;
    throw error;
  }
}

interface SendPartsInput {
  readonly uploadId: string;
  readonly size: number;
  readonly state: MultipartState;
  readonly resumed: boolean;
  readonly file: Blob;
  readonly api: ApiClient;
  readonly putter: Putter;
  readonly hash: (start: number, end: number) => Promise<string>;
  readonly concurrency: number;
  readonly retries: number;
  readonly backoff: BackoffOptions;
  readonly signal: AbortSignal;
  readonly report: (progress: UploadProgress) => void;
}

/** Sends the parts S3 does not hold, then completes; returns what was sent. */
async function sendParts(input: SendPartsInput) {
  const { uploadId, size, api, signal, report } = input;
  const id = encodeURIComponent(uploadId);
  let plan: PartPlan;
  try {
    plan = checkPlan(size, input.state);
  } catch (error) {
    throw new UploadError((error as Error).message, 'bad_plan', 0, undefined, { cause: error });
  }
  const initial: readonly StoredPart[] = input.state.uploadedParts ?? [];
  const skippedParts = plan.partCount - missingParts(size, plan, initial).length;
  const meter = new ProgressMeter('uploading', size, undefined, undefined, storedBytes(size, plan, initial));
  report(meter.snapshot());
  let stored = initial;
  let partsSent = 0;
  let bytesSent = 0;

  // A complete that finds parts missing (`parts_missing`: a part not recorded) sends those again;
  // one that S3 refuses as recorded (`invalid_parts`: the part it holds is not the one recorded)
  // sends every part again. Then it tries again, twice at most.
  let resendAll = false;
  for (let round = 0; ; round++) {
    const todo = resendAll ? allParts(size, plan) : missingParts(size, plan, stored);
    const progress = new PartProgress(size - todo.reduce((sum, p) => sum + p.size, 0));
    const queue = [...todo];
    const runner = async () => {
      for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
        await sendPart(input, id, part, {
          sent: (bytes) => report(meter.set(progress.sent(part.partNumber, bytes))),
          restart: () => progress.restart(part.partNumber),
        });
        partsSent++;
        bytesSent += part.size;
        report(meter.set(progress.finished(part.partNumber, part.size)));
      }
    };
    // The first part that fails for good fails the upload; the others are aborted by the caller.
    await Promise.all(Array.from({ length: Math.min(input.concurrency, todo.length) }, runner));

    try {
      await api.call('POST', `/v1/uploads/${id}/complete`, {}, signal);
      break;
    } catch (error) {
      if (error instanceof UploadError && error.status === 409 && error.code === 'upload_finished') break;
      if (!(error instanceof UploadError && error.field === 'parts') || round >= 2) throw error;
      const { data } = await api.call<UploadState>('GET', `/v1/uploads/${id}`, undefined, signal);
      if (data.status !== 'pending') break;
      stored = data.multipart?.uploadedParts ?? [];
      resendAll = error.code === 'invalid_parts';
    }
  }
  return { parts: partsSent, skipped: skippedParts, bytes: bytesSent, resumed: input.resumed };
}

async function sendPart(
  input: SendPartsInput,
  id: string,
  part: PartRange,
  progress: { sent(bytes: number): void; restart(): void },
): Promise<void> {
  const { api, putter, signal } = input;
  const sha256 = await input.hash(part.start, part.end);
  const body = input.file.slice(part.start, part.end);
  if (body.size !== part.size) {
    throw new UploadError(`the file is shorter than expected at part ${part.partNumber}`, 'file_changed', 0);
  }
  let signed: PartUrl | undefined;
  let resigned = false;
  const etag = await withRetries(
    async () => {
      const expired = signed?.expiresAt !== undefined && Date.parse(signed.expiresAt) - Date.now() < 30_000;
      if (signed === undefined || expired) {
        const answer = await api.once<PartUrl>(
          'POST',
          `/v1/uploads/${id}/parts`,
          { partNumber: part.partNumber, size: part.size, sha256 },
          signal,
        );
        signed = answer.data;
      }
      progress.restart();
      const put = await putter(signed.url, sendableHeaders(signed.headers), body, signal, (b) =>
        progress.sent(b),
      );
      if (put.status >= 200 && put.status < 300) {
        if (!put.etag) {
          throw new UploadError(
            `storage stored part ${part.partNumber} but its ETag header cannot be read: ` +
              "the bucket's CORS rules must expose it (ExposeHeaders: ETag)",
            'etag_hidden',
            put.status,
          );
        }
        return put.etag;
      }
      const message = `uploading part ${part.partNumber}: ${storageMessage(put.status, put.body)}`;
      if (isRetryableStatus(put.status)) throw new TransientError(message, put.status);
      if (put.status === 403 && !resigned) {
        // An expired or refused signature: sign again once, then give up.
        resigned = true;
        signed = undefined;
        throw new TransientError(message, put.status);
      }
      throw new UploadError(message, 'storage_rejected', put.status);
    },
    { retries: input.retries, backoff: input.backoff, signal },
  );
  // Recorded parts are what complete assembles and what a resume skips.
  await api.call(
    'PUT',
    `/v1/uploads/${id}/parts/${part.partNumber}`,
    { size: part.size, sha256, etag },
    signal,
  );
}
