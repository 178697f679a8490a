/**
 * An api invocation that dies mid-request leaves its Idempotency-Key claimed. Through the local
 * stack's HTTP API: a retry with the same key is answered 409 with Retry-After (the seconds until
 * the dead invocation's deadline), and the web client's retry after that takes the key over and
 * succeeds with what the dead request had done, committing nothing twice (docs/api.md, docs/chaos.md):
 * the delete's one tombstone, the restore's one version.
 */
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../local/sandbox.js';
import { MirrorApi } from '../../web/client/api.js';
import { localApi } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

/** The api function's timeout in the local stack, as on AWS (lib/constructs/upload-api.ts). */
const API_TIMEOUT_S = 29;

let stack: TestStack;
let sandbox: Sandbox;
let off: string;

beforeAll(async () => {
  stack = await startTestStack('idempotency-crash', async (dir) => {
    off = join(dir, 'crash-points-off');
    // Silent until a test removes the file: the uploads before the delete or restore commit undisturbed.
    await writeFile(off, '');
    return {
      schedules: false,
      functionEnv: { MIRROR_CRASH_POINTS: 'commit.before-fanout=1', MIRROR_CRASH_POINTS_OFF_FILE: off },
    };
  });
  sandbox = stack.sandbox;
});
afterAll(() => stack?.stop());

describe('an api invocation that dies mid-request under an Idempotency-Key', () => {
  it('a retry gets 409 with Retry-After until the dead invocation is past its deadline; the client then takes the key over and gets the one tombstone', async () => {
    const api = localApi(sandbox.endpoints);
    const path = 'crash/idempotent-delete.txt';
    const { created } = await api.declareAndPut(path, Buffer.from(`delete me ${Date.now()}`), 'text/plain');
    expect(created.status).toBe(201);
    const enc = encodeURIComponent(path);
    await waitFor('the commit', async () => (await api.call('GET', `/v1/files/${enc}`)).status === 200);

    const key = crypto.randomUUID();
    const remove = () =>
      fetch(`${sandbox.endpoints.api}/v1/files/${enc}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${sandbox.endpoints.token}`, 'idempotency-key': key },
      });
    // The delete commits its tombstone, then its invocation dies before the fan-out.
    await unlink(off);
    const died = await remove();
    await writeFile(off, '');
    expect(died.status).toBe(500);
    expect((await api.call('GET', `/v1/files/${enc}/versions`)).body.versions[0]).toMatchObject({
      version: 2,
      deleted: true,
    });

    const busy = await remove();
    const busyAt = Date.now();
    expect(busy.status).toBe(409);
    expect(await busy.json()).toMatchObject({ error: { code: 'idempotency_in_progress' } });
    // Until the dead invocation's deadline: at most the api's timeout after it started.
    const retryAfter = Number(busy.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(API_TIMEOUT_S + 1);

    // The web client (what the CLI and the Uppy plugin use) waits that out and retries: no error.
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const answer = await client.deleteFile(path, {}, { idempotencyKey: key });
    expect(Date.now() - busyAt).toBeGreaterThanOrEqual((retryAfter - 1) * 1000);
    expect(answer).toEqual({ status: 'committed', path, version: 2, deleted: true });
    const versions = await api.call('GET', `/v1/files/${enc}/versions`);
    expect(versions.body.versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    // Its answer is now kept: a further retry replays it at once.
    const replay = await remove();
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  }, 180_000);

  it('a restore whose invocation died after its commit: the retry after takeover answers that version; no second restore', async () => {
    const api = localApi(sandbox.endpoints);
    const path = 'crash/idempotent-restore.txt';
    const enc = encodeURIComponent(path);
    for (const [n, text] of ['first', 'second'].entries()) {
      const { created } = await api.declareAndPut(path, Buffer.from(`${text} ${Date.now()}`), 'text/plain');
      expect(created.status).toBe(201);
      await waitFor(
        `version ${n + 1}`,
        async () => (await api.call('GET', `/v1/files/${enc}`)).body?.head?.version === n + 1,
      );
    }
    const first = (await api.call('GET', `/v1/files/${enc}/versions`)).body.versions[1];
    expect(first).toMatchObject({ version: 1 });

    const key = crypto.randomUUID();
    // The restore commits version 3, then its invocation dies before the fan-out.
    await unlink(off);
    const died = await fetch(`${sandbox.endpoints.api}/v1/files/${enc}/versions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${sandbox.endpoints.token}`,
        'idempotency-key': key,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ from: 1 }),
    });
    await writeFile(off, '');
    expect(died.status).toBe(500);
    expect((await api.call('GET', `/v1/files/${enc}/versions`)).body.versions[0]).toMatchObject({
      version: 3,
      sha256: first.sha256,
    });

    // The web client (as `media-mirror restore`) retries under the same key, waits out the dead
    // invocation's deadline, takes the key over and gets the version the dead request committed.
    const client = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const answer = await client.restoreVersion(path, 1, {}, { idempotencyKey: key });
    expect(answer).toEqual({ status: 'committed', path, version: 3, restoredFrom: 1, sha256: first.sha256 });
    const versions = await api.call('GET', `/v1/files/${enc}/versions`);
    expect(versions.body.versions.map((v: { version: number }) => v.version)).toEqual([3, 2, 1]);
  }, 180_000);
});
