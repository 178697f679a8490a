/**
 * A request that hangs (a black-holed connection: a mobile link, a Wi-Fi handover) is abandoned
 * and retried like a network error, and the rate shown falls while nothing moves (probe 13, W3).
 * Browsers put no limit on XMLHttpRequest or fetch, and a dead TCP path can take 15 minutes or
 * more to fail. Real sockets: a server that takes the connection and then reads nothing more, so
 * the client's writes stop once the kernel's buffers are full, as on a dead path.
 */
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../../web/client/errors.ts';
import type { UploadProgress } from '../../../web/client/plan.ts';
import { fetchPutter, xhrPutter } from '../../../web/client/upload/storage.ts';
import { uploadFile } from '../../../web/client/upload-file.ts';
import { blobOf, bytesOf, FakeMirror, MiB, uploadOptions } from './fake-api.ts';

/** Takes connections, and reads nothing of them (`blackHole`), or reads each PUT whole, slowly, and answers 200. */
function storageServer(mode: { blackHole: boolean; pauseMs?: number }) {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (mode.blackHole) {
      socket.pause();
      return;
    }
    answerWhenWhole(socket, mode.pauseMs ?? 0);
  });
  return { server, sockets };
}

/** Reads a PUT to its content-length, pausing `pauseMs` after each 2 MiB, then answers 200. */
function answerWhenWhole(socket: Socket, pauseMs: number): void {
  let head = '';
  let expected = -1;
  let got = 0;
  let nextPause = 2 * MiB;
  socket.on('data', (chunk: Buffer) => {
    if (expected < 0) {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      expected = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      got = head.length - end - 4;
    } else got += chunk.length;
    if (got >= expected) socket.end('HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 0\r\n\r\n');
    else if (pauseMs > 0 && got >= nextPause) {
      nextPause += 2 * MiB;
      socket.pause();
      setTimeout(() => socket.resume(), pauseMs);
    }
  });
}

async function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * Enough of XMLHttpRequest over node:http for xhrPutter: the body is written in 64 KiB chunks
 * and `upload.onprogress` fires as each is handed to the socket, as a browser's does.
 */
class NodeXhr {
  readonly upload: { onprogress: ((event: { loaded: number }) => void) | null } = { onprogress: null };
  onprogress: (() => void) | null = null;
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  ontimeout: (() => void) | null = null;
  onabort: (() => void) | null = null;
  status = 0;
  responseText = '';
  #url = '';
  #headers: Record<string, string> = {};
  #answerHeaders = '';
  #request: ReturnType<typeof httpRequest> | undefined;
  #ended = false;

  open(_method: string, url: string): void {
    this.#url = url;
  }
  setRequestHeader(name: string, value: string): void {
    this.#headers[name] = value;
  }
  getAllResponseHeaders(): string {
    return this.#answerHeaders;
  }
  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#request?.destroy();
    this.onabort?.();
  }
  send(body: Blob): void {
    const request = httpRequest(this.#url, {
      method: 'PUT',
      headers: { ...this.#headers, 'content-length': String(body.size) },
    });
    this.#request = request;
    request.on('error', () => {
      if (this.#ended) return;
      this.#ended = true;
      this.onerror?.();
    });
    request.on('response', (response) => {
      this.status = response.statusCode ?? 0;
      this.#answerHeaders = Object.entries(response.headers)
        .map(([name, value]) => `${name}: ${String(value)}`)
        .join('\r\n');
      response.on('data', (chunk: Buffer) => {
        this.responseText += chunk.toString();
        this.onprogress?.();
      });
      response.on('end', () => {
        if (this.#ended) return;
        this.#ended = true;
        this.onload?.();
      });
    });
    void this.#write(request, body);
  }
  async #write(request: ReturnType<typeof httpRequest>, body: Blob): Promise<void> {
    const bytes = new Uint8Array(await body.arrayBuffer());
    const chunk = 64 * 1024;
    for (let at = 0; at < bytes.length && !this.#ended; at += chunk) {
      const piece = bytes.subarray(at, at + chunk);
      await new Promise<void>((resolve) => request.write(piece, () => resolve()));
      if (!this.#ended) this.upload.onprogress?.({ loaded: Math.min(bytes.length, at + chunk) });
    }
    if (!this.#ended) request.end();
  }
}

const never = () => new AbortController().signal;
const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

describe('a storage PUT that stalls', () => {
  const blackHole = storageServer({ blackHole: true });
  const slow = storageServer({ blackHole: false, pauseMs: 100 });
  let blackHoleUrl = '';
  let slowUrl = '';
  beforeAll(async () => {
    blackHoleUrl = `${await listen(blackHole.server)}/bucket/key`;
    slowUrl = `${await listen(slow.server)}/bucket/key`;
    vi.stubGlobal('XMLHttpRequest', NodeXhr);
  });
  afterAll(async () => {
    vi.unstubAllGlobals();
    for (const { server, sockets } of [blackHole, slow]) {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('xhrPutter: no upload progress for the stall window aborts the PUT as a network error (retried)', async () => {
    const sent: number[] = [];
    const started = performance.now();
    const failure = await failureOf(
      // A window long enough for the first progress event to arrive on a loaded machine (at 0.4 s
      // none had, now and then, under a full suite on 2 cores).
      xhrPutter(1500)(blackHoleUrl, {}, new Blob([bytesOf(48 * MiB)]), never(), (n) => sent.push(n)),
    );
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ code: 'network', status: 0, transient: true });
    expect((failure as Error).message).toMatch(/storage took no bytes for 1\.5 s \(stalled\)/);
    // Some bytes went (into the kernel's buffers), then none: the stall is no progress, not the total time.
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.at(-1)).toBeLessThan(48 * MiB);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1500);
  }, 15_000);

  it('xhrPutter: a slow PUT that keeps moving is not cut, however long it takes in all', async () => {
    const started = performance.now();
    const answer = await xhrPutter(1000)(
      slowUrl,
      {},
      new Blob([bytesOf(40 * MiB)]),
      never(),
      () => undefined,
    );
    expect(answer).toMatchObject({ status: 200, etag: '"e"' });
    // 20 pauses of 100 ms: longer in all than the stall window.
    expect(performance.now() - started).toBeGreaterThan(1500);
  }, 30_000);

  it('fetchPutter (no progress to watch): a PUT not answered within the stall window plus its bytes at 16 kB/s is a network error', async () => {
    const started = performance.now();
    const body = new Blob([bytesOf(1600)]);
    const failure = await failureOf(
      fetchPutter(fetch, 300)(blackHoleUrl, {}, body, never(), () => undefined),
    );
    expect(failure).toMatchObject({ name: 'ApiError', code: 'network', status: 0, transient: true });
    expect((failure as Error).message).toMatch(/storage did not answer within 0\.4 s \(stalled\)/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  }, 15_000);

  it('uploadFile: a stalled single PUT is retried, and the retry that goes through commits', async () => {
    const mirror = new FakeMirror();
    let puts = 0;
    mirror.interceptors.push(async (r) => {
      if (r.method !== 'PUT') return undefined;
      puts++;
      if (puts > 1) return undefined;
      // The first PUT hangs until the client gives up on it.
      await new Promise((_, reject) =>
        r.signal?.addEventListener('abort', () => reject(r.signal?.reason), { once: true }),
      );
      return undefined;
    });
    const result = await uploadFile(
      blobOf(bytesOf(1000)),
      uploadOptions(mirror, { stallTimeoutMs: 200, retries: 2 }),
    );
    expect(result).toMatchObject({ status: 'committed', version: 1 });
    expect(puts).toBe(2);
  }, 15_000);
});

describe('an API call that stalls', () => {
  const hung = createHttpServer(() => {
    // Takes the request and never answers, as a dead path would.
  });
  let api = '';
  beforeAll(async () => {
    api = await listen(hung);
  });
  afterAll(async () => {
    hung.closeAllConnections();
    await new Promise((resolve) => hung.close(resolve));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("uploadFile's own client gives up on an API call after the stall window and retries it", async () => {
    const failure = await failureOf(
      uploadFile(blobOf(bytesOf(100)), {
        api,
        token: 'tok',
        path: 'media/a.bin',
        sha256: '0'.repeat(64),
        workerUrl: null,
        stallTimeoutMs: 300,
        retries: 1,
        backoff: { baseMs: 1, maxMs: 5 },
      }),
    );
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ code: 'network', status: 0, transient: true });
    expect((failure as Error).message).toMatch(
      /\(POST \/v1\/uploads\): timed out.*\(gave up after 2 attempts\)/,
    );
  }, 15_000);

  it('by default an API call is given 30 s', async () => {
    vi.useFakeTimers();
    const calls: number[] = [];
    const hangs = ((_url: string, init: RequestInit) => {
      calls.push(Date.now());
      return new Promise<Response>((_, reject) => {
        const signal = init.signal as AbortSignal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }) as typeof fetch;
    const upload = failureOf(
      uploadFile(blobOf(bytesOf(100)), {
        api: 'https://api.test',
        token: 'tok',
        path: 'media/a.bin',
        sha256: '0'.repeat(64),
        workerUrl: null,
        fetch: hangs,
        retries: 0,
      }),
    );
    await vi.advanceTimersByTimeAsync(29_900);
    expect(calls).toHaveLength(1);
    let settled: unknown = 'pending';
    void upload.then((error) => {
      settled = error;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe('pending');
    await vi.advanceTimersByTimeAsync(200);
    expect(await upload).toMatchObject({ code: 'network', transient: true });
    expect(((await upload) as Error).message).toMatch(/timed out/);
  }, 10_000);
});

describe('the rate while a PUT hangs', () => {
  it('progress is reported every second while nothing moves, so the rate shown falls to 0', async () => {
    const mirror = new FakeMirror();
    mirror.interceptors.push(async (r) => {
      if (r.method !== 'PUT') return undefined;
      await new Promise((resolve) => setTimeout(resolve, 3500));
      return undefined;
    });
    const events: UploadProgress[] = [];
    const result = await uploadFile(
      blobOf(bytesOf(1000)),
      uploadOptions(mirror, { onProgress: (p) => events.push(p) }),
    );
    expect(result.status).toBe('committed');
    const uploading = events.filter((e) => e.phase === 'uploading');
    // The first report, one a second while the PUT hangs, and the last.
    expect(uploading.length).toBeGreaterThanOrEqual(4);
    expect(uploading.slice(0, -1).every((e) => e.bytesPerSecond === 0)).toBe(true);
  }, 15_000);
});
