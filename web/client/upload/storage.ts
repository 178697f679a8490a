/**
 * The PUTs to presigned storage URLs: one request, through XMLHttpRequest in a page (it
 * reports upload progress, which fetch does not) or fetch elsewhere; and the single-PUT step.
 */
import { ApiError, abortReason, transientError } from '../errors.ts';
import { isRetryableStatus } from '../plan.ts';
import { requestSignal } from '../request-signal.ts';
import { type RetryOptions, withRetries } from '../retry.ts';
import { unreadable } from './hash.ts';

export interface PutAnswer {
  readonly status: number;
  readonly body: string;
  /** The `ETag` header, when storage's CORS rules expose it (`ExposeHeaders: ETag`). */
  readonly etag: string | undefined;
}

export type Putter = (
  url: string,
  headers: Record<string, string>,
  body: Blob,
  signal: AbortSignal,
  onSent: (bytes: number) => void,
) => Promise<PutAnswer>;

/**
 * Headers to send to a presigned URL: the API's `headers`, lower-cased. `content-length` and
 * `host` are the API's `automaticHeaders` (the browser sets them and refuses to be told): dropped
 * should a caller pass them among the headers.
 */
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
export function storageMessage(status: number, body: string): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  if (code || message)
    return `storage answered ${status} ${code ?? ''}${message ? `: ${message}` : ''}`.trim();
  return `storage answered ${status}`;
}

/**
 * A PUT that makes no progress this long is abandoned and retried like a network error. Browsers
 * put no limit on XMLHttpRequest or fetch, and a dead TCP path (a mobile link, a Wi-Fi handover)
 * can take 15 minutes or more to fail: the upload would hang meanwhile.
 */
export const DEFAULT_STALL_MS = 30_000;

/**
 * fetch reports no upload progress, so a PUT through it is given the stall window plus the time
 * its bytes take at this rate: slow enough for parts sent side by side over a slow link (an 8 MiB
 * part gets about 9 minutes), and still well short of what a dead connection takes to fail.
 */
export const FETCH_PUT_FLOOR_BYTES_PER_SECOND = 16 * 1024;

const seconds = (ms: number) => Math.round(ms / 100) / 10;

/** XMLHttpRequest where there is one and the caller gave no fetch; fetch otherwise. */
export function choosePutter(
  fetchImpl: typeof fetch,
  fetchGiven: boolean,
  stallMs = DEFAULT_STALL_MS,
): Putter {
  return !fetchGiven && typeof XMLHttpRequest !== 'undefined'
    ? xhrPutter(stallMs)
    : fetchPutter(fetchImpl, stallMs);
}

export function fetchPutter(fetchImpl: typeof fetch, stallMs = DEFAULT_STALL_MS): Putter {
  return async (url, headers, body, signal, onSent) => {
    // The upload's signal spans all its parts: each PUT hands fetch one of its own.
    const limitMs = stallMs + (body.size * 1000) / FETCH_PUT_FLOOR_BYTES_PER_SECOND;
    const request = requestSignal(signal, limitMs);
    let response: Response;
    let text: string;
    try {
      try {
        response = await fetchImpl(url, { method: 'PUT', headers, body, signal: request.signal });
      } catch (error) {
        if (signal.aborted) throw abortReason(signal);
        if (request.signal.aborted) {
          throw transientError(
            `storage did not answer within ${seconds(limitMs)} s (stalled)`,
            0,
            undefined,
            {
              cause: error,
            },
          );
        }
        // A file-backed Blob whose file changed (or went) since it was opened: no retry reads it.
        const cause = (error as { cause?: unknown }).cause;
        if ((cause as { name?: unknown } | undefined)?.name === 'NotReadableError') throw unreadable(cause);
        throw transientError(`could not reach storage (${(error as Error).message})`, 0, undefined, {
          cause: error,
        });
      }
      text = await response.text().catch(() => '');
    } finally {
      request.release();
    }
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

/** A timer that fires `onStall` once `ms` pass without a `poke`. */
function stallWatch(ms: number, onStall: () => void): { poke(): void; stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => clearTimeout(timer);
  const poke = () => {
    stop();
    timer = setTimeout(onStall, ms);
  };
  return { poke, stop };
}

/**
 * XMLHttpRequest reports upload progress, which fetch does not: a PUT with no progress event
 * (bytes sent, or the answer arriving) for `stallMs` is aborted as a network error.
 */
export function xhrPutter(stallMs = DEFAULT_STALL_MS): Putter {
  return (url, headers, body, signal, onSent) =>
    new Promise<PutAnswer>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const xhr = new XMLHttpRequest();
      let stalled = false;
      const watch = stallWatch(stallMs, () => {
        stalled = true;
        xhr.abort();
      });
      const onAbort = () => xhr.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      const settle = () => {
        watch.stop();
        signal.removeEventListener('abort', onAbort);
      };
      const cut = () => {
        if (signal.aborted) return abortReason(signal);
        if (stalled) return transientError(`storage took no bytes for ${seconds(stallMs)} s (stalled)`, 0);
        return transientError('the request to storage was cut', 0);
      };
      xhr.open('PUT', url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        watch.poke();
        onSent(event.loaded);
      };
      xhr.onprogress = () => watch.poke();
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
        // XMLHttpRequest tells nothing of why: a file-backed Blob whose file changed or went since
        // it was picked (Chromium's ERR_UPLOAD_FILE_CHANGED) fails as the network would, and every
        // retry alike, for the whole retry window. Reading a byte of it tells the two apart.
        unreadableBlob(body).then((cause) =>
          reject(
            cause === undefined
              ? transientError('could not reach storage (network error)', 0)
              : unreadable(cause),
          ),
        );
      };
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = () => {
        settle();
        reject(cut());
      };
      xhr.send(body);
      watch.poke();
    });
}

/** Why `blob` can no longer be read (a file changed or removed since it was picked); undefined if it can. */
async function unreadableBlob(blob: Blob): Promise<unknown> {
  try {
    await blob.slice(0, 1).arrayBuffer();
    return undefined;
  } catch (error) {
    return error;
  }
}

/** A storage answer that is not 2xx: transient (retried) or `storage_rejected`. */
export function storageFailure(what: string, put: PutAnswer): ApiError {
  const message = `${what}: ${storageMessage(put.status, put.body)}`;
  if (isRetryableStatus(put.status)) return transientError(message, put.status);
  return new ApiError(message, 'storage_rejected', put.status);
}

/** A presigned single PUT: where to send the file and the headers signed with it. */
export interface PutTarget {
  readonly url: string;
  readonly headers: Record<string, string>;
}

/**
 * The single-PUT step: the whole file to its presigned URL, with the signed headers, retried.
 * `renew` gives a URL signed again for the same upload: asked once, after storage refuses the
 * URL (403: expired, as after a long offline spell the client waited out), as a part's is.
 */
export async function putSingle(
  putter: Putter,
  target: PutTarget,
  body: Blob,
  onSent: (bytes: number) => void,
  retry: RetryOptions,
  renew?: () => Promise<PutTarget>,
): Promise<void> {
  let current = target;
  let renewed = false;
  await withRetries(async () => {
    for (;;) {
      const put = await putter(current.url, sendableHeaders(current.headers), body, retry.signal, onSent);
      if (put.status >= 200 && put.status < 300) return;
      if (put.status !== 403 || renewed || renew === undefined)
        throw storageFailure('uploading the file', put);
      // Sent again at once with the new URL, not as a retry: a caller with no retries gets it too.
      current = await renew();
      renewed = true;
    }
  }, retry);
}
