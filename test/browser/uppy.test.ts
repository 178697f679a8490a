/**
 * The Uppy plugin (web/uppy) against the whole local stack: driven by Uppy 6 in Debian's
 * Chromium (small, multipart and duplicate files all end complete and reach every target), and
 * dropped into Uppy 5 and Uppy 6 in Node (the same plugin, unchanged, under both majors).
 */
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Uppy6 from '@uppy/core';
import type { Page } from 'playwright-core';
import Uppy5 from 'uppy-core-5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import MediaMirror from '../../web/uppy/index.ts';
import type { UppyFileSummary } from './fixtures/uppy-page.ts';
import {
  type Browser,
  buildFixturePage,
  launchBrowser,
  MiB,
  randomFile,
  type Stack,
  startStack,
  watchConsole,
} from './support.ts';

let stack: Stack;
let browser: Browser;
const files: Record<'small' | 'copy' | 'large', string> = { small: '', copy: '', large: '' };

beforeAll(async () => {
  stack = await startStack();
  const dist = join(stack.tmp, 'dist');
  // The page a frontend with Uppy would have: Uppy 6 and the plugin, bundled next to the client's worker.
  await buildFixturePage(dist, 'uppy-test', new URL('./fixtures/uppy-page.ts', import.meta.url), {
    multiple: true,
  });
  browser = await launchBrowser(stack.tmp);
  files.small = await randomFile(join(stack.tmp, 'small.bin'), 300_000, 11);
  // The same bytes under another name: a deduplicated claim.
  files.copy = join(stack.tmp, 'copy-of-small.bin');
  await writeFile(files.copy, await readFile(files.small));
  // Over the 16 MiB multipart threshold: three parts.
  files.large = await randomFile(join(stack.tmp, 'large.bin'), 20 * MiB, 12);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
}, 60_000);

interface FileAnswer {
  readonly head: { readonly version: number; readonly sha256: string } | null;
  readonly targets: readonly { readonly id: string; readonly status: string }[];
}

/** Every target of the stack holds the path's head (the ledger's view, as replicate and the agents record it). */
async function allTargetsHold(path: string): Promise<void> {
  const expected = Object.keys(stack.sandbox.endpoints.targets).sort();
  await expect
    .poll(
      async () => {
        const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent(path)}`, {
          headers: { authorization: `Bearer ${stack.token}` },
        });
        const file = (await res.json()) as FileAnswer;
        return file.targets
          .filter((t) => t.status === 'copied' || t.status === 'verified')
          .map((t) => t.id)
          .sort();
      },
      { timeout: 90_000, interval: 500 },
    )
    .toEqual(expected);
}

async function uploadInPage(page: Page, prefix: string, ...paths: string[]): Promise<UppyFileSummary[]> {
  await page.setInputFiles('#files', paths);
  return page.evaluate(({ api, token, prefix }) => window.mirrorUppy.upload(api, token, prefix), {
    api: stack.api,
    token: stack.token,
    prefix,
  });
}

const byName = (summaries: readonly UppyFileSummary[], name: string) =>
  summaries.find((s) => s.name === name);

describe('the Uppy plugin in Chromium (Uppy 6)', () => {
  it('small, multipart and duplicate files all end complete and reach every target', async () => {
    const page = await browser.context.newPage();
    const consoleErrors = watchConsole(page);
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });

    const first = await uploadInPage(page, 'uppy6/', files.small, files.large);
    expect(first.map((f) => [f.name, f.complete, f.processing, f.error])).toEqual([
      ['small.bin', true, false, null],
      ['large.bin', true, false, null],
    ]);
    expect(byName(first, 'small.bin')?.body).toMatchObject({ status: 'committed', deduplicated: false });
    expect(byName(first, 'large.bin')?.body).toMatchObject({ status: 'committed', partsSent: 3 });

    // Known content: committed without sending bytes, and shown as complete (not failed).
    const puts: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'PUT') puts.push(r.url());
    });
    const second = await uploadInPage(page, 'uppy6/', files.copy);
    expect(second).toEqual([
      {
        name: 'copy-of-small.bin',
        complete: true,
        // Hashing is over: Uppy's Dashboard shows it done, not "processing" forever (probe 13, W2).
        processing: false,
        error: null,
        body: expect.objectContaining({ status: 'committed', deduplicated: true, version: 1 }),
      },
    ]);
    expect(puts).toEqual([]);

    for (const name of ['small.bin', 'large.bin', 'copy-of-small.bin']) await allTargetsHold(`uppy6/${name}`);
    expect(consoleErrors).toEqual([]);
    await page.close();
  });

  it('photo.jpg from three folders in one upload: the first is v1, a different one fails naming the path, a copy of the first completes as v1 (probe W6)', async () => {
    const folders = ['first', 'other', 'copy'].map((name) => join(stack.tmp, 'w6', name));
    for (const folder of folders) await mkdir(folder, { recursive: true });
    const [first, other, copy] = folders.map((folder) => join(folder, 'photo.jpg')) as [
      string,
      string,
      string,
    ];
    await randomFile(first, 200_000, 61);
    await randomFile(other, 210_000, 62);
    await writeFile(copy, await readFile(first));
    // Uppy takes a file with the same name, size and mtime for one already added: the copy differs in mtime.
    await utimes(copy, new Date(2026, 0, 2), new Date(2026, 0, 2));
    const page = await browser.context.newPage();
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });

    const summaries = await uploadInPage(page, 'w6/', first, other, copy);
    // The one that failed after its hashing is not left "Hashing" (Uppy counts it as processing).
    expect(summaries.map((f) => f.processing)).toEqual([false, false, false]);
    expect(summaries.map((f) => [f.name, f.complete, f.error, f.body?.version ?? null])).toEqual([
      ['photo.jpg', true, null, 1],
      [
        'photo.jpg',
        false,
        'another file, "photo.jpg" (200,000 bytes), also goes to "w6/photo.jpg", with other content: ' +
          'this one would replace it. Rename this file (or remove the other) and retry',
        null,
      ],
      ['photo.jpg', true, null, 1],
    ]);
    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('w6/photo.jpg')}/versions`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(((await res.json()) as { versions: unknown[] }).versions).toHaveLength(1);
    await page.close();
  });
  it('a file changed on disk after it was hashed fails at once as unreadable, not after a minute of retries as a network error', async () => {
    // Single PUT and parts alike go through XMLHttpRequest, which reports a changed file
    // (net::ERR_UPLOAD_FILE_CHANGED) as a network error.
    const single = await randomFile(join(stack.tmp, 'changes-single.bin'), 2 * MiB, 71);
    const multi = await randomFile(join(stack.tmp, 'changes-multi.bin'), 20 * MiB, 72);
    const page = await browser.context.newPage();
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    // Each file is rewritten (same size, a later mtime) once the bytes are about to go.
    const rewrite = async (path: string, size: number) => writeFile(path, Buffer.alloc(size, 7));
    let singleChanged = false;
    await page.route('**/v1/uploads/*/proof', async (route) => {
      if (!singleChanged) {
        singleChanged = true;
        await rewrite(single, 2 * MiB);
      }
      await route.continue();
    });
    let multiChanged = false;
    await page.route(/partNumber=/, async (route) => {
      if (!multiChanged) {
        multiChanged = true;
        await rewrite(multi, 20 * MiB);
      }
      await route.continue();
    });

    const started = Date.now();
    const [first] = await uploadInPage(page, 'changed/', single);
    const [second] = await uploadInPage(page, 'changed/', multi);
    // Before, each went on for the whole retry window (60 s) and ended "could not reach storage".
    expect(Date.now() - started).toBeLessThan(30_000);
    for (const summary of [first, second]) {
      expect(summary?.complete).toBe(false);
      expect(summary?.error).toMatch(/^cannot read the file: /);
      // Failed after its hashing: not left "Hashing", which Uppy counts as still processing.
      expect(summary?.processing).toBe(false);
    }
    await page.close();
  }, 180_000);
  it('a file the API refuses at its claim, after its hashing, fails and is not left "Hashing" (processing, to Uppy)', async () => {
    const refused = await randomFile(join(stack.tmp, 'refused-claim.bin'), 300_000, 73);
    const page = await browser.context.newPage();
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    // A deployment that takes other types refuses this one at the claim, once the hash is known.
    await page.route('**/v1/uploads', (route) =>
      route.request().method() === 'POST'
        ? route.fulfill({
            status: 415,
            contentType: 'application/json',
            body: JSON.stringify({
              error: {
                code: 'unsupported_content_type',
                field: 'contentType',
                message: 'contentType application/octet-stream is not accepted: it must be one of image/png',
              },
            }),
          })
        : route.continue(),
    );
    const [summary] = await uploadInPage(page, 'refused/', refused);
    expect(summary?.complete).toBe(false);
    expect(summary?.error).toMatch(/is not accepted/);
    expect(summary?.processing).toBe(false);
    await page.close();
  }, 120_000);
  it("a file larger than the API takes, or of a type it refuses, fails before it is hashed, with the API's own rule", async () => {
    const big = await randomFile(join(stack.tmp, 'over-limit.bin'), 2 * MiB, 74);
    const json = join(stack.tmp, 'refused-type.json');
    await writeFile(json, '{"a": 1}');
    const page = await browser.context.newPage();
    // A deployment whose largest upload is 1 MB and that takes images only (its GET /v1/limits says so).
    await page.route('**/v1/limits', async (route) => {
      const real = await route.fetch();
      const limits = {
        ...((await real.json()) as object),
        maxUploadBytes: 1_000_000,
        contentTypes: ['image/*'],
      };
      await route.fulfill({ response: real, json: limits });
    });
    const claims: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads') claims.push(r.url());
    });
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    const summaries = await uploadInPage(page, 'limits/', big, json);
    expect(summaries.map((f) => [f.name, f.complete, f.processing, f.error])).toEqual([
      ['over-limit.bin', false, false, 'size must be at most 1000000 bytes'],
      [
        'refused-type.json',
        false,
        false,
        'contentType application/json is not accepted: it must be one of image/*',
      ],
    ]);
    // Before, each was hashed whole and then refused at its claim.
    expect(await page.evaluate(() => window.mirrorUppy.hashed)).toEqual([]);
    expect(claims).toEqual([]);
    await page.close();
  }, 120_000);
  it('a file removed while it uploads and added again at once completes, although the removal aborts the upload the new attempt joined', async () => {
    const file = await randomFile(join(stack.tmp, 'readded.bin'), 20 * MiB, 81);
    const page = await browser.context.newPage();
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    // The removal's DELETE is slow (a cold API, say): it lands once the new attempt, which joined
    // the pending multipart upload (same path, content and size), has sent its parts.
    let completing: () => void = () => undefined;
    const completeSent = new Promise<void>((resolve) => {
      completing = resolve;
    });
    let aborted: () => void = () => undefined;
    const deleteAnswered = new Promise<void>((resolve) => {
      aborted = resolve;
    });
    const deletes: string[] = [];
    await page.route('**/v1/uploads/*', async (route) => {
      if (route.request().method() !== 'DELETE') return route.fallback();
      deletes.push(route.request().url());
      await completeSent;
      const response = await route.fetch();
      aborted();
      await route.fulfill({ response });
    });
    await page.route('**/v1/uploads/*/complete', async (route) => {
      completing();
      await deleteAnswered;
      await route.continue();
    });
    await page.setInputFiles('#files', [file]);
    const summaries = await page.evaluate(
      ({ api, token }) => window.mirrorUppy.removeAndAddAgain(api, token, 'readded/'),
      { api: stack.api, token: stack.token },
    );
    expect(deletes).toHaveLength(1);
    // Before, it failed: "not committed: aborted".
    expect(summaries.map((f) => [f.name, f.complete, f.error])).toEqual([['readded.bin', true, null]]);
    expect(summaries[0]?.body).toMatchObject({ status: 'committed', version: 1 });
    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('readded/readded.bin')}/versions`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(((await res.json()) as { versions: unknown[] }).versions).toHaveLength(1);
    await page.close();
  });
  it('uploads from a page that is not a secure context (a CMS on plain HTTP), where the browser has no crypto.randomUUID', async () => {
    const file = await randomFile(join(stack.tmp, 'plain-http.bin'), 300_000, 91);
    const page = await browser.context.newPage();
    // What Chromium leaves out of a page served over plain HTTP from a host other than localhost
    // (this test's page is on loopback, a secure context): the [SecureContext] members of crypto.
    await page.addInitScript(() => {
      for (const member of ['randomUUID', 'subtle']) {
        Object.defineProperty(Crypto.prototype, member, { value: undefined, configurable: true });
      }
    });
    await page.goto(`${stack.api}/uppy-test.html`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    expect(await page.evaluate(() => typeof crypto.randomUUID)).toBe('undefined');
    const summaries = await uploadInPage(page, 'plain-http/', file);
    // Before, the file failed at once: "crypto.randomUUID is not a function".
    expect(summaries.map((f) => [f.name, f.complete, f.error])).toEqual([['plain-http.bin', true, null]]);
    expect(summaries[0]?.body).toMatchObject({ status: 'committed', version: 1 });
    await page.close();
  });
});

describe('the Uppy plugin dropped into Uppy 5 and Uppy 6 (Node)', () => {
  // The plugin is typed against Uppy 6; Uppy 5's instance runs it unchanged.
  const versions = [
    ['5', (id: string) => new Uppy5({ id }) as unknown as Uppy6],
    ['6', (id: string) => new Uppy6({ id })],
  ] as const;
  for (const [major, createUppy] of versions) {
    it(`Uppy ${major}: every file completes; Retry after a failed send continues the same upload, committed once`, async () => {
      const uppy = createUppy(`node-${major}`);
      uppy.use(MediaMirror, {
        api: stack.api,
        token: stack.token,
        prefix: `node${major}/`,
        workerUrl: null,
        retries: 1,
      });
      const bytes = await readFile(files.small);
      uppy.addFile({ name: 'a.bin', type: 'application/octet-stream', data: new Blob([bytes, `a${major}`]) });
      uppy.addFile({
        name: 'b.bin',
        type: 'application/octet-stream',
        data: new Blob([bytes, bytes, `b${major}`]),
      });

      // Storage unreachable for the first attempt: every PUT fails as a network error would.
      const realFetch = globalThis.fetch;
      const claims: string[] = [];
      let storageDown = true;
      globalThis.fetch = async (input, init) => {
        const request = new Request(input, init);
        if (storageDown && request.method === 'PUT') throw new TypeError('fetch failed');
        const response = await realFetch(request);
        if (request.method === 'POST' && new URL(request.url).pathname === '/v1/uploads') {
          claims.push(((await response.clone().json()) as { uploadId: string }).uploadId);
        }
        return response;
      };
      try {
        const failed = await uppy.upload();
        expect(failed?.failed?.map((f) => f.name).sort()).toEqual(['a.bin', 'b.bin']);
        storageDown = false;
        const retried = await uppy.retryAll();
        expect(retried?.successful?.map((f) => f.name).sort()).toEqual(['a.bin', 'b.bin']);
        expect(retried?.failed).toEqual([]);
      } finally {
        globalThis.fetch = realFetch;
      }
      // Each file was claimed twice (the attempt and its retry) and got the same upload back.
      expect(claims).toHaveLength(4);
      expect(new Set(claims).size).toBe(2);
      for (const file of uppy.getFiles()) {
        expect(file.progress.complete).toBe(true);
        expect(file.response?.body).toMatchObject({ status: 'committed', version: 1 });
      }
      for (const name of ['a.bin', 'b.bin']) {
        const res = await fetch(
          `${stack.api}/v1/files/${encodeURIComponent(`node${major}/${name}`)}/versions`,
          {
            headers: { authorization: `Bearer ${stack.token}` },
          },
        );
        expect(((await res.json()) as { versions: unknown[] }).versions).toHaveLength(1);
        await allTargetsHold(`node${major}/${name}`);
      }
    });
  }

  for (const [major, createUppy] of versions) {
    it(`Uppy ${major}: a file renamed in Uppy (meta.name, what the Dashboard edits) is stored under its new name (probe 13, W4)`, async () => {
      const uppy = createUppy(`rename-${major}`);
      uppy.use(MediaMirror, {
        api: stack.api,
        token: stack.token,
        prefix: `renamed${major}/`,
        workerUrl: null,
      });
      const bytes = await readFile(files.small);
      const id = uppy.addFile({
        name: 'Invoice #12.bin',
        type: 'application/octet-stream',
        data: new Blob([bytes, `rename ${major}`]),
      });
      // The name the API refuses, renamed as its message says.
      uppy.setFileMeta(id, { name: 'Invoice 12.bin' });
      const result = await uppy.upload();
      expect(result?.failed).toEqual([]);
      expect(uppy.getFile(id)?.response?.body).toMatchObject({ status: 'committed', version: 1 });
      const stored = await fetch(
        `${stack.api}/v1/files/${encodeURIComponent(`renamed${major}/Invoice 12.bin`)}`,
        {
          headers: { authorization: `Bearer ${stack.token}` },
        },
      );
      expect(stored.status).toBe(200);
    });
  }

  it('Retry after the upload ended (aborted at the API meanwhile): claimed anew under a new key, committed once', async () => {
    const uppy = new Uppy6({ id: 'node-ended' });
    uppy.use(MediaMirror, {
      api: stack.api,
      token: stack.token,
      prefix: 'ended/',
      workerUrl: null,
      retries: 0,
    });
    const bytes = await readFile(files.small);
    const id = uppy.addFile({
      name: 'c.bin',
      type: 'application/octet-stream',
      data: new Blob([bytes, 'c']),
    });
    const realFetch = globalThis.fetch;
    const claims: string[] = [];
    let down = true;
    globalThis.fetch = async (input, init) => {
      const request = new Request(input, init);
      if (down && request.method === 'PUT') {
        // The upload is ended at the API (as another tab's cancel would), and the network is down.
        await realFetch(`${stack.api}/v1/uploads/${claims[0]}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${stack.token}` },
        });
      }
      if (down && (request.method === 'PUT' || request.method === 'GET')) {
        throw new TypeError('fetch failed');
      }
      const response = await realFetch(request);
      if (request.method === 'POST' && new URL(request.url).pathname === '/v1/uploads') {
        claims.push(((await response.clone().json()) as { uploadId: string }).uploadId);
      }
      return response;
    };
    try {
      const failed = await uppy.upload();
      expect(failed?.failed?.map((f) => f.name)).toEqual(['c.bin']);
      down = false;
      const keyBefore = uppy.getFile(id).meta.mediaMirrorIdempotencyKey;
      const retried = await uppy.retryUpload(id);
      expect(retried?.successful?.map((f) => f.name)).toEqual(['c.bin']);
      // The retry replayed the ended claim, then claimed anew: a new upload under a new, kept key.
      expect(claims).toHaveLength(3);
      expect(claims[1]).toBe(claims[0]);
      expect(claims[2]).not.toBe(claims[0]);
      expect(uppy.getFile(id).meta.mediaMirrorIdempotencyKey).not.toBe(keyBefore);
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(uppy.getFile(id).response?.body).toMatchObject({ status: 'committed', version: 1 });
  });
});
