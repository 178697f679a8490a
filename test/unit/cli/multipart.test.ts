/** A large file from the CLI: one claim, whose multipart plan the web client's part steps continue. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPartSender } from '../../../cli/multipart.ts';
import type { ProgressSink } from '../../../cli/progress.ts';
import { systemClock, uploadFile } from '../../../cli/upload.ts';
import { MirrorApi } from '../../../web/client/api.ts';
import { silentProgress } from '../../support/silent-progress.ts';
import { bytesOf, contractViolations, FakeMirror, MiB, sha256Of } from '../web/fake-api.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-multipart-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  expect(contractViolations.splice(0)).toEqual([]);
});

async function upload(mirror: FakeMirror, bytes: Uint8Array, path: string, progress = silentProgress) {
  const file = join(dir, path.replaceAll('/', '_'));
  await writeFile(file, bytes);
  const client = new MirrorApi({ baseUrl: 'https://api.test', token: 'secret', fetch: mirror.fetch });
  return uploadFile(
    {
      client,
      putFile: async () => {
        throw new Error('a multipart upload sends no single PUT');
      },
      sendParts: createPartSender(client, mirror.fetch),
      clock: systemClock,
      progress,
    },
    { file, path, pollIntervalMs: 1 },
  );
}

const claims = (mirror: FakeMirror) =>
  mirror.requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname === '/v1/uploads');

describe('CLI upload above the multipart threshold', () => {
  it('creates the upload once: the parts continue the CLI’s own claim', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(12 * MiB + 7, 3);
    const result = await upload(mirror, bytes, 'big/one.bin');
    expect(result).toMatchObject({
      status: 'committed',
      version: 1,
      deduplicated: false,
      sha256: sha256Of(bytes),
    });
    expect(claims(mirror)).toHaveLength(1);
    expect(
      mirror
        .storageRequests()
        .map((r) => new URL(r.url).searchParams.get('partNumber'))
        .sort(),
    ).toEqual(['1', '2', '3']);
    expect(mirror.apiRequests('POST').filter((r) => r.url.endsWith('/complete'))).toHaveLength(1);
  });

  it('a second upload of the same bytes proves possession: one claim, one proof, no part sent', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(6 * MiB, 4);
    await upload(mirror, bytes, 'big/first.bin');
    mirror.requests.length = 0;
    const again = await upload(mirror, bytes, 'big/copy.bin');
    expect(again).toMatchObject({ status: 'committed', deduplicated: true });
    expect(claims(mirror)).toHaveLength(1);
    expect(mirror.storageRequests()).toEqual([]);
  });

  it('a resumed upload sends only the parts storage lacks, and its progress counts only those bytes', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = bytesOf(17 * MiB + 7, 5);
    const part = (n: number) => bytes.slice((n - 1) * 5 * MiB, Math.min(bytes.length, n * 5 * MiB));
    // Parts 1 and 3 arrived before an interruption; part 2 only in part (a wrong size: sent again).
    const seeded = mirror.seedMultipart({
      path: 'big/resumed.bin',
      bytes,
      parts: { 1: part(1), 2: part(2).subarray(0, 1000), 3: part(3) },
    });
    const phases: { phase: string; total?: number; details?: object }[] = [];
    const uploading: number[] = [];
    const progress: ProgressSink = {
      phase(phase, total, details) {
        phases.push({ phase, ...(total === undefined ? {} : { total }), ...(details ? { details } : {}) });
      },
      bytes(done) {
        if (phases.at(-1)?.phase === 'uploading') uploading.push(done);
      },
      stop() {},
    };
    const result = await upload(mirror, bytes, 'big/resumed.bin', progress);
    expect(result).toMatchObject({ status: 'committed', uploadId: seeded });
    const sent = mirror.storageRequests().map((r) => Number(new URL(r.url).searchParams.get('partNumber')));
    expect(sent.sort()).toEqual([2, 4]);
    const toSend = 5 * MiB + (2 * MiB + 7);
    expect(phases.find((p) => p.phase === 'uploading')).toEqual({
      phase: 'uploading',
      total: toSend,
      details: { uploadId: seeded, parts: 4, storedBytes: 10 * MiB },
    });
    expect(uploading.length).toBeGreaterThan(0);
    expect(Math.max(...uploading)).toBe(toSend);
    expect(uploading.at(-1)).toBe(toSend);
    // A running total: never backwards, so a sum of its steps (sync's bytesSent) is what was sent.
    for (let i = 1; i < uploading.length; i++)
      expect(uploading[i]).toBeGreaterThanOrEqual(uploading[i - 1] as number);
  });

  it('parts sent again after storage refused them as recorded (invalid_parts) count as sent again', async () => {
    const mirror = new FakeMirror({ threshold: 5 * MiB, partSize: 5 * MiB });
    mirror.staleEtagOnce(2);
    const bytes = bytesOf(12 * MiB, 6);
    let sent = 0;
    const progress: ProgressSink = {
      phase() {},
      bytes(done) {
        sent = done;
      },
      stop() {},
    };
    await upload(mirror, bytes, 'big/resent.bin', progress);
    expect(mirror.storageRequests()).toHaveLength(6);
    expect(sent).toBe(2 * bytes.length);
  });
});
