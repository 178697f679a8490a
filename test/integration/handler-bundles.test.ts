/**
 * The local stack runs each handler from an esbuild bundle made as the CDK app makes it
 * (local/handler-bundles.ts), built again only when a project file it read changed.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HANDLER_NAMES } from '../../lib/paths.ts';
import { handlerBundles } from '../../local/handler-bundles.ts';

let cache: string;
beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'mirror-bundles-'));
});
afterAll(async () => {
  await rm(cache, { recursive: true, force: true });
});

describe('handler bundles', () => {
  it('bundles every handler with the AWS SDK inside, reuses a fresh build and rebuilds a stale one beside it', async () => {
    const first = await handlerBundles(cache);
    expect(Object.keys(first.handlers).sort()).toEqual([...HANDLER_NAMES].sort());
    for (const file of Object.values(first.handlers)) {
      const code = await readFile(file, 'utf8');
      // Self-contained, as on Lambda: no static import but Node's own modules, the SDK inside.
      expect(code).not.toMatch(/(?:^|[;\n])\s*import\s*(?:[\w*{][^;"']*from\s*)?["'](?!node:)/);
      expect(code).toMatch(/(?:^|[;\n])\s*import\s*[\w*{][^;"']*from\s*["']node:/);
      expect(code).toContain('AWS_LAMBDA_FUNCTION_NAME');
    }
    const record = JSON.parse(await readFile(join(cache, 'latest.json'), 'utf8')) as {
      startedAt: number;
      inputs: string[];
    };
    expect(record.inputs).toContain('functions/handlers/ingest.ts');
    expect(record.inputs).toContain('package-lock.json');
    expect(record.inputs).toContain('local/handler-bundles.ts');

    const again = await handlerBundles(cache);
    expect(again).toEqual(first);

    // As if every input had changed since: a new build in a folder of its own, the old one intact
    // for a stack still running from it.
    await writeFile(join(cache, 'latest.json'), JSON.stringify({ ...record, startedAt: 0 }));
    const rebuilt = await handlerBundles(cache);
    expect(dirname(rebuilt.runtime)).not.toBe(dirname(first.runtime));
    expect((await readFile(first.handlers.ingest)).length).toBeGreaterThan(0);
  }, 60_000);

  it('does not reuse a build another checkout made in a shared cache (node_modules linked between clones)', async () => {
    const mine = await handlerBundles(cache);
    const record = JSON.parse(await readFile(join(cache, 'latest.json'), 'utf8')) as Record<string, unknown>;
    // A clone whose node_modules is a link to another checkout's shares that checkout's cache: its
    // build, newer than every file here, was made from its own sources, not from these.
    for (const other of [
      { ...record, root: '/elsewhere/checkout' },
      { ...record, root: undefined },
    ]) {
      await writeFile(
        join(cache, 'latest.json'),
        JSON.stringify({ ...other, startedAt: Date.now() + 60_000 }),
      );
      const again = await handlerBundles(cache);
      expect(dirname(again.runtime)).not.toBe(dirname(mine.runtime));
    }
  }, 120_000);

  it('the bundled runtime loads a bundled handler with no TypeScript loader and reports it ready', async () => {
    const bundles = await handlerBundles(cache);
    // Its configuration is missing, so the handler's module fails at init, as on Lambda without
    // its environment: the runtime reports that, having loaded the bundle itself.
    const worker = new Worker(bundles.runtime, {
      env: {},
      workerData: {
        moduleUrl: new URL(`file://${bundles.handlers['lag-monitor']}`).href,
        handlerName: 'handler',
      },
      execArgv: [],
    });
    const ready = await new Promise<{ type: string; error?: { errorType: string; errorMessage: string } }>(
      (resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      },
    );
    await worker.terminate();
    expect(ready.type).toBe('ready');
    expect(ready.error?.errorType).toBe('Runtime.ImportModuleError');
    expect(ready.error?.errorMessage).toMatch(/MIRROR_/);
  }, 60_000);
});
