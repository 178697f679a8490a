/** A large file from the CLI: one claim, whose multipart plan the web client's part steps continue. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPartSender } from '../../../cli/multipart.ts';
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

async function upload(mirror: FakeMirror, bytes: Uint8Array, path: string) {
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
      progress: silentProgress,
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
});
