/**
 * `GET /v1/paths?path=`: what a claim (POST /v1/uploads) of a path would answer for the path
 * alone, asked before a client hashes the file. Every refusal is held to the claim's own answer
 * (status and body, message and target named), on a topology where every rule of docs/api.md
 * "The path policy" applies; the check reads the ledger and writes nothing.
 */
import { describe, expect, it } from 'vitest';
import { apiLimits } from '../../../contracts/api.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import type { ApiDeps } from '../../../functions/handlers/api-handler.js';
import { httpEvent } from '../../support/api-events.js';
import { apiOverLedger } from '../../support/domain.js';
import { countingLedger } from '../../support/in-memory-core.js';
import { commitWrite } from '../../support/ledger-contract.js';

/** The ledger methods the check may call: the folder/file rule's reads. */
const FOLDER_RULE_READS = new Set(['liveFilesAmong', 'hasLiveFileUnder']);

async function checkApi() {
  const inner = new InMemoryLedger();
  let seq = 0;
  for (const path of ['taken.jpg', 'albums/inner.jpg']) {
    const state = await inner.readCommitState(path, 0);
    await inner.commit(commitWrite(path, state.version + 1, ++seq));
  }
  const { ledger, calls } = countingLedger(inner);
  // A pull target (file-system rules, the folder/file rule, the depth limit) and an S3 target
  // whose key prefix shortens the longest path.
  const answer = apiOverLedger(
    ledger,
    [
      { id: 'onprem', kind: 'pull' },
      { id: 'eu', kind: 's3', region: 'eu-west-1', keyPrefix: 'replica-prefix/' },
    ] as unknown as ApiDeps['targets'],
    1,
  );
  const check = (path: string) => answer(httpEvent('GET', '/v1/paths', { query: { path } }));
  const claim = (path: string) =>
    answer(
      httpEvent('POST', '/v1/uploads', {
        body: { path, size: 5, sha256: 'ab'.repeat(32), contentType: 'image/jpeg' },
      }),
    );
  return { check, claim, calls, answer };
}

/** One path per rule of docs/api.md "The path policy" (and the claim's own bound on `path`). */
const REFUSED: Record<string, string> = {
  'longer than the S3 target takes with its key prefix': `${`${'d'.repeat(200)}/`.repeat(5)}f.jpg`,
  'a name over 255 bytes (pull target)': `media/${'n'.repeat(256)}.jpg`,
  "under the agent's state folder": '.media-mirror/state.json',
  "an agent's temp-file name": 'media/.a.jpg.mirror-tmp-x1y2',
  'deeper than 45 folders': `${'a/'.repeat(46)}f.jpg`,
  '"versions" as the last name': 'photos/versions',
  '"content" as the last name': 'photos/content',
  'a "?" in a name': 'why?.jpg',
  'a "%" in a name': '100%41.jpg',
  'a "#" in a name': 'a#b.jpg',
  'a ".." segment': 'media/../etc/passwd',
  'a leading "/"': '/abs.jpg',
  'an empty segment': 'a//b.jpg',
  'a bidirectional control': 'invoice\u202Egpj.exe',
  'a zero-width space': 'a\u200Bb.jpg',
  empty: '',
  'over the request bound on a path': 'x/'.repeat(apiLimits.maxPathLength),
  'under a live file (path_conflict)': 'taken.jpg/inside.jpg',
  'a folder of live files (path_conflict)': 'albums',
};

describe("GET /v1/paths: the claim's answer for the path, before the file is hashed", () => {
  it.each(Object.entries(REFUSED))('refuses a path %s exactly as the claim does', async (_rule, path) => {
    const { check, claim } = await checkApi();
    const claimed = await claim(path);
    expect(claimed.status).toBe(400);
    expect(claimed.body.error.field).toBe('path');
    expect(await check(path)).toEqual(claimed);
  });

  it('names the S3 target whose key prefix the path does not fit, and tells a conflict from a broken rule', async () => {
    const { check } = await checkApi();
    expect(
      (await check(REFUSED['longer than the S3 target takes with its key prefix'] as string)).body,
    ).toEqual({
      error: {
        code: 'invalid_path',
        message: 'path must be at most 1009 bytes in UTF-8 (target "eu")',
        field: 'path',
      },
    });
    expect((await check('taken.jpg/inside.jpg')).body.error).toMatchObject({
      code: 'path_conflict',
      field: 'path',
    });
  });

  it('accepts a path the claim takes: 200 with the path as the mirror stores it (NFC)', async () => {
    const { check, claim } = await checkApi();
    expect(await check('media/2026/cafe\u0301.jpg')).toEqual({
      status: 200,
      body: { path: 'media/2026/caf\u00e9.jpg', accepted: true },
    });
    // A file replacing itself is no conflict; a deleted-free sibling folder neither.
    expect((await check('taken.jpg')).status).toBe(200);
    expect((await check('albums/other.jpg')).status).toBe(200);
    expect((await claim('media/2026/cafe\u0301.jpg')).status).toBe(201);
  });

  it('writes nothing: only the folder/file rule reads the ledger', async () => {
    const { check, calls } = await checkApi();
    for (const path of ['media/ok.jpg', 'taken.jpg/inside.jpg', 'albums', 'photos/versions'])
      await check(path);
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.filter((name) => !FOLDER_RULE_READS.has(name))).toEqual([]);
  });

  it('refuses a missing path or an unknown query parameter, naming it', async () => {
    const { answer } = await checkApi();
    const missing = await answer(httpEvent('GET', '/v1/paths'));
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: 'invalid', field: 'path' });
    const unknown = await answer(httpEvent('GET', '/v1/paths', { query: { path: 'a.jpg', Path: 'b.jpg' } }));
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatchObject({ code: 'invalid', field: 'Path' });
  });
});
