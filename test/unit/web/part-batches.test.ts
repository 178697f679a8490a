/**
 * Parts presigned and recorded in batches (web/client/upload/part-batches.ts), against an API
 * stub that counts calls: the call count of a 50 GiB upload at the API's limits, and URLs
 * renewed a batch at a time. No network.
 */
import { describe, expect, it } from 'vitest';
import type { PartRequest, PresignedPart } from '../../../contracts/api.ts';
import { planParts } from '../../../functions/core/multipart.ts';
import type { MirrorApi } from '../../../web/client/api.ts';
import { allParts, type PartRange } from '../../../web/client/plan.ts';
import {
  batchSizes,
  PartRecorder,
  PartSigner,
  type RecordedPart,
} from '../../../web/client/upload/part-batches.ts';

const GiB = 1024 ** 3;

/**
 * An API that signs every part for `lifetimeMs` and records everything, counting calls. `skewMs`:
 * how far the browser's clock is ahead of the API's (the URLs then carry SigV4's own dating, as
 * S3's presigned URLs do).
 */
function stubApi(lifetimeMs = 900_000, skewMs?: number) {
  const presigned: number[][] = [];
  const recorded: number[][] = [];
  const api = {
    async presignParts(_id: string, parts: readonly PartRequest[]): Promise<PresignedPart[]> {
      presigned.push(parts.map((p) => p.partNumber));
      const signedAt = new Date(Date.now() - (skewMs ?? 0));
      const expiresAt = new Date(signedAt.getTime() + lifetimeMs).toISOString();
      const dating =
        skewMs === undefined
          ? ''
          : `&X-Amz-Date=${signedAt.toISOString().replace(/[-:]|\.\d+/g, '')}&X-Amz-Expires=${lifetimeMs / 1000}`;
      return parts.map((p) => ({
        partNumber: p.partNumber,
        url: `https://s3.test/blob?partNumber=${p.partNumber}${dating}`,
        headers: { 'x-amz-checksum-sha256': `${'A'.repeat(43)}=` },
        automaticHeaders: { 'content-length': String(p.size), host: 's3.test' },
        expiresAt,
      }));
    },
    async recordParts(_id: string, parts: readonly RecordedPart[]) {
      recorded.push(parts.map((p) => p.partNumber));
      return { partSize: 1, partCount: 1, uploadedParts: [] };
    },
  };
  return { api: api as unknown as MirrorApi, presigned, recorded };
}

const hash = async (start: number, end: number) => `${start}-${end}`.padEnd(64, '0');

/** Sends `todo` as the client does: `concurrency` lanes, each part's URL from the signer, then recorded. */
async function sendAll(api: MirrorApi, todo: readonly PartRange[], concurrency: number) {
  const signal = new AbortController().signal;
  const sizes = batchSizes(todo.length, concurrency);
  const signer = new PartSigner({ api, uploadId: 'u', hash, signal, concurrency }, todo, sizes);
  const recorder = new PartRecorder(api, 'u', signal, sizes.max);
  const queue = [...todo];
  const lane = async () => {
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      const { sha256 } = await signer.get(part);
      signer.done(part.partNumber);
      await recorder.add({ partNumber: part.partNumber, size: part.size, sha256, etag: '"e"' });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  await recorder.flush();
  return signer;
}

describe('parts in batches', () => {
  it('a 50 GiB upload: every part presigned and recorded once, in a few dozen calls', async () => {
    const size = 50 * GiB;
    const plan = planParts(size);
    expect(plan.partCount).toBe(6400);
    const { api, presigned, recorded } = stubApi();
    await sendAll(api, allParts(size, plan), 4);

    const signedParts = presigned.flat().sort((a, b) => a - b);
    expect(signedParts).toEqual(Array.from({ length: 6400 }, (_, i) => i + 1));
    expect(recorded.flat().sort((a, b) => a - b)).toEqual(signedParts);
    // Batches start small (the first PUT waits for 8 parts' hashes) and double up to 400.
    expect(presigned.map((b) => b.length).slice(0, 7)).toEqual([8, 16, 32, 64, 128, 256, 400]);
    expect(presigned.length).toBe(21);
    expect(recorded.length).toBe(16);
    console.log(
      `50 GiB, ${plan.partCount} parts: ${presigned.length} presign calls, ${recorded.length} record calls ` +
        `(was ${plan.partCount} + ${plan.partCount})`,
    );
  });

  it('a browser whose clock is 20 minutes fast or slow still signs each part once (probe skew)', async () => {
    const size = 50 * GiB;
    const plan = planParts(size);
    for (const skewMs of [20 * 60_000, -20 * 60_000]) {
      const { api, presigned } = stubApi(900_000, skewMs);
      await sendAll(api, allParts(size, plan), 4);
      // Each URL's 15 minutes are counted from when it came, not against the API's expiresAt read
      // on the browser's clock: fast, every part had its whole batch signed again.
      expect(presigned.flat()).toHaveLength(6400);
      expect(presigned.length).toBe(21);
    }
  });

  it("a URL's life runs on this browser's own time: 14 minutes on, it is signed again (probe skew)", async () => {
    let t = 0;
    const { api, presigned } = stubApi(900_000, 2 * 3600_000);
    const todo = allParts(4 * 8 * 1024 * 1024, { partSize: 8 * 1024 * 1024, partCount: 4 });
    const signal = new AbortController().signal;
    const signer = new PartSigner(
      { api, uploadId: 'u', hash, signal, concurrency: 1 },
      todo,
      batchSizes(4, 1),
      () => t,
    );
    await signer.get(todo[0] as PartRange);
    await signer.get(todo[0] as PartRange);
    // The next batch is signed ahead: let it land before time moves on.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(presigned).toEqual([
      [1, 2],
      [3, 4],
    ]);
    t += 14 * 60_000 + 1;
    await signer.get(todo[0] as PartRange);
    expect(presigned).toEqual([
      [1, 2],
      [3, 4],
      [1, 2, 3, 4],
    ]);
  });

  it('signs again, a batch at a time, URLs that expired or that storage refused', async () => {
    // The API signs short-lived URLs near the upload's expiry: one signed now is used, once.
    const expiring = stubApi(30_000);
    const todo = allParts(40 * 8 * 1024 * 1024, { partSize: 8 * 1024 * 1024, partCount: 40 });
    const signal = new AbortController().signal;
    const short = new PartSigner(
      { api: expiring.api, uploadId: 'u', hash, signal, concurrency: 2 },
      todo,
      batchSizes(40, 2),
    );
    await short.get(todo[0] as PartRange);
    expect(expiring.presigned).toEqual([[1, 2, 3, 4]]);
    // Part 1 again (a retried PUT): its URL has under a minute left, so it is signed again with
    // the parts after it whose URLs are as short-lived, in one call.
    await short.get(todo[0] as PartRange);
    const withPart1 = expiring.presigned.filter((b) => b.includes(1));
    expect(withPart1).toHaveLength(2);
    expect(withPart1[1]?.slice(0, 4)).toEqual([1, 2, 3, 4]);

    const { api, presigned } = stubApi();
    const fresh = new PartSigner(
      { api, uploadId: 'u', hash, signal, concurrency: 2 },
      todo,
      batchSizes(40, 2),
    );
    await fresh.get(todo[0] as PartRange);
    expect(presigned).toEqual([[1, 2, 3, 4]]);
    // Storage refused part 1's URL: signed again with the parts after it that need a URL.
    await fresh.get(todo[0] as PartRange, true);
    const renewed = presigned.filter((b) => b.includes(1));
    expect(renewed).toHaveLength(2);
    expect(renewed[1]?.[0]).toBe(1);
    // Parts 2-4 still hold fresh URLs: not signed again.
    expect(renewed[1]).not.toContain(2);
  });
});
