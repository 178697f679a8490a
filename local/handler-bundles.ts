/**
 * The handlers as the local stack runs them: bundled with esbuild the way the CDK app bundles
 * them for Lambda (lib/lambda-bundle.ts: ESM, the dependencies' ES module builds, the AWS SDK
 * inside), plus the local runtime (function-runtime.ts) as plain JavaScript, so a function's
 * worker loads one file and no TypeScript loader.
 *
 * Through tsx, every environment compiled and resolved each module on its own: about 1.6 s of CPU
 * and 55 MiB resident per environment once loaded; from these bundles about 0.3 s and 36 MiB
 * (six environments side by side; docs/local-sizing.md). Whitespace and syntax are minified, names
 * are not, and no source map is loaded: a stack trace names the functions as in the sources. With
 * names minified too an environment saved nothing more; unminified it took 43 MiB, and a source
 * map loaded with each environment (--enable-source-maps) cost about 33 MiB apiece.
 *
 * Built once and reused while no input changed: `<cache>/latest.json` lists the project files the
 * build read (with the lock file, this module and lib/lambda-bundle.ts), when it started and the
 * checkout it read them from; a file changed since, or another checkout, triggers a new build
 * into a folder of its own, so a stack already running keeps the files it loaded, and stacks
 * starting side by side (the tests) never see a half-written folder.
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { LAMBDA_MAIN_FIELDS, LAMBDA_REQUIRE_SHIM } from '../lib/lambda-bundle.ts';
import { HANDLER_NAMES, type HandlerName, handlerEntry, LOCK_FILE, REPO_ROOT } from '../lib/paths.ts';

export interface HandlerBundles {
  /** The local runtime (function-runtime.ts) as JavaScript: a worker's entry. */
  readonly runtime: string;
  /** Each handler's bundle. */
  readonly handlers: Readonly<Record<HandlerName, string>>;
}

interface BuildRecord {
  /** Folder name under the cache. */
  readonly dir: string;
  /** Epoch ms at which the build started: an input changed after it is stale. */
  readonly startedAt: number;
  /** Project files the build read, relative to the repository root. */
  readonly inputs: readonly string[];
  /**
   * The checkout whose sources were bundled. Clones that link one checkout's node_modules share
   * its cache: without this, a build another clone made after this one's last edit looked fresh
   * here, and the stack ran that clone's handlers instead of these.
   */
  readonly root?: string;
}

const DEFAULT_CACHE = join(REPO_ROOT, 'node_modules', '.cache', 'media-mirror', 'lambda');
const RUNTIME_ENTRY = fileURLToPath(new URL('./function-runtime.ts', import.meta.url));
const BUNDLE_SETTINGS = fileURLToPath(new URL('../lib/lambda-bundle.ts', import.meta.url));

function locate(cache: string, record: BuildRecord): HandlerBundles {
  const file = (name: string) => join(cache, record.dir, `${name}.mjs`);
  return {
    runtime: file('function-runtime'),
    handlers: Object.fromEntries(HANDLER_NAMES.map((n) => [n, file(n)])) as Record<HandlerName, string>,
  };
}

async function isFresh(cache: string, record: BuildRecord): Promise<boolean> {
  if (record.root !== REPO_ROOT) return false;
  const bundles = locate(cache, record);
  const files = [bundles.runtime, ...Object.values(bundles.handlers)];
  if (
    !(
      await Promise.all(
        files.map((f) =>
          stat(f).then(
            () => true,
            () => false,
          ),
        ),
      )
    ).every(Boolean)
  )
    return false;
  const mtimes = await Promise.all(
    record.inputs.map((f) =>
      stat(join(REPO_ROOT, f)).then(
        (s) => s.mtimeMs,
        () => Number.POSITIVE_INFINITY,
      ),
    ),
  );
  return mtimes.every((m) => m < record.startedAt);
}

/** The bundles, built now only if no fresh build is in the cache. */
export async function handlerBundles(cache: string = DEFAULT_CACHE): Promise<HandlerBundles> {
  const latest = join(cache, 'latest.json');
  const previous = await readFile(latest, 'utf8').then(
    (text) => JSON.parse(text) as BuildRecord,
    () => undefined,
  );
  if (previous !== undefined && (await isFresh(cache, previous))) return locate(cache, previous);

  // An input saved during the build has a later mtime than this: the next start rebuilds.
  const startedAt = Date.now() - 1;
  const dir = `build-${new Date(startedAt).toISOString().replace(/[:.]/g, '')}-${randomUUID().slice(0, 8)}`;
  const result = await build({
    entryPoints: {
      ...Object.fromEntries(HANDLER_NAMES.map((n) => [n, handlerEntry(n)])),
      'function-runtime': RUNTIME_ENTRY,
    },
    outdir: join(cache, dir),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    // The local Node (package.json engines), not Lambda's.
    target: 'node20',
    mainFields: [...LAMBDA_MAIN_FIELDS],
    banner: { js: LAMBDA_REQUIRE_SHIM },
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  });
  const record: BuildRecord = {
    dir,
    startedAt,
    root: REPO_ROOT,
    inputs: Object.keys(result.metafile.inputs)
      .filter((file) => !file.includes('node_modules/') && !file.includes(':'))
      .map((file) => relative(REPO_ROOT, resolve(file)))
      // How the bundles are made counts as much as what they are made of.
      .concat([LOCK_FILE, fileURLToPath(import.meta.url), BUNDLE_SETTINGS].map((f) => relative(REPO_ROOT, f)))
      .sort(),
  };
  // Renamed into place: a stack starting beside this one reads the old record or the new one.
  const tmp = `${latest}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify(record));
  await rename(tmp, latest);
  await removeOldBuilds(cache, dir);
  return locate(cache, record);
}

/** Builds older than a day (a stack still running from one would have started before that). */
async function removeOldBuilds(cache: string, keep: string): Promise<void> {
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of await readdir(cache)) {
    if (!name.startsWith('build-') || name === keep) continue;
    const { mtimeMs } = await stat(join(cache, name)).catch(() => ({ mtimeMs: Date.now() }));
    if (mtimeMs < dayAgo) await rm(join(cache, name), { recursive: true, force: true });
  }
}
