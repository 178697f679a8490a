import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ENDPOINTS_FILE, lockDataDir, writeEndpointsFile } from '../../../local/data-dir.ts';
import { localEndpoints as endpoints } from '../../support/local-endpoints.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('endpoints.json', () => {
  it('a reader polling for the file never reads it half written (the CLI, the agent and the bench poll it)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mirror-endpoints-'));
    dirs.push(dir);
    const file = join(dir, ENDPOINTS_FILE);
    let writing = true;
    let reads = 0;
    const partial: string[] = [];
    const reader = (async () => {
      while (writing) {
        const text = await readFile(file, 'utf8').catch(() => undefined);
        if (text === undefined) continue;
        reads++;
        try {
          JSON.parse(text);
        } catch {
          partial.push(text);
        }
      }
    })();
    for (let i = 0; i < 300; i++) await writeEndpointsFile(dir, endpoints);
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(partial).toEqual([]);
  });
});

describe('the data folder', () => {
  it('is made 0700; one others may write is refused before anything is written there (probe localsec)', async () => {
    // The stack writes the token, endpoints.json (through a temp name of its pid) and the page's
    // files there by name: in a folder others write (umask 002 with a shared group, a .mirror
    // someone made first in a shared checkout) a link planted at one of those names had the
    // stack write through it into a file of its user's.
    const base = await mkdtemp(join(tmpdir(), 'mirror-data-'));
    dirs.push(base);
    const made = join(base, 'fresh', '.mirror');
    const lock = await lockDataDir(made);
    expect((await stat(made)).mode & 0o777).toBe(0o700);
    await lock.release();

    const shared = join(base, 'shared');
    await lockDataDir(shared).then((l) => l.release());
    await chmod(shared, 0o775);
    await expect(lockDataDir(shared)).rejects.toThrow(
      `the data folder ${shared} is not to be trusted: other users may write it (mode 0775): ` +
        'chmod 700 it if it is yours, or set MIRROR_DATA_DIR to another folder',
    );
    expect(await readdir(shared)).toEqual([]);
  });
});
