/**
 * How the CLI's API client reaches the API: node-fetch, which speaks through node:http.
 *
 * Node's own fetch (undici) compiles its WebAssembly HTTP parser on the first request, and V8
 * then optimises that module on a background thread that the process waits for when it exits.
 * Measured on a `sync` with nothing to send (three API requests), that is about 0.25 s of CPU,
 * 0.3 s of wall time and 40 MiB per run; node:http parses with the native parser (docs/cli.md,
 * "Start-up"). Only the API client's requests go this way: their answers are read as text, so
 * node-fetch's Node-stream bodies never reach code written for web streams (downloads and part
 * uploads keep the global fetch).
 */
import type { FetchLike } from '../web/client/api.ts';

/** As fetch follows redirects (at most 20). */
const MAX_REDIRECTS = 20;

interface Hop {
  readonly url: string;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

export const apiFetch: FetchLike = async (input, init) => {
  const { default: fetch } = await import('node-fetch');
  const signal = init.signal ?? undefined;
  const follow = (init.redirect ?? 'follow') === 'follow';
  let hop: Hop = {
    url: String(input),
    method: init.method ?? 'GET',
    headers: { ...(init.headers as Record<string, string> | undefined) },
    body: typeof init.body === 'string' ? init.body : undefined,
  };
  try {
    for (let hops = 0; ; hops++) {
      // Redirects are followed here, not by node-fetch: it keeps `authorization` on a redirect to
      // another port of the same host name, which the web's fetch (another origin) drops.
      const response = await fetch(hop.url, { ...hop, redirect: 'manual', signal: signal ?? null });
      const location = response.headers.get('location');
      const redirected = response.status >= 300 && response.status <= 399 && location !== null;
      // The members the client reads (status, ok, headers.get, text) behave as the web's.
      if (!follow || !redirected) return response as unknown as Response;
      if (hops >= MAX_REDIRECTS)
        throw new Error(`more than ${MAX_REDIRECTS} redirects from ${String(input)}`);
      hop = nextHop(hop, response.status, location);
    }
  } catch (error) {
    // As fetch does: the signal's own reason (a TimeoutError at the time limit), and a socket
    // error (ECONNREFUSED...) as the `cause` of a TypeError.
    if (signal?.aborted) throw signal.reason;
    throw new TypeError('fetch failed', { cause: error });
  }
};

/** Where a redirect leads, as fetch goes there: no `authorization` to another origin; 303 (and 301/302 after a POST) as a GET. */
function nextHop(hop: Hop, status: number, location: string): Hop {
  const next = new URL(location, hop.url);
  const headers =
    next.origin === new URL(hop.url).origin
      ? hop.headers
      : Object.fromEntries(
          Object.entries(hop.headers).filter(([name]) => name.toLowerCase() !== 'authorization'),
        );
  const asGet = status === 303 || ((status === 301 || status === 302) && hop.method === 'POST');
  return asGet
    ? { url: next.href, method: 'GET', headers, body: undefined }
    : { url: next.href, method: hop.method, headers, body: hop.body };
}
