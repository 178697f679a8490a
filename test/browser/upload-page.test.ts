/**
 * The upload page in Debian's Chromium against the whole local stack: uploads that
 * reach every target, deduplication with no PUT, resume after a reload sending only
 * the missing parts, a tampered part rejected by the whole-object verification, and
 * the figures (hashing rate in the browser, 64 MiB upload rate).
 */
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page, Request, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Browser,
  launchBrowser,
  MB,
  MiB,
  randomFile,
  type Stack,
  startStack,
  watchConsole,
} from './support.ts';

let stack: Stack;
let browser: Browser;
let page: Page;
let consoleErrors: string[];
/** Storage refusing a part PUT (BadDigest): what the tampered file's parts must get. */
const storage400 = (e: string) => e.includes('status of 400') || e.startsWith(`http 400: PUT ${stack.s3}/`);
const files: Record<'small' | 'big' | 'warm' | 'resume' | 'tampered', string> = {
  small: '',
  big: '',
  warm: '',
  resume: '',
  tampered: '',
};
const figures: Record<string, string> = {};

const rate = (bytes: number, ms: number) =>
  `${(bytes / MB / (ms / 1000)).toFixed(0)} MB/s (${Math.round(ms)} ms)`;
const item = (path: string) => `li.upload[data-path="${path}"]`;

/** Requests the page sends to the S3 emulator, by method. */
function storageRequests(p: Page): { list: Request[]; puts: () => Request[] } {
  const list: Request[] = [];
  p.on('request', (r) => {
    if (new URL(r.url()).origin === stack.s3) list.push(r);
  });
  return { list, puts: () => list.filter((r) => r.method() === 'PUT') };
}

/** The claims (`POST /v1/uploads`) a page sends from now on. */
function claimsSent(p: Page): { sent: string[]; stop(): void } {
  const sent: string[] = [];
  const onRequest = (r: Request) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads') sent.push(r.url());
  };
  p.on('request', onRequest);
  return { sent, stop: () => p.off('request', onRequest) };
}

async function openPage(): Promise<Page> {
  const p = await browser.context.newPage();
  consoleErrors = watchConsole(p);
  await p.goto(`${stack.api}/?token=${encodeURIComponent(stack.token)}`);
  await p.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
  return p;
}

async function pick(p: Page, prefix: string, ...paths: string[]): Promise<void> {
  await p.fill('#prefix', prefix);
  await p.setInputFiles('#files', paths);
}

/** Waits for an upload's final state; fails early, with the page's message, if it errors. */
async function settled(p: Page, path: string, states: string[], timeout = 90_000): Promise<string> {
  const selector = states.map((s) => `${item(path)}[data-state="${s}"]`).join(', ');
  const failed = `${item(path)}[data-state="error"], ${item(path)}[data-state="cancelled"]`;
  const winner = await Promise.race([
    p.waitForSelector(selector, { timeout }).then(() => 'ok' as const),
    p.waitForSelector(failed, { timeout }).then(() => 'failed' as const),
  ]);
  if (winner === 'failed') {
    const text = await p.locator(`${item(path)} .error`).textContent();
    throw new Error(`the upload of ${path} failed on the page: ${text}`);
  }
  return (await p.getAttribute(item(path), 'data-state')) ?? '';
}

async function allTargetsHold(p: Page, path: string, timeout = 90_000): Promise<void> {
  await p.waitForSelector(`${item(path)}[data-all-hold="true"]`, { timeout });
}

beforeAll(async () => {
  stack = await startStack();
  browser = await launchBrowser(stack.tmp);
  files.small = await randomFile(join(stack.tmp, 'small.bin'), 300_000, 1);
  files.big = await randomFile(join(stack.tmp, 'big.bin'), 64 * MiB, 2);
  files.warm = await randomFile(join(stack.tmp, 'warm.bin'), 64 * MiB, 5);
  files.resume = await randomFile(join(stack.tmp, 'resume.bin'), 64 * MiB, 3);
  files.tampered = await randomFile(join(stack.tmp, 'tampered.bin'), 20 * MiB, 4);
  page = await openPage();
}, 180_000);

afterAll(async () => {
  if (page && !page.isClosed()) {
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/page.png', fullPage: true }).catch(() => undefined);
  }
  await browser?.close();
  await stack?.stop();
  const lines = Object.entries(figures).map(([k, v]) => `  ${k.padEnd(40)} ${v}`);
  if (lines.length > 0) console.log(['browser figures (Chromium):', ...lines].join('\n'));
}, 60_000);

describe('the upload page', () => {
  it('is keyboard-usable: labelled inputs and a real button for the file picker', async () => {
    for (const id of ['token', 'prefix', 'files']) {
      expect(await page.locator(`label[for="${id}"]`).count()).toBe(1);
    }
    expect(await page.locator('label:has(#rename-reserved)').count()).toBe(1);
    await page.focus('#token');
    for (const next of ['prefix', 'rename-reserved', 'files']) {
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe(next);
    }
    // The token left the address bar once read.
    expect(page.url()).not.toContain('token=');
  });

  it('uploads a small file and a 64 MiB file; every target comes to hold each', async () => {
    const s3 = storageRequests(page);
    const started = Date.now();
    await pick(page, 'e2e/', files.small, files.big);
    expect(await settled(page, 'e2e/small.bin', ['committed'])).toBe('committed');
    expect(await settled(page, 'e2e/big.bin', ['committed'])).toBe('committed');
    const committedMs = Date.now() - started;

    // One PUT for the small file, 8 parts of 8 MiB for the big one.
    const bigParts = s3.puts().filter((r) => r.url().includes('partNumber='));
    expect(bigParts).toHaveLength(8);
    expect(s3.puts()).toHaveLength(9);
    const big = await page.getAttribute(item('e2e/big.bin'), 'data-parts-sent');
    expect(big).toBe('8');

    await allTargetsHold(page, 'e2e/small.bin');
    await allTargetsHold(page, 'e2e/big.bin');
    const holdMs = Date.now() - started;
    const rows = page.locator(`${item('e2e/big.bin')} tr[data-target]`);
    const targets = await rows.evaluateAll((trs) =>
      trs.map((tr) => ({ id: tr.getAttribute('data-target'), holds: tr.getAttribute('data-holds') })),
    );
    expect(targets.map((t) => t.id).sort()).toEqual(Object.keys(stack.sandbox.endpoints.targets).sort());
    expect(targets.every((t) => t.holds === 'true')).toBe(true);

    // The ledger agrees with the page.
    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('e2e/big.bin')}`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    const file = (await res.json()) as {
      head: { version: number; size: number };
      targets: { status: string }[];
    };
    expect(file.head.size).toBe(64 * MiB);
    expect(file.targets.every((t) => t.status === 'copied' || t.status === 'verified')).toBe(true);

    // Recent files list them with their versions.
    await page.click('#recent-refresh');
    await page.waitForSelector('#recent tr[data-path="e2e/big.bin"][data-version="1"]', { timeout: 15_000 });

    const hashMs = Number(await page.getAttribute(item('e2e/big.bin'), 'data-hash-ms'));
    const uploadMs = Number(await page.getAttribute(item('e2e/big.bin'), 'data-upload-ms'));
    figures['64 MiB file: SHA-256 (worker)'] = rate(64 * MiB, hashMs);
    figures['64 MiB, cold API: upload'] = rate(64 * MiB, uploadMs);
    figures['small + 64 MiB: pick to committed'] = `${committedMs} ms`;
    figures['small + 64 MiB: pick to every target'] = `${holdMs} ms`;
    expect(consoleErrors).toEqual([]);
  });

  it('uploads the same content again: "deduplicated", and no request to storage', async () => {
    const s3 = storageRequests(page);
    // A prefix without its "/" is a folder all the same: copies/big.bin, not copiesbig.bin.
    await pick(page, 'copies', files.big);
    expect(await settled(page, 'copies/big.bin', ['deduplicated'])).toBe('deduplicated');
    await expect
      .poll(() => page.locator(`${item('copies/big.bin')} .phase`).textContent())
      .toMatch(/Deduplicated/);
    expect(s3.list).toEqual([]);
    await allTargetsHold(page, 'copies/big.bin');
    expect(s3.list).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it('uploads another 64 MiB file with the API warm (figure)', async () => {
    const started = Date.now();
    await pick(page, 'e2e/', files.warm);
    expect(await settled(page, 'e2e/warm.bin', ['committed'])).toBe('committed');
    const committedMs = Date.now() - started;
    const hashMs = Number(await page.getAttribute(item('e2e/warm.bin'), 'data-hash-ms'));
    const uploadMs = Number(await page.getAttribute(item('e2e/warm.bin'), 'data-upload-ms'));
    figures['64 MiB file: SHA-256 (worker), again'] = rate(64 * MiB, hashMs);
    figures['64 MiB, warm API: upload'] = rate(64 * MiB, uploadMs);
    figures['64 MiB, warm API: pick to committed'] = rate(64 * MiB, committedMs);
    await allTargetsHold(page, 'e2e/warm.bin');
    figures['64 MiB, warm API: pick to every target'] = `${Date.now() - started} ms`;
    expect(consoleErrors).toEqual([]);
  });

  it('resumes after a reload in the middle of a multipart upload, sending only the missing parts', async () => {
    // Let 3 part PUTs through, hold every later one, so the reload finds exactly 3 parts recorded.
    const held: Route[] = [];
    let passed = 0;
    const partUrl = (url: URL) => url.origin === stack.s3 && url.searchParams.has('partNumber');
    await page.route(partUrl, async (route) => {
      if (route.request().method() !== 'PUT') return route.continue();
      if (passed < 3) {
        passed++;
        return route.continue();
      }
      held.push(route);
    });
    const recorded: number[] = [];
    const onResponse = (r: { url(): string; request(): Request; status(): number }) => {
      // Parts are recorded in batches: `PUT /v1/uploads/{id}/parts {parts: [...]}`.
      if (
        r.request().method() === 'PUT' &&
        /\/v1\/uploads\/[^/]+\/parts$/.test(r.url()) &&
        r.status() === 200
      ) {
        const body = r.request().postDataJSON() as { parts: { partNumber: number }[] };
        recorded.push(...body.parts.map((p) => p.partNumber));
      }
    };
    page.on('response', onResponse);
    await pick(page, 'resume/', files.resume);
    await expect.poll(() => recorded.length, { timeout: 60_000 }).toBe(3);
    expect(await page.getAttribute(item('resume/resume.bin'), 'data-state')).toBe('uploading');
    page.off('response', onResponse);

    // Reload while the route still holds part PUTs: unrouting first would let a PUT sent in
    // between go through and be recorded, and the reload would then find 4 parts, not 3.
    await page.reload();
    for (const route of held) await route.abort().catch(() => undefined);
    await page.unroute(partUrl);
    await page.waitForSelector('body[data-ready="true"]');
    consoleErrors.length = 0;

    const s3 = storageRequests(page);
    await pick(page, 'resume/', files.resume);
    expect(await settled(page, 'resume/resume.bin', ['committed'])).toBe('committed');
    const partNumbers = s3
      .puts()
      .map((r) => Number(new URL(r.url()).searchParams.get('partNumber')))
      .sort((a, b) => a - b);
    expect(partNumbers).toHaveLength(5);
    expect(new Set(partNumbers).size).toBe(5);
    expect(partNumbers.some((n) => recorded.includes(n))).toBe(false);
    expect(await page.getAttribute(item('resume/resume.bin'), 'data-parts-skipped')).toBe('3');
    expect(await page.getAttribute(item('resume/resume.bin'), 'data-parts-sent')).toBe('5');
    await expect
      .poll(() => page.locator(`${item('resume/resume.bin')} .phase`).textContent())
      .toMatch(/Resumed/);
    await allTargetsHold(page, 'resume/resume.bin');
    expect(consoleErrors).toEqual([]);
  });

  it('a part whose bytes differ from its declared SHA-256 is refused by storage (BadDigest), and nothing is committed', async () => {
    // Flip one byte of part 2 on the wire. The part's SHA-256 is signed into its URL: the
    // local S3, as S3 does, refuses the PUT with BadDigest, and the page says so. (A client
    // that signs the checksum of the bytes it lies with is caught by the ingest's
    // whole-object check: test/integration/multipart.test.ts.)
    const partSize = 8 * MiB;
    const tamper = async (route: Route) => {
      const url = new URL(route.request().url());
      if (route.request().method() !== 'PUT' || url.searchParams.get('partNumber') !== '2')
        return route.continue();
      const handle = await open(files.tampered, 'r');
      const bytes = Buffer.alloc(partSize);
      await handle.read(bytes, 0, partSize, partSize);
      await handle.close();
      bytes[12345] = (bytes[12345] ?? 0) ^ 0xff;
      return route.continue({ postData: bytes });
    };
    const partUrl = (url: URL) => url.origin === stack.s3 && url.searchParams.has('partNumber');
    await page.route(partUrl, tamper);
    await pick(page, 'bad/', files.tampered);
    await page.waitForSelector(`${item('bad/tampered.bin')}[data-state="error"]`, { timeout: 90_000 });
    await page.unroute(partUrl, tamper);
    const message = await page.locator(`${item('bad/tampered.bin')} .error`).textContent();
    expect(message).toMatch(/part 2.*BadDigest/i);

    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('bad/tampered.bin')}`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(res.status).toBe(404);
    // The browser logs the refused part PUT(s) itself; nothing else may fail.
    expect(consoleErrors.filter((e) => !storage400(e))).toEqual([]);
    expect(consoleErrors.filter(storage400).length).toBeGreaterThan(0);
  });

  it('Cancel aborts a multipart upload at the API (DELETE) and says so', async () => {
    // Hold every part PUT so the upload is surely in flight when Cancel is pressed.
    const partUrl = (url: URL) => url.origin === stack.s3 && url.searchParams.has('partNumber');
    const held: Route[] = [];
    await page.route(partUrl, (route) => {
      held.push(route);
    });
    const deletes: { url: string; status: number }[] = [];
    page.on('response', (r) => {
      if (r.request().method() === 'DELETE') deletes.push({ url: r.url(), status: r.status() });
    });
    await pick(page, 'cancel/', files.tampered);
    await expect.poll(() => held.length, { timeout: 30_000 }).toBeGreaterThan(0);
    await page.click(`${item('cancel/tampered.bin')} button:has-text("Cancel")`);
    await page.waitForSelector(`${item('cancel/tampered.bin')}[data-state="cancelled"]`);
    await page.unroute(partUrl);
    for (const route of held) await route.abort().catch(() => undefined);
    await expect.poll(() => deletes.length, { timeout: 10_000 }).toBe(1);
    expect(deletes[0]?.status).toBe(200);
    const uploadId = decodeURIComponent(deletes[0]?.url.split('/').at(-1) ?? '');
    const res = await fetch(`${stack.api}/v1/uploads/${encodeURIComponent(uploadId)}`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(await res.json()).toMatchObject({ status: 'rejected', reason: 'aborted' });
    expect(await page.locator(`${item('cancel/tampered.bin')} .phase`).textContent()).toMatch(/Cancelled/);
    // The aborted part requests are the only errors the console may show, and storage refusing a
    // tampered part that went out before Cancel (BadDigest), which may land after this test ends.
    expect(consoleErrors.filter((e) => !/ERR_FAILED|ERR_ABORTED|net::/.test(e) && !storage400(e))).toEqual(
      [],
    );
    consoleErrors.length = 0;
  });

  it('Cancel that reaches the API after the commit says the file was committed, not "abandoned"', async () => {
    const file = await randomFile(join(stack.tmp, 'too-late.bin'), 200_000, 9);
    const path = 'too-late/too-late.bin';
    // The page's status reads are held (a slow poll, or a large file's 30 s poll interval) while
    // the ingest commits, so the page is still "verifying" when Cancel is pressed.
    const statusRead = (url: URL) => url.origin === stack.api && /^\/v1\/uploads\/[^/]+$/.test(url.pathname);
    const held: Route[] = [];
    await page.route(statusRead, (route) => {
      if (route.request().method() === 'GET') held.push(route);
      else void route.fallback();
    });
    await pick(page, 'too-late/', file);
    await page.waitForSelector(`${item(path)}[data-state="verifying"]`, { timeout: 30_000 });
    await expect
      .poll(
        async () => {
          const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent(path)}`, {
            headers: { authorization: `Bearer ${stack.token}` },
          });
          return res.status;
        },
        { timeout: 30_000 },
      )
      .toBe(200);
    await page.click(`${item(path)} button:has-text("Cancel")`);
    await page.unroute(statusRead);
    for (const route of held) await route.abort().catch(() => undefined);
    // Before, it read "Cancelled: the upload was abandoned." while version 1 was in the mirror.
    expect(await settled(page, path, ['committed'], 15_000)).toBe('committed');
    expect(await page.getAttribute(item(path), 'data-version')).toBe('1');
    consoleErrors.length = 0;
  });

  it('a target that does not hold the files yet holds up no upload: every file commits, each waits for the targets on its own (probe 13, W1)', async () => {
    const names = ['w1-a.bin', 'w1-b.bin', 'w1-c.bin', 'w1-d.bin', 'w1-e.bin'];
    const paths = await Promise.all(names.map((n, i) => randomFile(join(stack.tmp, n), 20_000, 20 + i)));
    // One target never comes to hold them while this route stands (an agent stopped, a slow region).
    const status = /\/v1\/files\/[^/?]+$/;
    await page.route(status, async (route) => {
      if (route.request().method() !== 'GET') return route.continue();
      const response = await route.fetch();
      const body = (await response.json()) as { targets?: { appliedVersion: number; status: string }[] };
      const targets = (body.targets ?? []).map((t, i) =>
        i === 0 ? { ...t, appliedVersion: 0, status: 'pending' } : t,
      );
      await route.fulfill({ response, json: { ...body, targets } });
    });
    try {
      await pick(page, 'slow-target', ...paths);
      for (const name of names)
        expect(await settled(page, `slow-target/${name}`, ['committed'], 60_000)).toBe('committed');
      for (const name of names)
        expect(await page.getAttribute(item(`slow-target/${name}`), 'data-all-hold'), name).toBeNull();
    } finally {
      // Waits for the reads in flight: a plain unroute lets them through at once, and their
      // handler's fulfill then fails ("Route is already handled!", an unhandled rejection).
      await page.unrouteAll({ behavior: 'wait' });
    }
    // The target comes to hold them: each file says so.
    for (const name of names) await allTargetsHold(page, `slow-target/${name}`);
  });

  it('recent files: a cursor the feed no longer takes (a ledger restored from a backup) is dropped, and the next refresh reads the feed afresh', async () => {
    await page.click('#recent-refresh');
    await page.waitForSelector('#recent tr[data-path="e2e/big.bin"]', { timeout: 15_000 });
    // The page now holds a cursor; the feed refuses it, every time, as after a restore. The page
    // also refreshes on its own every 5 s (a refresh may already be on its way with the cursor), so
    // what is checked is the first read after the last refusal, whichever refresh makes it: it must
    // start afresh (no cursor).
    // Every read of the feed goes through one handler, in the order the page makes them: a read is
    // known by its place, not its URL, since the cursor a fresh read ends with may be the very
    // string refused before (here the feed has not moved, so it is).
    const reads: string[] = [];
    let refusedAt = -1;
    // Once the page has read the feed afresh after a refusal, the feed it reads is the restored one.
    let afresh = false;
    const changes = /\/v1\/changes(\?|$)/;
    await page.route(changes, async (route) => {
      const url = route.request().url();
      const withCursor = new URL(url).searchParams.has('cursor');
      reads.push(url);
      if (!withCursor && refusedAt >= 0) afresh = true;
      if (!withCursor || afresh || (refusedAt >= 0 && url !== reads[refusedAt])) return route.continue();
      refusedAt = reads.length - 1;
      await route.fulfill({
        status: 400,
        contentType: 'application/json',
        body: JSON.stringify({
          error: { code: 'invalid_cursor', message: 'cursor is ahead of the feed', field: 'cursor' },
        }),
      });
    });
    try {
      const statusText = () => page.locator('#recent-status').textContent();
      await page.click('#recent-refresh');
      await page.waitForFunction(() =>
        /Cannot read the recent files/.test(document.querySelector('#recent-status')?.textContent ?? ''),
      );
      expect(refusedAt).toBeGreaterThanOrEqual(0);
      // Read from the start: the files show again, and the error goes.
      await page.click('#recent-refresh');
      await page.waitForFunction(() => (document.querySelector('#recent-status')?.textContent ?? 'x') === '');
      expect(await statusText()).toBe('');
      expect(await page.locator('#recent tr[data-path="e2e/big.bin"]').count()).toBe(1);
      const next = reads[refusedAt + 1];
      expect(next, reads.join('\n')).toBeDefined();
      expect(new URL(next as string).searchParams.has('cursor')).toBe(false);
    } finally {
      await page.unroute(changes);
      // The refused request's console line is this test's doing: the figures below must not see it.
      consoleErrors.length = 0;
    }
  });

  it('says so in words when the API refuses the token', async () => {
    const other = await browser.context.newPage();
    await other.goto(`${stack.api}/?token=wrong`);
    await other.waitForSelector('#form-error:not([hidden])');
    expect(await other.locator('#form-error').textContent()).toMatch(/refused the token/);
    await other.close();
  });

  it('a name with "#" fails before it is hashed or claimed, with the rule in words; "replace" sends it under "_"', async () => {
    const named = join(stack.tmp, 'Invoice #12.bin');
    await writeFile(named, 'invoice twelve');
    const claims: string[] = [];
    const onRequest = (r: Request) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads') claims.push(r.url());
    };
    page.on('request', onRequest);
    await pick(page, 'names/', named);
    const refused = item('names/Invoice #12.bin');
    await page.waitForSelector(`${refused}[data-state="error"]`, { timeout: 15_000 });
    expect(await page.locator(`${refused} .error`).textContent()).toMatch(
      /^file names may not contain "%", "\?" or "#": rename the file/,
    );
    expect(await page.getAttribute(refused, 'data-hash-ms')).toBeNull();
    expect(claims).toEqual([]);

    await page.check('#rename-reserved');
    await pick(page, 'names/', named);
    expect(await settled(page, 'names/Invoice _12.bin', ['committed'])).toBe('committed');
    expect(claims).toHaveLength(1);
    await page.uncheck('#rename-reserved');
    page.off('request', onRequest);
    expect(consoleErrors).toEqual([]);
  });

  it('two files picked together that go to one path: the later, with other content, fails before it is hashed; one with the same bytes is the same version', async () => {
    // photo.bin from three folders: the picker gives no folder, so all three go to twins/photo.bin.
    const [a, b, c] = ['one', 'two', 'three'].map((d) => join(stack.tmp, 'twins', d, 'photo.bin'));
    for (const f of [a, b, c]) await mkdir(join(f as string, '..'), { recursive: true });
    await writeFile(a as string, 'the first photo');
    await writeFile(b as string, 'another photo, other bytes');
    await writeFile(c as string, 'the first photo');
    await pick(page, 'twins/', a as string, b as string, c as string);
    const rows = page.locator(item('twins/photo.bin'));
    await expect.poll(async () => rows.count()).toBe(3);
    const ended = ['committed', 'deduplicated', 'error'];
    await page.waitForFunction(
      ([sel, states]) =>
        [...document.querySelectorAll(sel as string)].every((e) =>
          (states as string[]).includes(e.getAttribute('data-state') ?? ''),
        ),
      [item('twins/photo.bin'), ended],
      { timeout: 60_000 },
    );
    const states = await rows.evaluateAll((li) =>
      li.map((e) => ({
        state: e.getAttribute('data-state'),
        version: e.getAttribute('data-version'),
        hashed: e.getAttribute('data-hash-ms'),
        error: e.querySelector('.error')?.textContent ?? '',
      })),
    );
    const refused = states.filter((s) => s.state === 'error');
    expect(refused, JSON.stringify(states)).toHaveLength(1);
    expect(refused[0]?.error).toMatch(
      /^another file, "photo\.bin" \(15 bytes\), also goes to "twins\/photo\.bin", with other content: this one would replace it/,
    );
    expect(refused[0]?.hashed).toBeNull();
    // The other two are one version: the same bytes.
    expect(states.filter((s) => s.state !== 'error').map((s) => s.version)).toEqual(['1', '1']);
    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('twins/photo.bin')}`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    const file = (await res.json()) as { head: { version: number; size: number } };
    expect(file.head).toMatchObject({ version: 1, size: 15 });

    // Once the first is committed, the other dropped again is the next version, as asked.
    await pick(page, 'twins/', b as string);
    await expect.poll(async () => rows.count()).toBe(4);
    await page.waitForSelector(`${item('twins/photo.bin')}[data-version="2"]`, { timeout: 60_000 });
    expect(consoleErrors).toEqual([]);
  });

  it('café.bin named in NFC and in NFD, picked together: one path at the API, so the later, with other content, fails before it is hashed', async () => {
    const nfc = join(stack.tmp, 'nfc', 'caf\u00e9.bin');
    const nfd = join(stack.tmp, 'nfd', 'cafe\u0301.bin');
    for (const f of [nfc, nfd]) await mkdir(join(f, '..'), { recursive: true });
    await writeFile(nfc, 'a photo named in NFC');
    await writeFile(nfd, 'another photo, named in NFD');
    await pick(page, 'unicode/', nfc, nfd);
    const rows = page.locator('li.upload[data-path^="unicode/"]');
    await expect.poll(async () => rows.count()).toBe(2);
    await page.waitForFunction(
      (sel) =>
        [...document.querySelectorAll(sel)].every((e) =>
          ['committed', 'deduplicated', 'error'].includes(e.getAttribute('data-state') ?? ''),
        ),
      'li.upload[data-path^="unicode/"]',
      { timeout: 60_000 },
    );
    const states = await rows.evaluateAll((li) =>
      li.map((e) => ({
        state: e.getAttribute('data-state'),
        hashed: e.getAttribute('data-hash-ms'),
        error: e.querySelector('.error')?.textContent ?? '',
      })),
    );
    // The API stores both at unicode/café.bin (NFC): sent both, the later was silently its version 2.
    expect(states.map((s) => s.state).sort(), JSON.stringify(states)).toEqual(['committed', 'error']);
    const refused = states.find((s) => s.state === 'error');
    expect(refused?.error).toMatch(/^another file, "caf\u00e9\.bin" \(20 bytes\), also goes to /);
    expect(refused?.hashed).toBeNull();
    const res = await fetch(`${stack.api}/v1/files/${encodeURIComponent('unicode/caf\u00e9.bin')}/versions`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(((await res.json()) as { versions: unknown[] }).versions).toHaveLength(1);
    expect(consoleErrors).toEqual([]);
  });

  it('a folder dropped on the page uploads the files in it under their folder paths', async () => {
    const album = join(stack.tmp, 'album');
    await mkdir(join(album, 'sub'), { recursive: true });
    await writeFile(join(album, 'a.bin'), 'the first file of the album');
    await writeFile(join(album, 'sub', 'b.bin'), 'a file in a folder of the album');
    await page.fill('#prefix', 'drops/');
    // A drop from the desktop, as Chromium's input layer delivers it (what a user's drag does).
    const box = await page.locator('#drop').boundingBox();
    const at = { x: (box?.x ?? 0) + 20, y: (box?.y ?? 0) + 20 };
    const data = { items: [], files: [album], dragOperationsMask: 1 };
    const cdp = await browser.context.newCDPSession(page);
    for (const type of ['dragEnter', 'dragOver', 'drop'] as const)
      await cdp.send('Input.dispatchDragEvent', { type, ...at, data });
    await cdp.detach();
    // Before, the folder was one row, 'drops/album', failing with "cannot read the file", and
    // nothing in it was sent.
    for (const path of ['drops/album/a.bin', 'drops/album/sub/b.bin']) {
      expect(await settled(page, path, ['committed'])).toBe('committed');
    }
    expect(await page.locator(item('drops/album')).count()).toBe(0);
    expect(consoleErrors).toEqual([]);
  });

  it("a refused content type names the file's own type and what the mirror accepts, before the file is hashed (probe 13, W7)", async () => {
    const json = join(stack.tmp, 'data.json');
    await writeFile(json, '{"a": 1}');
    const claims = claimsSent(page);
    await pick(page, 'types/', json);
    const row = item('types/data.json');
    await page.waitForSelector(`${row}[data-state="error"]`, { timeout: 30_000 });
    expect(await page.locator(`${row} .error`).textContent()).toMatch(
      /^data\.json is application\/json; the mirror accepts image\/\*, .*application\/octet-stream\.$/,
    );
    // Nothing to continue: the file is refused as it is.
    expect(await page.locator(`${row} .phase`).textContent()).toBe('Failed.');
    // Refused from the API's published limits, before a byte is hashed: the claim would refuse it
    // whatever its hash (before, the whole file was hashed first: minutes for a multi-GiB one).
    expect(await page.getAttribute(row, 'data-hash-ms')).toBeNull();
    expect(claims.sent).toEqual([]);
    claims.stop();
    consoleErrors.length = 0;
  });

  it("a file larger than the API takes fails before it is hashed, with the API's own rule", async () => {
    // A deployment whose largest upload is 1 MB (its GET /v1/limits says so); a fresh page reads it.
    const p = await browser.context.newPage();
    await p.route('**/v1/limits', async (route) => {
      const real = await route.fetch();
      const limits = { ...((await real.json()) as object), maxUploadBytes: 1_000_000 };
      await route.fulfill({ response: real, json: limits });
    });
    await p.goto(`${stack.api}/?token=${encodeURIComponent(stack.token)}`);
    await p.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    const big = await randomFile(join(stack.tmp, 'over-limit.bin'), 2 * MiB, 21);
    const claims = claimsSent(p);
    await pick(p, 'limits/', big);
    const row = item('limits/over-limit.bin');
    await p.waitForSelector(`${row}[data-state="error"]`, { timeout: 30_000 });
    // The words the API's claim answers with (413 too_large), naming the field.
    expect(await p.locator(`${row} .error`).textContent()).toBe(
      'size must be at most 1000000 bytes (field: size)',
    );
    expect(await p.locator(`${row} .phase`).textContent()).toBe('Failed.');
    expect(await p.getAttribute(row, 'data-hash-ms')).toBeNull();
    expect(claims.sent).toEqual([]);
    claims.stop();
    await p.close();
  });

  it("a file whose path the claim would refuse (under a live file: path_conflict) fails before it is hashed, with the claim's words", async () => {
    const p = await browser.context.newPage();
    await p.goto(`${stack.api}/?token=${encodeURIComponent(stack.token)}`);
    await p.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    // A live file at conflicts/clip: the pull target (onprem-dc1) cannot hold anything under it, a
    // rule only the API knows (it reads the live files): the page asks GET /v1/paths before hashing.
    const clip = await randomFile(join(stack.tmp, 'clip'), 1000, 22);
    await pick(p, 'conflicts/', clip);
    expect(await settled(p, 'conflicts/clip', ['committed'])).toBe('committed');
    // Large enough to be asked about before its hash (PATH_CHECK_FROM_BYTES, 16 MiB).
    const under = await randomFile(join(stack.tmp, 'under-a-file.bin'), 16 * MiB, 23);
    const claims = claimsSent(p);
    await pick(p, 'conflicts/clip/', under);
    const row = item('conflicts/clip/under-a-file.bin');
    await p.waitForSelector(`${row}[data-state="error"]`, { timeout: 30_000 });
    expect(await p.locator(`${row} .error`).textContent()).toBe(
      'path lies under "conflicts/clip", which is a file (a pull target cannot hold both) (field: path)',
    );
    // Before, the whole file was hashed, then the claim refused it with these words.
    expect(await p.getAttribute(row, 'data-hash-ms')).toBeNull();
    expect(claims.sent).toEqual([]);
    claims.stop();
    await p.close();
  });

  it('a name with a bidirectional control is shown with that character named, not reordered (probe 13, W8)', async () => {
    const name = 'inv\u202Egnp.exe';
    const file = join(stack.tmp, name);
    await writeFile(file, 'not a png');
    const claims: string[] = [];
    const onRequest = (r: Request) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads') claims.push(r.url());
    };
    page.on('request', onRequest);
    await pick(page, 'names/', file);
    const row = item(`names/${name}`);
    await page.waitForSelector(`${row}[data-state="error"]`, { timeout: 15_000 });
    page.off('request', onRequest);
    expect(await page.locator(`${row} .error`).textContent()).toMatch(/bidirectional control characters/);
    // Refused before it is hashed or claimed, as the CLI does (probe webui): before, the whole file
    // was hashed and the claim refused (400 invalid_path).
    expect(await page.getAttribute(row, 'data-hash-ms')).toBeNull();
    expect(claims).toEqual([]);
    const shown = 'inv<U+202E>gnp.exe';
    expect(await page.locator(`${row} h4`).textContent()).toBe(`${shown} → names/${shown}`);
    expect(await page.locator(`${row} caption`).textContent()).toBe(`Targets of names/${shown}`);
    expect(await page.getAttribute(`${row} button`, 'aria-label')).toBe(`Cancel the upload of ${shown}`);
    const text = await page.locator(row).evaluate((li) => li.textContent ?? '');
    expect(text).not.toContain('\u202E');
    // No request was refused: nothing reached the API.
    expect(consoleErrors).toEqual([]);
  });

  it('storage that keeps failing: the row says how to continue, and dropping the same file again does (probe 13, W5)', async () => {
    const path = await randomFile(join(stack.tmp, 'busy.bin'), 50_000, 41);
    const storage = (url: URL) => url.origin === new URL(stack.s3).origin;
    const busy = (route: Route) =>
      route.request().method() === 'PUT'
        ? route.fulfill({ status: 503, body: '<Error><Code>SlowDown</Code></Error>' })
        : route.continue();
    await page.route(storage, busy);
    try {
      await pick(page, 'busy/', path);
      await page.waitForSelector(`${item('busy/busy.bin')}[data-state="error"]`, { timeout: 60_000 });
    } finally {
      await page.unroute(storage, busy);
    }
    expect(await page.locator(`${item('busy/busy.bin')} .error`).textContent()).toMatch(
      /storage answered 503/,
    );
    expect(await page.locator(`${item('busy/busy.bin')} .phase`).textContent()).toMatch(
      /^Failed\. To continue, drop or pick the same file again/,
    );
    // A new row for the same path (the failed one stays above it).
    await pick(page, 'busy/', path);
    await page.waitForSelector(`${item('busy/busy.bin')}[data-state="committed"]`, { timeout: 60_000 });
    consoleErrors.length = 0;
  });

  it('a 10 s network drop (the browser offline) does not fail an upload: it waits, then goes on (probe 13, W5)', async () => {
    const path = await randomFile(join(stack.tmp, 'offline.bin'), 60_000, 42);
    // The network goes as the file is claimed (after hashing, whose worker script is fetched).
    const claim = (url: URL) => url.pathname === '/v1/uploads';
    let dropped = false;
    const drop = async (route: Route) => {
      if (route.request().method() !== 'POST' || dropped) return route.continue();
      dropped = true;
      await browser.context.setOffline(true);
      return route.abort('internetdisconnected');
    };
    await page.route(claim, drop);
    try {
      await pick(page, 'offline/', path);
      await expect.poll(() => dropped, { timeout: 30_000 }).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      expect(await page.getAttribute(item('offline/offline.bin'), 'data-state')).not.toBe('error');
    } finally {
      await browser.context.setOffline(false);
      await page.unroute(claim, drop);
    }
    expect(await settled(page, 'offline/offline.bin', ['committed'])).toBe('committed');
    consoleErrors.length = 0;
  });

  it('hashes in a Web Worker at speed (figure)', async () => {
    // A string, so the test runner's transform does not rewrite the page's dynamic import.
    const result = (await page.evaluate(`(async (size) => {
      const client = await import('/client.js');
      const block = new Uint8Array(4 * 1024 * 1024);
      for (let i = 0; i < block.length; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
      const blob = new Blob(Array.from({ length: size / block.length }, () => block));
      const t0 = performance.now();
      const inWorker = await client.sha256File(blob);
      const t1 = performance.now();
      const inline = await client.sha256File(blob, { workerUrl: null });
      const t2 = performance.now();
      return { same: inWorker === inline, workerMs: t1 - t0, inlineMs: t2 - t1 };
    })(${256 * MiB})`)) as { same: boolean; workerMs: number; inlineMs: number };
    expect(result.same).toBe(true);
    figures['256 MiB Blob: SHA-256 (worker)'] = rate(256 * MiB, result.workerMs);
    figures['256 MiB Blob: SHA-256 (page thread)'] = rate(256 * MiB, result.inlineMs);
    expect(consoleErrors.filter((e) => !storage400(e))).toEqual([]);
    expect(stack.log).toEqual([]);
  });
});
