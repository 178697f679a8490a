/**
 * `media-mirror sync` resuming a multipart upload an earlier try left half sent: the parts storage
 * already holds are not sent again, and the summary's `bytesSent` counts only the bytes this run
 * sent (never the parts sent before the interruption).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { uploadFile } from '../../web/client/index.ts';
import { localApi, sha256Hex } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const MiB = 1024 * 1024;
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
  limits: {
    maxUploadBytes: 64 * MiB,
    multipartThresholdBytes: 6 * MiB,
    contentTypes: ['image/*'],
    presignTtlSeconds: 600,
  },
});

let stack: TestStack;
let sandbox: Sandbox;

beforeAll(async () => {
  stack = await startTestStack('sync-resume', { topology, env: {}, schedules: false });
  ({ sandbox } = stack);
}, 120_000);

afterAll(() => stack?.stop());

/** A fetch whose part PUTs fail, as a dropped connection does, after the first `letThrough`. */
function partsCutAfter(letThrough: number): typeof fetch {
  let parts = 0;
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if ((init?.method ?? 'GET') === 'PUT' && url.searchParams.has('partNumber') && ++parts > letThrough) {
      throw new TypeError('fetch failed: the connection dropped (test)');
    }
    return fetch(input, init);
  };
}

describe('sync resuming an interrupted multipart upload', () => {
  it('counts in bytesSent only the parts this run sent, not those storage held from the interrupted try', async () => {
    const lib = join(stack.dir, 'resume-lib');
    await mkdir(lib, { recursive: true });
    const bytes = randomBytes(20 * MiB + 7);
    await writeFile(join(lib, 'big.jpg'), bytes);

    // The interrupted try: the same claim sync makes (path, size, SHA-256, type), one part sent.
    const cut = await uploadFile(new Blob([bytes], { type: 'image/jpeg' }), {
      api: sandbox.endpoints.api,
      token: sandbox.endpoints.token,
      path: 'resumed/big.jpg',
      workerUrl: null,
      proof: false,
      partConcurrency: 1,
      retries: 0,
      fetch: partsCutAfter(1),
    }).catch((error: unknown) => error);
    expect(String(cut)).toMatch(/connection dropped/);
    // What storage holds of it: the same claim again resumes it and lists the recorded parts.
    const api = localApi(sandbox.endpoints);
    const claim = {
      path: 'resumed/big.jpg',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'image/jpeg',
    };
    const view = (await api.call('POST', '/v1/uploads', claim)).body;
    expect(view).toMatchObject({ resumed: true });
    const stored = (view.multipart.uploadedParts as { size: number }[]).reduce((n, p) => n + p.size, 0);
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(bytes.length);

    const run = await stack.cli('sync', lib, 'resumed', '--json');
    expect(run.code, run.err).toBe(0);
    const summary = JSON.parse(run.out);
    expect(summary).toMatchObject({ files: 1, uploaded: 1, failed: 0 });
    const done = (await api.call('GET', `/v1/uploads/${view.uploadId}`)).body;
    expect(done).toMatchObject({ status: 'committed' });
    expect(summary.bytesSent).toBe(bytes.length - stored);
  });
});
