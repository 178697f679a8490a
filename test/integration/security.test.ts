/**
 * SECURITY.md, checked against the running local stack: every route the OpenAPI document
 * declares authenticated refuses a request without the token and one with a wrong token, the
 * one declared open answers without; and after uploads of every kind (single PUT, multipart,
 * deduplicated with a proof, reads of content) no log line of any function, agent or of the
 * stack itself carries the token, a presigned URL or a signature. A presigned URL signed longer ago
 * than the API's URLs live is refused, whatever expiry it names (the buckets' s3:signatureAge policy).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { uploadFile } from '../../web/client/index.ts';
import { localApi } from '../support/local-api.ts';

interface OpenApiOperation {
  readonly security?: readonly Record<string, readonly string[]>[];
}
interface OpenApiDocument {
  readonly security?: readonly Record<string, readonly string[]>[];
  readonly paths: Record<string, Record<string, OpenApiOperation>>;
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head']);
/** Values for the path parameters: the route must refuse before it looks at them. */
const SAMPLE_PARAMETERS: Record<string, string> = {
  path: 'security/probe.txt',
  id: 'upload-1',
  partNumber: '1',
};

let dir: string;
let sandbox: Sandbox;
const logLines: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mirror-security-'));
  sandbox = await startSandbox({
    dataDir: join(dir, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    env: {},
    webDir: null,
    agents: true,
    polling: { waitTimeSeconds: 1 },
    log: (message) => logLines.push(`[sandbox] ${message}`),
    functionLog: (name, line) => logLines.push(`[${name}] ${line}`),
  });
}, 120_000);

afterAll(async () => {
  await sandbox?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function operations(): Promise<{ method: string; path: string; open: boolean }[]> {
  const document = JSON.parse(await readFile('docs/openapi.json', 'utf8')) as OpenApiDocument;
  const list = [];
  for (const [template, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const security = operation.security ?? document.security ?? [];
      const path = template.replace(/\{(\w+)\}/g, (_, name: string) =>
        encodeURIComponent(SAMPLE_PARAMETERS[name] ?? 'x'),
      );
      list.push({ method: method.toUpperCase(), path, open: security.length === 0 });
    }
  }
  return list;
}

async function answerTo(operation: { method: string; path: string }, authorization: string | undefined) {
  const response = await fetch(`${sandbox.endpoints.api}${operation.path}`, {
    method: operation.method,
    headers: {
      'content-type': 'application/json',
      ...(authorization === undefined ? {} : { authorization }),
    },
    ...(['GET', 'HEAD', 'DELETE'].includes(operation.method) ? {} : { body: '{}' }),
  });
  // HEAD is GET without the body: its refusal is the status and headers alone.
  const body = (operation.method === 'HEAD' ? {} : await response.json()) as { error?: { code?: string } };
  return {
    route: `${operation.method} ${operation.path}`,
    status: response.status,
    code: body.error?.code,
    challenge: response.headers.get('www-authenticate')?.split(' ')[0],
  };
}

describe('authentication of every route in the OpenAPI document', () => {
  it('the document declares every route authenticated but the health check', async () => {
    const open = (await operations()).filter((o) => o.open).map((o) => `${o.method} ${o.path}`);
    expect(open).toEqual(['GET /v1/health', 'HEAD /v1/health']);
  });

  it('each authenticated route refuses no token and a wrong token (401, WWW-Authenticate), and changes nothing', async () => {
    const { token } = sandbox.endpoints;
    const walked: string[] = [];
    for (const operation of await operations()) {
      if (operation.open) continue;
      for (const authorization of [undefined, 'Bearer not-the-token', `Basic ${token}`, `Bearer ${token}x`]) {
        expect(await answerTo(operation, authorization)).toEqual({
          route: `${operation.method} ${operation.path}`,
          status: 401,
          code: operation.method === 'HEAD' ? undefined : 'unauthorized',
          challenge: 'Bearer',
        });
      }
      walked.push(`${operation.method} ${operation.path}`);
    }
    expect(walked.length).toBeGreaterThanOrEqual(10);
    // Nothing was written by any refused request.
    const probe = await localApi(sandbox.endpoints).call('GET', '/v1/files/security%2Fprobe.txt');
    expect(probe.status).toBe(404);
  });

  it('the open route answers without a token', async () => {
    for (const operation of (await operations()).filter((o) => o.open)) {
      const response = await fetch(`${sandbox.endpoints.api}${operation.path}`, { method: operation.method });
      expect(response.status).toBe(200);
    }
  });
});

describe('presigned URLs', () => {
  it("one signed longer ago than the API's URLs live is refused, whatever expiry it names", async () => {
    const { s3: endpoint, originBucket } = sandbox.endpoints;
    const s3 = new S3Client({ ...endpoint, forcePathStyle: true });
    try {
      const key = 'probe/signature-age';
      await s3.send(new PutObjectCommand({ Bucket: originBucket, Key: key, Body: 'held' }));
      const ttlMs = sandbox.topology.limits.presignTtlSeconds * 1000;
      const signedAgo = (ms: number) =>
        getSignedUrl(s3, new GetObjectCommand({ Bucket: originBucket, Key: key }), {
          expiresIn: 7 * 24 * 3600,
          signingDate: new Date(Date.now() - ms),
        });
      const young = await fetch(await signedAgo(ttlMs - 60_000));
      expect([young.status, await young.text()]).toEqual([200, 'held']);
      const old = await fetch(await signedAgo(ttlMs + 60_000));
      expect(old.status).toBe(403);
      expect(await old.text()).toMatch(/<Code>AccessDenied<\/Code><Message>Access Denied<\/Message>/);
    } finally {
      s3.destroy();
    }
  });
});

describe('logs', () => {
  it('carry no token, no presigned URL and no signature after uploads of every kind', async () => {
    const { api, token } = sandbox.endpoints;
    const client = localApi(sandbox.endpoints);
    const issuedUrls: string[] = [];

    // A single PUT, and the same content again (deduplicated, with a proof).
    const small = Buffer.from(`security check ${Date.now()}`);
    const first = await client.declareAndPut('security/small.txt', small, 'text/plain');
    expect(first.putStatus).toBe(200);
    issuedUrls.push(first.created.body.upload.url);
    const single = await uploadFile(new Blob([small]), {
      api,
      token,
      path: 'security/again.txt',
      workerUrl: null,
    });
    expect(single).toMatchObject({ status: 'committed' });
    // Multipart: over the 16 MiB threshold.
    const large = new Uint8Array(17 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
    const parts = await uploadFile(new Blob([large]), {
      api,
      token,
      path: 'security/large.bin',
      workerUrl: null,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        const text = await response.clone().text();
        for (const match of text.matchAll(/"(https?:\/\/[^"]+X-Amz-Signature[^"]+)"/g))
          issuedUrls.push(match[1] ?? '');
        return response;
      },
    });
    expect(parts).toMatchObject({ status: 'committed' });
    // A read of the content: the API answers with a presigned GET.
    const content = await fetch(`${api}/v1/files/${encodeURIComponent('security/small.txt')}/content`, {
      headers: { authorization: `Bearer ${token}` },
      redirect: 'manual',
    });
    const location = content.headers.get('location');
    expect(location).toMatch(/X-Amz-Signature=/);
    issuedUrls.push(location ?? '');
    // Let every target apply them, so replicate and the agent log their work too.
    for (const path of ['security/small.txt', 'security/again.txt', 'security/large.bin']) {
      await expect
        .poll(
          async () => {
            const file = await client.call('GET', `/v1/files/${encodeURIComponent(path)}`);
            const targets = (file.body?.targets ?? []) as { status: string }[];
            return (
              targets.length > 0 && targets.every((t) => t.status === 'copied' || t.status === 'verified')
            );
          },
          { timeout: 60_000, interval: 500 },
        )
        .toBe(true);
    }

    expect(issuedUrls.length).toBeGreaterThanOrEqual(4);
    expect(logLines.length).toBeGreaterThan(10);
    const leaks = logLines.filter(
      (line) =>
        line.includes(token) ||
        /X-Amz-Signature|X-Amz-Credential|x-amz-security-token/i.test(line) ||
        /Bearer\s+\S/.test(line) ||
        issuedUrls.some((url) => line.includes(new URL(url).search.slice(1, 40))),
    );
    expect(leaks).toEqual([]);
  });
});
