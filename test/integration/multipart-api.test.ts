/**
 * The multipart protocol through the local stack's HTTP API, as a third-party client follows it
 * (docs/api.md, "Upload a large file in parts"): ETags with or without quotes; the headers to
 * send to a presigned URL apart from those the HTTP client sets itself; parts presigned and recorded
 * in batches; complete run in the background, and idempotent.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../local/sandbox.js';
import { uploadFile } from '../../web/client/upload-file.js';
import { localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

const MiB = 1024 * 1024;

let stack: TestStack;
let sandbox: Sandbox;
let api: ReturnType<typeof localApi>;
/** What the complete-multipart function logged: where the background completion shows. */
const completionLog: string[] = [];
/** What the ingest function logged: it verifies what S3 assembled, and completes nothing. */
const ingestLog: string[] = [];

beforeAll(async () => {
  stack = await startTestStack('multipart-api', {
    schedules: false,
    functionLog: (name, line) => {
      if (name === 'complete-multipart') completionLog.push(line);
      if (name === 'ingest') ingestLog.push(line);
      if (process.env.H3_DEBUG) console.log(`[${name}] ${line}`);
    },
  });
  sandbox = stack.sandbox;
  api = localApi(sandbox.endpoints);
});
afterAll(() => stack?.stop());

interface Plan {
  uploadId: string;
  partSize: number;
  partCount: number;
}

/** Claims `bytes` at `path`; the API answers a part plan above its multipart threshold. */
async function claimParts(path: string, bytes: Buffer): Promise<Plan> {
  const created = await api.call('POST', '/v1/uploads', {
    path,
    size: bytes.length,
    sha256: sha256Hex(bytes),
    contentType: 'application/octet-stream',
  });
  expect(created.status).toBe(201);
  expect(created.body.multipart).toBeDefined();
  return { uploadId: created.body.uploadId, ...created.body.multipart };
}

const partOf = (bytes: Buffer, plan: Plan, n: number) =>
  bytes.subarray((n - 1) * plan.partSize, Math.min(bytes.length, n * plan.partSize));

/** PUTs part `n` to the URL the API presigned, with the headers it says to send; S3's ETag. */
async function putPart(
  signed: { url: string; headers: Record<string, string> },
  part: Buffer,
): Promise<string> {
  const put = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: new Uint8Array(part) });
  expect(put.status).toBe(200);
  return put.headers.get('etag') as string;
}

async function presignOne(plan: Plan, n: number, part: Buffer) {
  const answer = await api.call('POST', `/v1/uploads/${plan.uploadId}/parts`, {
    parts: [{ partNumber: n, size: part.length, sha256: sha256Hex(part) }],
  });
  expect(answer.status).toBe(200);
  return answer.body.parts[0] as { url: string; headers: Record<string, string> };
}

async function committed(uploadId: string) {
  return waitFor(
    `upload ${uploadId} to leave pending`,
    async () => {
      const upload = await api.call('GET', `/v1/uploads/${uploadId}`);
      return upload.body.status === 'pending' ? undefined : upload.body;
    },
    60_000,
  );
}

describe('multipart through the HTTP API', () => {
  it('takes an ETag with or without its quotes, answers it quoted, and refuses a malformed one naming the field and the rule', async () => {
    const bytes = randomBytes(17 * MiB + 5);
    const plan = await claimParts('etags/video.bin', bytes);
    expect(plan.partCount).toBe(3);
    const etags: string[] = [];
    for (let n = 1; n <= plan.partCount; n++) {
      const part = partOf(bytes, plan, n);
      etags.push(await putPart(await presignOne(plan, n, part), part));
    }
    expect(etags.every((e) => /^"[0-9a-f]{32}"$/.test(e))).toBe(true);

    const record = (n: number, etag: string) => {
      const part = partOf(bytes, plan, n);
      return api.call('PUT', `/v1/uploads/${plan.uploadId}/parts/${n}`, {
        size: part.length,
        sha256: sha256Hex(part),
        etag,
      });
    };
    for (const bad of ['W/"abc"', '"abc', 'ab c', 'a"b', '""', '']) {
      const refused = await record(1, bad);
      expect(refused.status, bad).toBe(400);
      expect(refused.body.error, bad).toMatchObject({ code: 'invalid', field: 'etag' });
      expect(refused.body.error.message, bad).toMatch(/etag/);
    }
    // Nothing was recorded by the refusals.
    const before = await api.call('GET', `/v1/uploads/${plan.uploadId}`);
    expect(before.body.multipart.uploadedParts).toEqual([]);

    // Uppy 6 strips S3's quotes; curl keeps them: both name the same part.
    const stripped = (e: string) => e.replace(/"/g, '');
    expect((await record(1, stripped(etags[0] as string))).status).toBe(200);
    expect((await record(2, etags[1] as string)).status).toBe(200);
    const view = await record(3, stripped(etags[2] as string));
    expect(view.status).toBe(200);
    expect(view.body.uploadedParts.map((p: { etag: string }) => p.etag)).toEqual(etags);
    // The same part recorded again in the other form is the same part.
    const again = await record(1, etags[0] as string);
    expect(again.body.uploadedParts.map((p: { etag: string }) => p.etag)).toEqual(etags);

    expect((await api.call('POST', `/v1/uploads/${plan.uploadId}/complete`)).status).toBe(202);
    expect(await committed(plan.uploadId)).toMatchObject({ status: 'committed', version: 1 });
  });

  it('a presigned PUT and a presigned part list the headers to send apart from content-length and host, which the client sets', async () => {
    const small = randomBytes(1000);
    const created = await api.call('POST', '/v1/uploads', {
      path: 'headers/small.bin',
      size: small.length,
      sha256: sha256Hex(small),
      contentType: 'application/octet-stream',
    });
    expect(created.status).toBe(201);
    const { upload } = created.body;
    expect(Object.keys(upload.headers).sort()).toEqual(
      expect.arrayContaining(['content-type', 'x-amz-checksum-sha256']),
    );
    expect(Object.keys(upload.headers)).not.toContain('content-length');
    expect(Object.keys(upload.headers)).not.toContain('host');
    expect(upload.automaticHeaders).toEqual({
      'content-length': String(small.length),
      host: new URL(upload.url).host,
    });
    // What a browser does: send `headers` as they are, the body sets the length.
    const put = await fetch(upload.url, {
      method: 'PUT',
      headers: upload.headers,
      body: new Uint8Array(small),
    });
    expect(put.status).toBe(200);
    expect(await committed(created.body.uploadId)).toMatchObject({ status: 'committed' });

    const big = randomBytes(17 * MiB);
    const plan = await claimParts('headers/big.bin', big);
    const part = partOf(big, plan, 3);
    const signed = await presignOne(plan, 3, part);
    expect(Object.keys(signed.headers)).toEqual(['x-amz-checksum-sha256']);
    expect((signed as unknown as { automaticHeaders: unknown }).automaticHeaders).toEqual({
      'content-length': String(part.length),
      host: new URL(signed.url).host,
    });
  });

  it('presigns and records every part of an upload in one call each; a bad list is refused whole, naming the part', async () => {
    const bytes = randomBytes(17 * MiB + 9);
    const plan = await claimParts('batches/video.bin', bytes);
    const parts = [1, 2, 3].map((n) => ({ n, bytes: partOf(bytes, plan, n) }));
    const asked = parts.map((p) => ({ partNumber: p.n, size: p.bytes.length, sha256: sha256Hex(p.bytes) }));
    const presign = (list: unknown[]) =>
      api.call('POST', `/v1/uploads/${plan.uploadId}/parts`, { parts: list });

    const twice = await presign([asked[0], asked[0]]);
    expect(twice.status).toBe(400);
    expect(twice.body.error).toMatchObject({ code: 'invalid', field: 'parts' });
    const wrongSize = await presign([asked[0], { ...asked[1], size: 5 }]);
    expect(wrongSize.status).toBe(400);
    expect(wrongSize.body.error).toMatchObject({ code: 'invalid', field: 'parts.1.size' });
    const tooMany = await presign(
      Array.from({ length: 1001 }, (_, i) => ({ ...asked[0], partNumber: i + 1 })),
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.field).toBe('parts');

    // The parts in reverse order: answered in the order asked.
    const signed = await presign([...asked].reverse());
    expect(signed.status).toBe(200);
    expect(signed.body.parts.map((p: { partNumber: number }) => p.partNumber)).toEqual([3, 2, 1]);
    const etags = new Map<number, string>();
    for (const s of signed.body.parts as {
      partNumber: number;
      url: string;
      headers: Record<string, string>;
    }[]) {
      etags.set(s.partNumber, await putPart(s, partOf(bytes, plan, s.partNumber)));
    }
    const reports = asked.map((a) => ({ ...a, etag: etags.get(a.partNumber) as string }));
    const record = (list: unknown[]) =>
      api.call('PUT', `/v1/uploads/${plan.uploadId}/parts`, { parts: list });

    const badEtag = await record([reports[0], { ...reports[1], etag: 'a b' }, reports[2]]);
    expect(badEtag.status).toBe(400);
    expect(badEtag.body.error).toMatchObject({ code: 'invalid', field: 'parts.1.etag' });
    const badSize = await record([reports[0], reports[1], { ...reports[2], size: 1 }]);
    expect(badSize.body.error).toMatchObject({ code: 'invalid', field: 'parts.2.size' });
    // Refused whole: nothing recorded.
    expect((await api.call('GET', `/v1/uploads/${plan.uploadId}`)).body.multipart.uploadedParts).toEqual([]);

    const recorded = await record(reports);
    expect(recorded.status).toBe(200);
    expect(recorded.body.uploadedParts.map((p: { partNumber: number }) => p.partNumber)).toEqual([1, 2, 3]);
    expect((await api.call('POST', `/v1/uploads/${plan.uploadId}/complete`)).status).toBe(202);
    expect(await committed(plan.uploadId)).toMatchObject({ status: 'committed' });
  });

  it('the web client sends a multipart upload in a handful of API calls: parts presigned and recorded in batches', async () => {
    const bytes = randomBytes(40 * MiB + 1);
    const calls: string[] = [];
    const counting: typeof fetch = (input, init) => {
      const url = new URL(String(input));
      if (url.origin === new URL(sandbox.endpoints.api).origin)
        calls.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      return fetch(input, init);
    };
    const result = await uploadFile(new Blob([new Uint8Array(bytes)]), {
      api: sandbox.endpoints.api,
      token: sandbox.endpoints.token,
      path: 'batches/client.bin',
      contentType: 'application/octet-stream',
      workerUrl: null,
      pollIntervalMs: 50,
      fetch: counting,
    });
    expect(result).toMatchObject({ status: 'committed', partsSent: 6, bytesSent: bytes.length });
    const route = (c: string) => c.replace(/[0-9a-f-]{36}/, '{id}');
    const counts = new Map<string, number>();
    for (const c of calls) counts.set(route(c), (counts.get(route(c)) ?? 0) + 1);
    // 6 parts: 8 parts' worth in the first batch, so one presign; one record; no per-part call.
    expect(counts.get('POST /v1/uploads/{id}/parts')).toBe(1);
    expect(counts.get('PUT /v1/uploads/{id}/parts')).toBe(1);
    expect([...counts.keys()].some((k) => /\/parts\/\d+$/.test(k))).toBe(false);
    expect(counts.get('POST /v1/uploads/{id}/complete')).toBe(1);
  });

  it('a Retry under the same Idempotency-Key (the replayed claim) sends only the parts not recorded', async () => {
    const bytes = randomBytes(24 * MiB + 5);
    const key = crypto.randomUUID();
    // The first try: storage drops every PUT of part 2, once the other parts are stored.
    let othersStored = 0;
    let allOthersStored: () => void = () => undefined;
    const othersDone = new Promise<void>((resolve) => {
      allOthersStored = resolve;
    });
    const dropPart2: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const part = url.searchParams.get('partNumber');
      if (init?.method === 'PUT' && part === '2') {
        await othersDone;
        throw new TypeError('network error');
      }
      const response = await fetch(input, init);
      if (init?.method === 'PUT' && part !== null && ++othersStored === 3) allOthersStored();
      return response;
    };
    const options = {
      api: sandbox.endpoints.api,
      token: sandbox.endpoints.token,
      path: 'retry/same-key.bin',
      contentType: 'application/octet-stream',
      workerUrl: null,
      pollIntervalMs: 50,
      idempotencyKey: key,
      retries: 1,
      backoff: { baseMs: 1, maxMs: 5 },
    };
    const file = new Blob([new Uint8Array(bytes)]);
    await expect(uploadFile(file, { ...options, fetch: dropPart2 })).rejects.toThrow(
      /could not reach storage/,
    );
    const retried = await uploadFile(file, options);
    expect(retried).toMatchObject({ status: 'committed', version: 1, partsSent: 1, partsSkipped: 3 });
    expect(retried.bytesSent).toBe(8 * MiB);
  });

  it('a Retry under a key first used for another path (the app moved the file) claims anew under a new key', async () => {
    const key = crypto.randomUUID();
    const noStorage: typeof fetch = (input, init) =>
      new URL(String(input)).origin === new URL(sandbox.endpoints.api).origin
        ? fetch(input, init)
        : Promise.reject(new TypeError('network error'));
    const base = {
      api: sandbox.endpoints.api,
      token: sandbox.endpoints.token,
      contentType: 'application/octet-stream',
      workerUrl: null,
      pollIntervalMs: 50,
      retries: 0,
      idempotencyKey: key,
    };
    const file = new Blob([`moved ${Date.now()}`]);
    await expect(uploadFile(file, { ...base, path: 'moved/before.txt', fetch: noStorage })).rejects.toThrow(
      /could not reach storage/,
    );
    const keys: string[] = [];
    const moved = await uploadFile(file, {
      ...base,
      path: 'moved/after.txt',
      onIdempotencyKey: (k) => keys.push(k),
    });
    expect(moved).toMatchObject({ status: 'committed', path: 'moved/after.txt', version: 1 });
    expect(keys).toHaveLength(1);
    expect(keys[0]).not.toBe(key);
  });

  it('two writers with ifVersion 0 race to a new path: one commits, the other is told version_conflict (409), not "rejected"', async () => {
    // Both claims are answered before either sends its bytes: the race is lost at the commit.
    let claims = 0;
    let bothClaimed: () => void = () => undefined;
    const claimed = new Promise<void>((resolve) => {
      bothClaimed = resolve;
    });
    const afterBothClaims: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const isClaim = init?.method === 'POST' && url.pathname === '/v1/uploads';
      if (init?.method === 'PUT' && url.origin !== new URL(sandbox.endpoints.api).origin) await claimed;
      const response = await fetch(input, init);
      if (isClaim && ++claims === 2) bothClaimed();
      return response;
    };
    const write = (text: string) =>
      uploadFile(new Blob([text]), {
        api: sandbox.endpoints.api,
        token: sandbox.endpoints.token,
        path: 'race/if-version.txt',
        contentType: 'application/octet-stream',
        workerUrl: null,
        pollIntervalMs: 50,
        ifVersion: 0,
        fetch: afterBothClaims,
      });
    const outcomes = await Promise.allSettled([write('first writer'), write('second writer')]);
    const committed = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(committed).toHaveLength(1);
    expect(committed[0]).toMatchObject({ value: { status: 'committed', version: 1 } });
    expect(refused).toHaveLength(1);
    expect(refused[0]?.reason).toMatchObject({ code: 'version_conflict', status: 409, field: 'ifVersion' });
    expect(String(refused[0]?.reason.message)).toMatch(/is at version 1, the request expected 0/);
  });

  it('complete answers 202 with where to poll, S3 completes in the complete-multipart function, and no retry is ever a 409', async () => {
    const bytes = randomBytes(17 * MiB + 11);
    const plan = await claimParts('complete/video.bin', bytes);
    const asked = [1, 2, 3].map((n) => {
      const part = partOf(bytes, plan, n);
      return { partNumber: n, size: part.length, sha256: sha256Hex(part) };
    });
    const signed = await api.call('POST', `/v1/uploads/${plan.uploadId}/parts`, { parts: asked });
    const reports = [];
    for (const [i, s] of (
      signed.body.parts as { url: string; headers: Record<string, string> }[]
    ).entries()) {
      const etag = await putPart(s, partOf(bytes, plan, i + 1));
      reports.push({ ...asked[i], etag });
    }
    expect((await api.call('PUT', `/v1/uploads/${plan.uploadId}/parts`, { parts: reports })).status).toBe(
      200,
    );

    const complete = () => api.call('POST', `/v1/uploads/${plan.uploadId}/complete`);
    const first = await complete();
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ status: 'verifying', uploadId: plan.uploadId });
    expect(first.headers.get('location')).toBe(`/v1/uploads/${plan.uploadId}`);
    // A client that lost the answer tries again: accepted again (or, once committed, the upload).
    const retried = await complete();
    expect([200, 202]).toContain(retried.status);

    expect(await committed(plan.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    const afterCommit = await complete();
    expect(afterCommit.status).toBe(200);
    expect(afterCommit.body).toMatchObject({ uploadId: plan.uploadId, status: 'committed', version: 1 });
    // S3 assembled the object in the complete-multipart function, from the queued completion: one
    // message completed it, the other (the retry's) found it done and did nothing.
    const completions = completionLog.filter(
      (l) => l.includes('multipart completion') && l.includes(plan.uploadId),
    );
    expect(completions.length).toBeGreaterThanOrEqual(1);
    expect(completions.some((l) => l.includes('"completed"'))).toBe(true);
    expect(completions.filter((l) => l.includes('"completed"'))).toHaveLength(1);
    // The ingest verified and committed it, and ran no completion itself.
    expect(ingestLog.some((l) => l.includes('multipart completion'))).toBe(false);
    expect(ingestLog.some((l) => l.includes('ingested'))).toBe(true);
  });
});
