/**
 * A page that signs its API requests with SigV4 (an API behind IAM, docs/browser.md "Tokens") on a
 * computer whose clock is 20 minutes fast, in Debian's Chromium. The API's `Date` header, exposed to
 * pages by CORS (`API_EXPOSED_HEADERS`), lets the signer date its signatures with the API's time.
 *
 * The local front refuses signatures from pages (its key pair is public: docs/local-gates.md), so
 * a stand-in for API Gateway's IAM authorizer sits in front of it: it checks each signature
 * (local/sigv4.ts, refusing one dated 15 minutes or more off) and passes the request on with the
 * stack's token. Every answer header the page reads (CORS, `Date`) is the front's own.
 */
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, verifySigV4 } from '../../local/sigv4.ts';
import {
  type Browser,
  buildFixturePage,
  launchBrowser,
  randomFile,
  type Stack,
  startStack,
  watchConsole,
} from './support.ts';

const KEYS = { accessKeyId: 'AKIDPAGE', secretAccessKey: 'page-secret-key-of-this-test' };
const REGION = 'eu-west-1';
const CLOCK_FAST_MS = 20 * 60 * 1000;

let stack: Stack;
let browser: Browser;
let gateway: Server;
let gatewayUrl: string;
/** What the stand-in authorizer decided, request by request. */
const decisions: string[] = [];

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The request, as received, passed to the front (its Host, the given headers). */
function toFront(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer): Promise<Answer> {
  const front = new URL(stack.api);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: front.hostname,
        port: front.port,
        method,
        path: url,
        headers: { ...headers, host: front.host },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** API Gateway with the IAM authorizer, in front of the local front. */
function startGateway(): Promise<void> {
  gateway = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const method = req.method ?? 'GET';
      const url = req.url ?? '/';
      let answer: Answer;
      if (method === 'OPTIONS') {
        answer = await toFront(method, url, req.headers, body);
      } else {
        const verdict = await verifySigV4(
          { method, url, headers: req.headers, payloadHash: sha256Hex(body) },
          { service: 'execute-api', credentials: KEYS, region: REGION },
        );
        const { authorization: _a, 'x-amz-date': _d, 'x-amz-content-sha256': _c, ...rest } = req.headers;
        if (verdict.ok) {
          decisions.push(`accepted ${method} ${url.split('?')[0]}`);
          answer = await toFront(method, url, { ...rest, authorization: `Bearer ${stack.token}` }, body);
        } else {
          decisions.push(`refused ${verdict.reason}`);
          // The front's own refusal of an unauthorized request (its CORS headers, its Date), as 403.
          const front = await toFront(method, url, rest, body);
          const refusal = Buffer.from(JSON.stringify({ message: `${verdict.code}: ${verdict.message}` }));
          answer = {
            status: 403,
            headers: {
              ...front.headers,
              'content-length': String(refusal.length),
              'www-authenticate': undefined,
            },
            body: refusal,
          };
        }
      }
      const headers = Object.fromEntries(
        Object.entries(answer.headers).filter(
          (pair): pair is [string, string | string[]] => pair[1] !== undefined && pair[0] !== 'connection',
        ),
      );
      res.writeHead(answer.status, headers).end(answer.body);
    });
  });
  return new Promise((resolve) =>
    gateway.listen(0, '127.0.0.1', () => {
      gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
      resolve();
    }),
  );
}

beforeAll(async () => {
  stack = await startStack();
  const dist = join(stack.tmp, 'dist');
  await buildFixturePage(dist, 'iam-test', new URL('./fixtures/iam-page.ts', import.meta.url), {
    multiple: false,
  });
  await startGateway();
  browser = await launchBrowser(stack.tmp);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => gateway?.close(resolve));
  await stack?.stop();
}, 60_000);

describe('a page signing with IAM credentials on a computer whose clock is off', () => {
  it("reads the API's Date across origins and signs with the API's time: the upload commits", async () => {
    const file = await randomFile(join(stack.tmp, 'signed.bin'), 200_000, 91);
    const page = await browser.context.newPage();
    const consoleErrors = watchConsole(page);
    // Another origin than the API's (the front's other loopback name, which its CORS rule allows).
    const pageOrigin = stack.api.replace('127.0.0.1', 'localhost');
    await page.goto(`${pageOrigin}/iam-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    await page.setInputFiles('#files', file);

    const outcome = await page.evaluate(
      ({ api, keys, region, off }) => window.mirrorIam.upload(api, keys, region, off, 'iam/signed.bin'),
      { api: gatewayUrl, keys: KEYS, region: REGION, off: CLOCK_FAST_MS },
    );
    // Before, the Date was hidden from the page: the first request's 403 stood.
    expect(outcome.error).toBeUndefined();
    expect(outcome.result).toMatchObject({ status: 'committed', version: 1 });
    // One request refused for its date, resent once with the API's time; every later one accepted.
    expect(decisions[0]).toBe('refused skewed');
    expect(decisions.slice(1).every((d) => d.startsWith('accepted '))).toBe(true);
    expect(decisions[1]).toBe('accepted POST /v1/uploads');
    // The one 403 is the clock's, which the page corrected.
    expect(consoleErrors.filter((e) => !/403/.test(e))).toEqual([]);
    await page.close();
  });
});
