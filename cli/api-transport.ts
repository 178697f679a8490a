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

export const apiFetch: FetchLike = async (input, init) => {
  const { default: fetch } = await import('node-fetch');
  const signal = init.signal ?? undefined;
  try {
    const response = await fetch(input, {
      method: init.method ?? 'GET',
      headers: init.headers as Record<string, string> | undefined,
      body: typeof init.body === 'string' ? init.body : undefined,
      redirect: init.redirect ?? 'follow',
      signal: signal ?? null,
    });
    // The members the client reads (status, ok, headers.get, text) behave as the web's.
    return response as unknown as Response;
  } catch (error) {
    // As fetch does: the signal's own reason (a TimeoutError at the time limit), and a socket
    // error (ECONNREFUSED...) as the `cause` of a TypeError.
    if (signal?.aborted) throw signal.reason;
    throw new TypeError('fetch failed', { cause: error });
  }
};
