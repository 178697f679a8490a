/**
 * bin/launch.js, which both bins run: the bundle in dist/ when it is up to date or when no
 * sources sit beside it (the installed package); the TypeScript through tsx in a checkout whose
 * bundle is missing or older than a source it was built from.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;

/** A package folder: bin/launch.js, a bin, a bundle and (optionally) the source it came from. */
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mirror-launch-'));
  await mkdir(join(dir, 'bin'));
  await mkdir(join(dir, 'dist'));
  await mkdir(join(dir, 'src'));
  await copyFile(join(repoRoot, 'bin/launch.js'), join(dir, 'bin/launch.js'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  await writeFile(
    join(dir, 'bin/run.js'),
    "import { launch } from './launch.js';\nawait launch('dist/entry.mjs', 'src/entry.ts');\n",
  );
  await writeFile(join(dir, 'dist/entry.mjs'), "console.log('bundle');\n");
  await writeFile(join(dir, 'dist/inputs.json'), JSON.stringify(['src/entry.ts', 'src/other.ts']));
  // tsx resolves from the package folder, as it does in a checkout.
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const run = async () =>
  (
    await promisify(execFile)(process.execPath, [join(dir, 'bin/run.js')], {
      env: { ...process.env, NODE_OPTIONS: '' },
    })
  ).stdout;

const at = (file: string, seconds: number) => utimes(join(dir, file), seconds, seconds);

describe('bin/launch.js', () => {
  it('runs the bundle when no sources sit beside it (the installed package)', async () => {
    expect(await run()).toBe('bundle\n');
  });

  it('in a checkout, runs the bundle while it is newer than every source, the sources once one is newer', async () => {
    const now = Math.floor(Date.now() / 1000);
    await writeFile(join(dir, 'src/entry.ts'), "const where: string = 'source';\nconsole.log(where);\n");
    await writeFile(join(dir, 'src/other.ts'), 'export {};\n');
    await at('src/entry.ts', now - 60);
    await at('src/other.ts', now - 60);
    await at('dist/inputs.json', now - 30);
    expect(await run()).toBe('bundle\n');

    await at('src/other.ts', now);
    expect(await run()).toBe('source\n');
  }, 30_000);

  it('in a checkout, runs the sources when the bundle is missing', async () => {
    await rm(join(dir, 'dist/entry.mjs'));
    expect(await run()).toBe('source\n');
  }, 30_000);
});
