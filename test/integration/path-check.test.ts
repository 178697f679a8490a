/**
 * `GET /v1/paths` through the local stack (its front, the api function, dynalite): the claim's
 * answer for a path alone, on a topology where rules only the API knows apply (an S3 target's key
 * prefix, a pull target's folder/file rule), and the CLI's `upload` refusing such a path before it
 * hashes the file.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import { PATH_CHECK_FROM_BYTES } from '../../web/client/upload/claim.ts';
import { localApi } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: 'eu-west-1', kind: 's3', region: 'eu-west-1', keyPrefix: 'a-long-key-prefix/' },
    { id: 'onprem', kind: 'pull' },
  ],
  limits: { contentTypes: ['image/*', 'video/*', 'text/plain'], presignTtlSeconds: 600 },
});

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack('path-check', { topology, env: {}, agents: false, schedules: false });
}, 120_000);

afterAll(() => stack?.stop());

/** A live file at `media/clips`: a pull target cannot hold anything under it (the same content again is unchanged). */
async function fileAtClips(): Promise<void> {
  const uploaded = join(stack.dir, 'clips');
  await writeFile(uploaded, 'a file named like a folder');
  const committed = await stack.cli('upload', uploaded, 'media/clips', '--content-type', 'text/plain');
  expect(committed.code, committed.err).toBe(0);
}

const api = () => localApi(stack.sandbox.endpoints);
const check = (path: string) => api().call('GET', `/v1/paths?${new URLSearchParams({ path })}`);
const claim = (path: string) =>
  api().call('POST', '/v1/uploads', { path, size: 3, sha256: 'ab'.repeat(32), contentType: 'text/plain' });

describe('GET /v1/paths on the local stack', () => {
  it("answers each refusal as the claim does, through the front's query decoding", async () => {
    await fileAtClips();
    for (const path of [
      `${`${'d'.repeat(200)}/`.repeat(5)}f.jpg`, // 1005 bytes: over 1024 - 18 for eu-west-1's key prefix
      'media/clips/a.mp4', // under a live file: path_conflict
      'media', // a folder of live files: path_conflict
      `${'a/'.repeat(46)}f.jpg`,
      'why?.jpg',
      '100%41.jpg',
      'a#b.jpg',
      'photos/versions',
    ]) {
      const refused = await claim(path);
      expect(refused.status, path).toBe(400);
      const checked = await check(path);
      expect({ status: checked.status, body: checked.body }, path).toEqual({
        status: refused.status,
        body: refused.body,
      });
    }
    expect((await check('media/clips/a.mp4')).body.error.code).toBe('path_conflict');
    expect((await check(`${`${'d'.repeat(200)}/`.repeat(5)}f.jpg`)).body.error.message).toBe(
      'path must be at most 1006 bytes in UTF-8 (target "eu-west-1")',
    );
    const accepted = await check('media/2026/cafe\u0301.jpg');
    expect({ status: accepted.status, body: accepted.body }).toEqual({
      status: 200,
      body: { path: 'media/2026/caf\u00e9.jpg', accepted: true },
    });
  });

  it("the CLI refuses an upload under a live file before hashing it: the claim's line, exit 1, nothing claimed", async () => {
    await fileAtClips();
    const big = join(stack.dir, 'big.mp4');
    // Large enough to be asked about before its hash (a smaller file learns it from its claim).
    await writeFile(big, randomBytes(PATH_CHECK_FROM_BYTES));
    const refused = await stack.cli('upload', big, 'media/clips/big.mp4');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain(
      'error 400 path_conflict: path lies under "media/clips", which is a file (a pull target cannot hold both) (field: path)',
    );
    // Progress goes to stderr as JSON lines: no hashing phase began.
    expect(refused.err).not.toMatch(/"phase":"hashing"/);
    const listed = await stack.cli('ls', 'media/', '--json');
    expect(listed.code, listed.err).toBe(0);
    expect(listed.out).not.toContain('big.mp4');
  });
});
