import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ENDPOINTS_FILE, writeEndpointsFile } from '../../../local/data-dir.ts';
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
