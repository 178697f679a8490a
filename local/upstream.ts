/**
 * How a gate (local/gate.ts) hands a request it has checked to its emulator: in this process,
 * without a socket. The gates already hold each request whole (headers and a verified body),
 * and the emulators run in this same process: passing the request over a second loopback
 * connection cost another HTTP parse and a socket write and read each way, on the one main
 * thread that serves every emulator (docs/local-sizing.md). Clients still reach the gates over
 * HTTP, so what the SDK sends and receives is unchanged.
 *
 * fauxqs is a fastify app and takes requests through fastify's own `inject`. dynalite is a
 * plain `http.Server`: `inProcessUpstream` calls its request handler with the two small shims
 * below rather than with light-my-request (what `inject` uses), whose full
 * `IncomingMessage`/`ServerResponse` objects per request are the cost this removes; dynalite's
 * handler reads only the members the shims have.
 */
import { EventEmitter } from 'node:events';
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeader,
  OutgoingHttpHeaders,
  ServerResponse,
} from 'node:http';

export interface UpstreamRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface UpstreamAnswer {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: OutgoingHttpHeaders;
  readonly body: Buffer;
}

/** One request to an emulator, answered whole. */
export type Upstream = (request: UpstreamRequest) => Promise<UpstreamAnswer>;

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** The request side: headers, method and URL, then the body as one `data` event and `end`. */
class ShimRequest extends EventEmitter {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
  ) {
    super();
  }
}

/** The response side: what the handler sets, collected until `end`. */
class ShimResponse {
  statusCode = 200;
  headersSent = false;
  readonly #headers = new Map<string, OutgoingHttpHeader>();

  constructor(private readonly settle: (answer: UpstreamAnswer) => void) {}

  setHeader(name: string, value: OutgoingHttpHeader): this {
    this.#headers.set(name.toLowerCase(), value);
    return this;
  }

  getHeader(name: string): OutgoingHttpHeader | undefined {
    return this.#headers.get(name.toLowerCase());
  }

  writeHead(status: number, headers?: OutgoingHttpHeaders): this {
    this.statusCode = status;
    for (const [name, value] of Object.entries(headers ?? {}))
      if (value !== undefined) this.setHeader(name, value);
    return this;
  }

  end(body?: string | Buffer): this {
    this.headersSent = true;
    const bytes = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
    this.settle({ status: this.statusCode, headers: Object.fromEntries(this.#headers), body: bytes });
    return this;
  }
}

/** Calls `listener` (an `http.Server`'s request handler) with each request, in this process. */
export function inProcessUpstream(listener: RequestListener): Upstream {
  return (request) =>
    new Promise<UpstreamAnswer>((resolve, reject) => {
      const req = new ShimRequest(request.method, request.url, request.headers);
      const res = new ShimResponse(resolve);
      try {
        listener(req as unknown as IncomingMessage, res as unknown as ServerResponse);
        if (request.body.length > 0) req.emit('data', request.body);
        req.emit('end');
      } catch (err) {
        reject(err);
      }
    });
}
