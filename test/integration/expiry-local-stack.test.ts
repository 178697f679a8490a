/**
 * Old uploads do not come back, and retried claims make no versions, through the local
 * stack's API and bucket. The first stack runs with its functions' clock set two days back
 * (MIRROR_CLOCK_OFFSET_MS): what it declares is two days old for the second stack, started
 * on the same data folder with the true clock. Storage stamps objects with the true time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSample } from '../../cli/prom-text.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { PortInUseError } from '../../local/net.ts';
import { type Sandbox, type SandboxOptions, startSandbox } from '../../local/sandbox.ts';
import { type LocalApiResponse, localApi, sha256Hex } from '../support/local-api.js';
import { waitFor } from '../support/wait.js';

const DAY = 24 * 60 * 60 * 1000;
const MiB = 1024 * 1024;
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
});

let dataDir: string;
/** Both stacks serve S3 on one port: the presigned URL handed out two days ago names it. */
let s3Port: number;
let sandbox: Sandbox | undefined;
/** The ingest's log lines ("ingested", with the object key and the outcome). */
const ingestLog: string[] = [];

const options = (functionEnv: Record<string, string>): SandboxOptions => ({
  dataDir,
  port: 0,
  s3Port,
  sqsPort: 0,
  dynamodbPort: 0,
  topology,
  env: {},
  webDir: null,
  agents: false,
  // No sweep at start: the ingest is what must refuse the late bytes here.
  schedules: false,
  functionEnv,
  log: () => undefined,
  functionLog: (name, line) => {
    if (name === 'ingest' && line.includes('"ingested"')) ingestLog.push(line);
  },
  polling: { waitTimeSeconds: 1 },
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts a stack on `s3Port`. The port was free when picked, but other tests and processes open
 * ports all the time: the first stack may pick another one; the second must have this one (the
 * URL names it), so it waits for it a while (a client's socket on it goes away).
 */
async function startOnS3Port(functionEnv: Record<string, string>, mayMove: boolean): Promise<Sandbox> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSandbox(options(functionEnv));
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= 10) throw error;
      if (mayMove) s3Port = await freePort();
      else await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

const api = () => localApi((sandbox as Sandbox).endpoints);

async function call(method: string, path: string, body?: unknown, key?: string): Promise<LocalApiResponse> {
  const { api: base, token } = (sandbox as Sandbox).endpoints;
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

async function putBytes(upload: { url: string; headers: Record<string, string> }, bytes: Buffer) {
  const { 'content-length': _length, ...headers } = upload.headers;
  return (await fetch(upload.url, { method: 'PUT', headers, body: new Uint8Array(bytes) })).status;
}

const claimOf = (path: string, bytes: Buffer) => ({
  path,
  size: bytes.length,
  sha256: sha256Hex(bytes),
  contentType: 'text/plain',
});

async function committed(uploadId: string) {
  return waitFor(`upload ${uploadId} committed`, async () => {
    const r = await api().call('GET', `/v1/uploads/${uploadId}`);
    return r.body.status === 'committed' ? r.body : undefined;
  });
}

const abandonedBytes = Buffer.from(`abandoned two days ago ${Date.now()}\n`);
const newerBytes = Buffer.from(`the newer version ${Date.now()}\n`);
const neverSent = Buffer.from(`declared, never sent ${Date.now()}\n`);
const big = {
  path: 'old/big.bin',
  size: 17 * MiB,
  sha256: sha256Hex(Buffer.from(`big ${Date.now()}`)),
  contentType: 'text/plain',
};
let abandoned: { uploadId: string; upload: { url: string; headers: Record<string, string> } };
let oldMultipart: string;
let oldNeverSent: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-expiry-'));
  s3Port = await freePort();
  // Two days ago.
  sandbox = await startOnS3Port({ MIRROR_CLOCK_OFFSET_MS: String(-2 * DAY) }, true);
  const a = await api().call('POST', '/v1/uploads', claimOf('old/photo.txt', abandonedBytes));
  expect(a.status).toBe(201);
  abandoned = a.body;
  const m = await api().call('POST', '/v1/uploads', big);
  expect(m.body).toMatchObject({ status: 'pending', resumed: false });
  oldMultipart = m.body.uploadId;
  oldNeverSent = (await api().call('POST', '/v1/uploads', claimOf('old/never.txt', neverSent))).body.uploadId;
  await sandbox.stop();
  // Today.
  sandbox = await startOnS3Port({}, false);
}, 60_000);

afterAll(async () => {
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('pending uploads expire (local stack)', () => {
  it('bytes of an upload abandoned two days ago are not committed over the newer version: it shows "expired"', async () => {
    const newer = await api().declareAndPut('old/photo.txt', newerBytes, 'text/plain');
    expect(newer.putStatus).toBe(200);
    expect(await committed(newer.created.body.uploadId)).toMatchObject({ version: 1 });

    expect(await putBytes(abandoned.upload, abandonedBytes)).toBe(200);
    const key = `blobs/${sha256Hex(abandonedBytes)}`;
    const line = await waitFor(
      'the ingest to see the late bytes',
      () => ingestLog.find((l) => l.includes(key)),
      20_000,
    );
    expect(JSON.parse(line).outcome).toMatchObject({ committed: [], expired: [abandoned.uploadId] });

    const file = await api().call('GET', `/v1/files/${encodeURIComponent('old/photo.txt')}`);
    expect(file.body.head).toMatchObject({ version: 1, sha256: sha256Hex(newerBytes) });
    const versions = await api().call('GET', `/v1/files/${encodeURIComponent('old/photo.txt')}/versions`);
    expect(versions.body.versions).toHaveLength(1);
    const upload = await api().call('GET', `/v1/uploads/${abandoned.uploadId}`);
    expect(upload.body).toMatchObject({
      status: 'expired',
      reason: expect.stringMatching(/stored at .* outside /),
    });
  });

  it('a multipart resume older than the window starts a new upload; the old one is expired', async () => {
    const again = await api().call('POST', '/v1/uploads', big);
    expect(again.status).toBe(201);
    expect(again.body).toMatchObject({ status: 'pending', resumed: false, multipart: { uploadedParts: [] } });
    expect(again.body.uploadId).not.toBe(oldMultipart);
    expect((await api().call('GET', `/v1/uploads/${oldMultipart}`)).body.status).toBe('expired');
    const part = await api().call('POST', `/v1/uploads/${oldMultipart}/parts`, {
      parts: [{ partNumber: 1, size: 8 * MiB, sha256: '0'.repeat(64) }],
    });
    expect(part.status).toBe(409);
    expect(part.body.error).toMatchObject({ code: 'upload_expired', field: 'uploadId' });
  });

  it('the scheduled sweep (reconcile) expires what nobody looked at again', async () => {
    const report = (await (sandbox as Sandbox).reconcile()) as unknown as { uploads: { expired: number } };
    expect(report.uploads.expired).toBeGreaterThanOrEqual(1);
    expect((await api().call('GET', `/v1/uploads/${oldNeverSent}`)).body.status).toBe('expired');
    // The ingest, the API and the sweep each ended one: all three reach the metric. A function's
    // metrics travel in its log lines, relayed from its thread after it answered: waited for.
    const expired = async () =>
      readSample(await (sandbox as Sandbox).metrics.text(), 'mirror_uploads_expired_total');
    await waitFor('three expiries in the metric', async () => ((await expired()) ?? 0) >= 3, 10_000).catch(
      () => {},
    );
    expect(await expired()).toBeGreaterThanOrEqual(3);
  });
});

describe('claims are idempotent (local stack)', () => {
  it('a retried claim with the same Idempotency-Key gets the same upload, and the ledger holds one version', async () => {
    const bytes = Buffer.from(`retried ${Date.now()}\n`);
    const key = crypto.randomUUID();
    const first = await call('POST', '/v1/uploads', claimOf('idem/retried.txt', bytes), key);
    const retry = await call('POST', '/v1/uploads', claimOf('idem/retried.txt', bytes), key);
    expect(first.status).toBe(201);
    expect(retry.body).toEqual(first.body);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await putBytes(first.body.upload, bytes)).toBe(200);
    expect(await committed(first.body.uploadId)).toMatchObject({ version: 1 });
    const late = await call('POST', '/v1/uploads', claimOf('idem/retried.txt', bytes), key);
    expect(late.body.uploadId).toBe(first.body.uploadId);
    const versions = await api().call('GET', `/v1/files/${encodeURIComponent('idem/retried.txt')}/versions`);
    expect(versions.body.versions).toHaveLength(1);

    const reused = await call('POST', '/v1/uploads', claimOf('idem/other.txt', bytes), key);
    expect(reused.status).toBe(422);
    expect(reused.body.error).toMatchObject({ code: 'idempotency_key_reused', field: 'Idempotency-Key' });
  });

  it('claiming the content the path already holds returns its head and makes no new version', async () => {
    const again = await api().call('POST', '/v1/uploads', claimOf('idem/retried.txt', Buffer.from('')));
    expect(again.body.unchanged).toBeUndefined();
    const bytes = Buffer.from(`retried again ${Date.now()}\n`);
    const first = await api().declareAndPut('idem/same.txt', bytes, 'text/plain');
    await committed(first.created.body.uploadId);
    const same = await api().call('POST', '/v1/uploads', claimOf('idem/same.txt', bytes));
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({ status: 'committed', version: 1, unchanged: true });
    const versions = await api().call('GET', `/v1/files/${encodeURIComponent('idem/same.txt')}/versions`);
    expect(versions.body.versions).toHaveLength(1);
  });
});
