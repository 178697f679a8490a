/**
 * A hostile page on the developer's machine, in Debian's Chromium: served from a second
 * loopback origin, it can neither read nor write the local DynamoDB, SQS or API ports,
 * nor get /config.json; reached through a rebound host name it gets nothing from the API
 * front; config.json carries no token (any local process can read it over loopback); and
 * the upload page ignores an `?api=` address that is not this API, so a link cannot send
 * the token elsewhere.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListQueuesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS } from '../../local/emulators.ts';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { CHROMIUM, CHROMIUM_FLAGS } from './support.ts';

let tmp: string;
let sandbox: Sandbox;
let context: BrowserContext;
let evil: Server;
let evilOrigin: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mirror-gate-browser-'));
  sandbox = await startSandbox({
    dataDir: join(tmp, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    env: {},
    // webDir left out: the page is built into the data folder with its config.json, as `npm start` does.
    agents: false,
    polling: { waitTimeSeconds: 1 },
    log: () => undefined,
    functionLog: () => undefined,
  });
  // The second origin: any page the developer happens to open.
  evil = createServer((_req, res) => {
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end('<!doctype html><title>elsewhere</title>');
  });
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
  evilOrigin = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    // A DNS-rebinding page: its own host name, resolving to loopback.
    args: [...CHROMIUM_FLAGS, '--host-resolver-rules=MAP rebound.example 127.0.0.1'],
  });
}, 120_000);

afterAll(async () => {
  await context?.close();
  await new Promise((resolve) => evil?.close(resolve));
  await sandbox?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

interface Attempt {
  readonly name: string;
  /** `read`: a CORS fetch whose answer the page wants; `write`: a no-cors POST fired blind. */
  readonly mode: 'read' | 'write';
  readonly url: string;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

describe('a page from a second origin', () => {
  it('cannot read the DynamoDB, SQS or API ports, nor /config.json', async () => {
    const page = await context.newPage();
    await page.goto(`${evilOrigin}/`);
    const { dynamodb, sqs } = sandbox.endpoints;
    const json = { 'content-type': 'application/x-amz-json-1.0' };
    const attempts: Attempt[] = [
      {
        name: 'DynamoDB ListTables',
        mode: 'read',
        url: dynamodb.endpoint,
        method: 'POST',
        headers: { ...json, 'x-amz-target': 'DynamoDB_20120810.ListTables' },
        body: '{}',
      },
      {
        name: 'SQS ListQueues',
        mode: 'read',
        url: sqs.endpoint,
        method: 'POST',
        headers: { ...json, 'x-amz-target': 'AmazonSQS.ListQueues' },
        body: '{}',
      },
      {
        name: 'config.json',
        mode: 'read',
        url: `${sandbox.endpoints.api}/config.json`,
        method: 'GET',
        headers: {},
      },
      {
        name: 'API targets',
        mode: 'read',
        url: `${sandbox.endpoints.api}/v1/targets`,
        method: 'GET',
        headers: { authorization: 'Bearer guessed' },
      },
    ];
    const results = await page.evaluate(async (list: Attempt[]) => {
      const out: Record<string, string> = {};
      for (const a of list) {
        try {
          const init: RequestInit = { method: a.method, headers: a.headers, cache: 'no-store' };
          if (a.body !== undefined) init.body = a.body;
          const response = await fetch(a.url, init);
          out[a.name] = `read ${response.status}: ${(await response.text()).slice(0, 200)}`;
        } catch (error) {
          out[a.name] = `refused: ${(error as Error).name}`;
        }
      }
      return out;
    }, attempts);
    for (const a of attempts) expect(results[a.name], a.name).toBe('refused: TypeError');
    // And the page's own origin sees the token no other way: not through a cross-origin script load.
    const leaked = await page.evaluate(async (url: string) => {
      const frame = await fetch(url, { mode: 'no-cors' });
      return frame.type === 'opaque' ? '' : await frame.text();
    }, `${sandbox.endpoints.api}/config.json`);
    expect(leaked).not.toContain(sandbox.endpoints.token);
    await page.close();
  });

  it('cannot write: blind no-cors posts and forged CORS requests to DynamoDB, SQS and the API change nothing', async () => {
    const page = await context.newPage();
    await page.goto(`${evilOrigin}/`);
    const { dynamodb, sqs } = sandbox.endpoints;
    // text/plain: the content type a no-cors request may carry, and what a form post sends.
    const createTable = JSON.stringify({
      TableName: 'planted-by-a-page',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    });
    await page.evaluate(
      async (a: { dynamo: string; sqs: string; api: string; createTable: string }) => {
        const blind = (url: string, body: string) =>
          fetch(url, {
            method: 'POST',
            mode: 'no-cors',
            body,
            headers: { 'content-type': 'text/plain' },
          }).catch(() => undefined);
        // What bare dynalite took from any page: its preflight allowed every origin, and it
        // checked only that an AWS4 Authorization header was there.
        const forged = (url: string, target: string, body: string) =>
          fetch(url, {
            method: 'POST',
            body,
            headers: {
              'content-type': 'application/x-amz-json-1.0',
              'x-amz-target': target,
              'x-amz-date': '20261129T000000Z',
              authorization: `AWS4-HMAC-SHA256 Credential=S3RVER/20261129/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
            },
          }).catch(() => undefined);
        const queue = JSON.stringify({ QueueName: 'planted-by-a-page' });
        await blind(a.dynamo, a.createTable);
        await forged(a.dynamo, 'DynamoDB_20120810.CreateTable', a.createTable);
        await blind(a.sqs, queue);
        await forged(a.sqs, 'AmazonSQS.CreateQueue', queue);
        await blind(
          `${a.api}/v1/uploads`,
          JSON.stringify({ path: 'planted.txt', size: 1, sha256: '0'.repeat(64) }),
        );
      },
      { dynamo: dynamodb.endpoint, sqs: sqs.endpoint, api: sandbox.endpoints.api, createTable },
    );
    const credentials = { ...LOCAL_CREDENTIALS };
    const ddb = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamodb.endpoint, credentials });
    const queue = new SQSClient({
      region: 'us-east-1',
      endpoint: sqs.endpoint,
      credentials: { ...credentials },
    });
    try {
      expect((await ddb.send(new ListTablesCommand({}))).TableNames).not.toContain('planted-by-a-page');
      const urls = (await queue.send(new ListQueuesCommand({}))).QueueUrls ?? [];
      expect(urls.some((u) => u.includes('planted-by-a-page'))).toBe(false);
      const file = await fetch(`${sandbox.endpoints.api}/v1/files/planted.txt`, {
        headers: { authorization: `Bearer ${sandbox.endpoints.token}` },
      });
      expect(file.status).toBe(404);
    } finally {
      ddb.destroy();
      queue.destroy();
    }
    await page.close();
  });

  it('under a rebound host name, gets 421 from the API front and no token', async () => {
    const page = await context.newPage();
    const port = new URL(sandbox.endpoints.api).port;
    const response = await page.goto(`http://rebound.example:${port}/config.json`);
    expect(response?.status()).toBe(421);
    expect(await page.content()).not.toContain(sandbox.endpoints.token);
    await page.close();
  });
});

describe('the upload page', () => {
  it('ignores ?api= outside the allowed origins: the token goes nowhere else', async () => {
    const page = await context.newPage();
    const elsewhere: string[] = [];
    await page.route('https://elsewhere.example/**', (route) => {
      elsewhere.push(route.request().url());
      return route.fulfill({ status: 200, contentType: 'application/json', body: '[]' });
    });
    // With the token in the fragment, as in the address `npm start` prints.
    await page.goto(
      `${sandbox.endpoints.api}/?api=${encodeURIComponent('https://elsewhere.example')}#token=${sandbox.endpoints.token}`,
    );
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    expect(await page.getAttribute('body', 'data-api')).toBe(sandbox.endpoints.api);
    expect(await page.getAttribute('body', 'data-api-ignored')).toBe('https://elsewhere.example');
    expect(elsewhere).toEqual([]);
    await page.close();
  });

  it('ignores ?api= naming an origin allowed to call the API (CORS) that is not this API', async () => {
    const corsOrigin = sandbox.topology.api.corsOrigins.find(
      (o) => o !== new URL(sandbox.endpoints.api).origin,
    ) as string;
    expect(corsOrigin).toBeDefined();
    const page = await context.newPage();
    const seen: string[] = [];
    await page.route(`${corsOrigin}/**`, (route) => {
      seen.push(route.request().url());
      return route.fulfill({ status: 200, contentType: 'application/json', body: '{}' });
    });
    await page.goto(
      `${sandbox.endpoints.api}/?api=${encodeURIComponent(corsOrigin)}#token=${sandbox.endpoints.token}`,
    );
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    expect(await page.getAttribute('body', 'data-api')).toBe(sandbox.endpoints.api);
    expect(await page.getAttribute('body', 'data-api-ignored')).toBe(corsOrigin);
    expect(seen).toEqual([]);
    // The token left the address (fragment included) once read.
    expect(page.url()).not.toContain('token');
    await page.close();
  });

  it('config.json carries no token, to any client, and is readable by its owner only', async () => {
    // A plain request, as any process on the machine can make (no Origin, no Sec-Fetch-Site).
    const response = await fetch(`${sandbox.endpoints.api}/config.json`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).not.toContain(sandbox.endpoints.token);
    expect(JSON.parse(text)).toEqual({
      api: sandbox.endpoints.api,
      origins: [sandbox.endpoints.api, sandbox.endpoints.api.replace('127.0.0.1', 'localhost')],
    });
    const mode = (await stat(join(tmp, 'data', 'web', 'config.json'))).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  it('follows ?api= naming an allowed origin', async () => {
    const page = await context.newPage();
    const port = new URL(sandbox.endpoints.api).port;
    const other = `http://localhost:${port}`;
    const seen: string[] = [];
    page.on('request', (r) => seen.push(r.url()));
    await page.goto(
      `${sandbox.endpoints.api}/?api=${encodeURIComponent(other)}#token=${sandbox.endpoints.token}`,
    );
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    expect(await page.getAttribute('body', 'data-api')).toBe(other);
    expect(await page.getAttribute('body', 'data-api-ignored')).toBeNull();
    expect(seen.some((u) => u.startsWith(`${other}/v1/`))).toBe(true);
    await page.close();
  });
});
