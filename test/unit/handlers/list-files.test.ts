/**
 * `GET /v1/files`: live files under a prefix, a page at a time, through the API function
 * (its contract check included) on an in-memory ledger; bad input is a 400 naming field and rule.
 */
import { describe, expect, it } from 'vitest';
import { fileListSchema } from '../../../contracts/api.js';
import type { FileVersion } from '../../../contracts/model.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { quietTelemetry } from '../../../functions/adapters/powertools.js';
import { systemClock } from '../../../functions/adapters/wiring.js';
import { type ApiDeps, createApiHandler } from '../../../functions/handlers/api-handler.js';
import { httpEvent, lambdaContext } from '../../support/api-events.js';
import { RecordingMetrics } from '../../support/domain.js';
import { commitWrite } from '../../support/ledger-contract.js';

/** A cursor as the API encodes one, around any text. */
const cursorOf = (after: string, prefix = 'photos/') =>
  Buffer.from(JSON.stringify({ after, prefix })).toString('base64url');

async function apiOver(paths: readonly string[], deleted: readonly string[] = []) {
  const ledger = new InMemoryLedger();
  let seq = 0;
  const commit = async (path: string, sha256?: string | null) => {
    const state = await ledger.readCommitState(path, 0);
    await ledger.commit(commitWrite(path, state.version + 1, ++seq, { sha256 }));
  };
  for (const path of paths) await commit(path);
  for (const path of deleted) await commit(path, null);
  const handler = createApiHandler({
    ledger,
    clock: systemClock,
    targets: [],
    feedShards: 1,
    telemetry: quietTelemetry(new RecordingMetrics()),
  } as unknown as ApiDeps);
  return async (query: Record<string, string>) => {
    const result = await handler(httpEvent('GET', '/v1/files', { query }), lambdaContext('api'));
    return { status: result.statusCode, body: JSON.parse(String(result.body)) };
  };
}

describe('GET /v1/files', () => {
  it('pages through the live files under a prefix in path order, each with version, size and SHA-256', async () => {
    const get = await apiOver(
      ['photos/2024/b.jpg', 'photos/2024/a.jpg', 'photos/2024/c/d.jpg', 'photos/2023/x.jpg', 'video/y.mp4'],
      ['photos/2024/b.jpg'],
    );
    const first = await get({ prefix: 'photos/2024/', limit: '1' });
    expect(first.status).toBe(200);
    expect(fileListSchema.parse(first.body).files).toEqual([
      {
        path: 'photos/2024/a.jpg',
        version: 1,
        sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        size: 10,
        contentType: 'image/png',
        committedAt: expect.any(String),
      },
    ]);
    const paths: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await get({ prefix: 'photos/2024/', limit: '1', ...(cursor ? { cursor } : {}) });
      expect(page.status).toBe(200);
      paths.push(...page.body.files.map((f: FileVersion) => f.path));
      cursor = page.body.cursor;
    } while (cursor !== undefined);
    expect(paths).toEqual(['photos/2024/a.jpg', 'photos/2024/c/d.jpg']);
    const all = await get({});
    expect(all.body.prefix).toBe('');
    expect(all.body.files.map((f: FileVersion) => f.path).sort()).toEqual([
      'photos/2023/x.jpg',
      'photos/2024/a.jpg',
      'photos/2024/c/d.jpg',
      'video/y.mp4',
    ]);
    expect(all.body.cursor).toBeUndefined();
  });

  it('pages through a deep folder of paths as long as an S3 key: each cursor it returns is one it takes (probe limits)', async () => {
    // Four folders of 200 bytes and names filling the path to S3's 1,024-byte key limit: a cursor
    // that held both the prefix and the whole last path came to about 2,460 characters, over the
    // 2,048 the API takes, so the second page of such a folder was a 400.
    const folder = `deep/${['a', 'b', 'c', 'd'].map((c) => c.repeat(200)).join('/')}/`;
    const name = (n: number) => `${'n'.repeat(1024 - folder.length - 5)}${n}.txt`;
    const paths = [1, 2, 3].map((n) => `${folder}${name(n)}`);
    expect(paths.every((p) => Buffer.byteLength(p) === 1024)).toBe(true);
    const get = await apiOver(paths);
    const listed: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await get({ prefix: folder, limit: '1', ...(cursor ? { cursor } : {}) });
      expect(page.status, JSON.stringify(page.body.error)).toBe(200);
      listed.push(...page.body.files.map((f: FileVersion) => f.path));
      cursor = page.body.cursor;
    } while (cursor !== undefined);
    expect(listed).toEqual(paths);
    // The whole mirror, too: a cursor without a prefix holds the whole path.
    const first = await get({ limit: '1' });
    expect((await get({ limit: '1', cursor: first.body.cursor })).status).toBe(200);
  });

  it.each([
    [{ prefix: 'photos' }, 'prefix', 'invalid', 'name its top folder'],
    [{ prefix: '/photos/' }, 'prefix', 'invalid_path', 'relative'],
    [{ prefix: 'photos//x' }, 'prefix', 'invalid_path', 'empty segments'],
    [{ prefix: 'photos/../etc/' }, 'prefix', 'invalid_path', '".."'],
    [{ prefix: 'photos/', cursor: 'not-a-cursor' }, 'cursor', 'invalid_cursor', 'not one this API returned'],
    [{ prefix: 'photos/', cursor: cursorOf('photos/../x') }, 'cursor', 'invalid_cursor', 'not one this API'],
    [
      { prefix: 'photos/', cursor: cursorOf(`photos/${'x'.repeat(1100)}`) },
      'cursor',
      'invalid_cursor',
      'not one',
    ],
    [{ prefix: 'photos/', limit: '0' }, 'limit', 'invalid', 'from 1 to 1000'],
    [{ prefix: 'photos/', limit: '1001' }, 'limit', 'invalid', 'from 1 to 1000'],
    [{ prefix: 'photos/', limit: 'many' }, 'limit', 'invalid', 'whole number from 1 to 1000'],
    [{ prefix: 'photos/', limit: '1e1' }, 'limit', 'invalid', 'whole number from 1 to 1000'],
  ])('refuses %j: 400 %s (%s)', async (query, field, code, rule) => {
    const get = await apiOver(['photos/a.jpg']);
    const answer = await get(query);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code, field });
    expect(answer.body.error.message).toContain(rule);
  });

  it("refuses a cursor returned for another prefix: it would list that prefix's files", async () => {
    const get = await apiOver(['photos/a.jpg', 'photos/b.jpg', 'video/c.mp4', 'video/d.mp4']);
    const { body } = await get({ prefix: 'video/', limit: '1' });
    expect(body.cursor).toEqual(expect.any(String));
    const answer = await get({ prefix: 'photos/', cursor: body.cursor });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'invalid_cursor', field: 'cursor' });
    expect(answer.body.error.message).toContain('another prefix');
  });

  it('refuses a cursor returned for a prefix with no prefix, or for none with a prefix (probe api2, A2-6)', async () => {
    const get = await apiOver(['photos/a.jpg', 'photos/b.jpg', 'photos/c.jpg', 'video/c.mp4']);
    const under = await get({ prefix: 'photos/', limit: '1' });
    const everything = await get({ limit: '1' });
    for (const [cursor, prefix] of [
      [under.body.cursor, ''],
      [under.body.cursor, 'photos/a'],
      [everything.body.cursor, 'photos/'],
      [everything.body.cursor, 'video/'],
    ]) {
      const answer = await get({ prefix, cursor });
      expect(answer.status, `${prefix}`).toBe(400);
      expect(answer.body.error).toMatchObject({ code: 'invalid_cursor', field: 'cursor' });
    }
    expect((await get({ prefix: 'photos/', cursor: under.body.cursor })).status).toBe(200);
    expect((await get({ cursor: everything.body.cursor })).status).toBe(200);
  });
});
