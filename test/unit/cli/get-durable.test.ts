/**
 * `get` says "SHA-256 verified" only once the bytes are on disk: the download is fsynced before it
 * is renamed over the destination, and the folder after, as the agent writes its files. Without
 * it, a power cut soon after a `get` that exited 0 could leave an empty file (XFS, or ext4 for a new
 * name) where the old file was. No crash can be made here: the order of the calls is what is seen.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const events: string[] = [];
const name = (path: unknown) =>
  basename(String(path)).startsWith('.mm-get-') ? 'download' : basename(String(path));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: (async (path: string, ...rest: unknown[]) => {
      const handle = await real.open(path, ...(rest as [never]));
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        events.push(`sync ${name(path)}`);
        return sync();
      };
      return handle;
    }) as typeof real.open,
    rename: (async (from: string, to: string) => {
      events.push(`rename ${name(from)} -> ${name(to)}`);
      return real.rename(from, to);
    }) as typeof real.rename,
  };
});

const { runCli } = await import('../../../cli/program.ts');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-get-durable-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('get', () => {
  it('fsyncs the verified download before renaming it into place, and the folder after (probe cli)', async () => {
    const content = Buffer.from('bytes worth keeping');
    const head = {
      version: 1,
      sha256: createHash('sha256').update(content).digest('hex'),
      size: content.length,
      contentType: 'image/png',
      committedAt: '2025-06-01T11:55:00.000Z',
      deleted: false,
    };
    const fetch = async (input: string) => {
      const url = new URL(input);
      if (url.host === 's3.test') return new Response(content, { status: 200 });
      if (url.pathname.endsWith('/content'))
        return new Response(null, {
          status: 302,
          headers: { location: 'http://s3.test/blobs/x?X-Amz-Signature=s' },
        });
      return new Response(JSON.stringify({ path: 'pics/cat.png', head, targets: [] }), { status: 200 });
    };
    let stderr = '';
    const code = await runCli(['node', 'media-mirror', 'get', 'pics/cat.png', 'kept.png'], {
      stdout: { write: () => true },
      stderr: { write: (s: string) => (stderr += s) },
      env: { MIRROR_API_URL: 'https://api.test', MIRROR_API_TOKEN: 't' },
      cwd: dir,
      fetch,
    });
    expect(code, stderr).toBe(0);
    expect(await readFile(join(dir, 'kept.png'))).toEqual(content);
    expect(events).toEqual(['sync download', 'rename download -> kept.png', `sync ${basename(dir)}`]);
  });
});
