/**
 * Builds the browser bundles into `web/dist/` (or `outDir`):
 *
 * - `index.html`, `styles.css`: the page, copied;
 * - `app.js`: the page's script (ESM, the client bundled in);
 * - `hash-worker.js`: the hashing worker (a classic script, so every browser with
 *   workers loads it; `uploadFile` finds it next to the module that loaded it);
 * - `client.js`: the client module for frontends (ESM: `uploadFile`, `UploadError`, ...).
 *   Its types are the TypeScript source, `web/client/index.ts`;
 * - `uppy.js`: the Uppy uploader plugin (ESM, `@uppy/core` left to the frontend), types
 *   `web/uppy/index.ts`.
 *
 * `tsx web/build.ts [outDir]`, or `buildWeb(outDir)` from the local stack.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build } from 'esbuild';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export const DEFAULT_OUT_DIR = here('./dist');

export interface BuildWebOptions {
  /** Minify the scripts. @default true */
  readonly minify?: boolean;
  /** Write source maps next to the scripts. @default true */
  readonly sourcemap?: boolean;
}

export interface BuildWebResult {
  readonly outDir: string;
  readonly files: readonly string[];
  readonly ms: number;
}

/** Browsers the bundles target: those with module scripts, workers and BigInt (hash-wasm). */
const TARGET = ['chrome100', 'firefox100', 'safari15', 'edge100'];

export async function buildWeb(
  outDir: string = DEFAULT_OUT_DIR,
  options: BuildWebOptions = {},
): Promise<BuildWebResult> {
  const started = performance.now();
  const out = resolve(outDir);
  await mkdir(out, { recursive: true });
  const common: BuildOptions = {
    bundle: true,
    minify: options.minify ?? true,
    sourcemap: options.sourcemap ?? true,
    target: TARGET,
    platform: 'browser',
    legalComments: 'none',
    logLevel: 'silent',
    outdir: out,
  };
  await Promise.all([
    build({
      ...common,
      format: 'esm',
      entryPoints: { app: here('./page/app.ts'), client: here('./client/index.ts') },
    }),
    build({ ...common, format: 'iife', entryPoints: { 'hash-worker': here('./client/hash-worker.ts') } }),
    // The Uppy plugin: Uppy itself is the frontend's own (a peer dependency), never bundled in.
    build({
      ...common,
      format: 'esm',
      entryPoints: { uppy: here('./uppy/index.ts') },
      external: ['@uppy/core'],
    }),
    copyFile(here('./page/index.html'), resolve(out, 'index.html')),
    copyFile(here('./page/styles.css'), resolve(out, 'styles.css')),
  ]);
  return {
    outDir: out,
    files: ['index.html', 'styles.css', 'app.js', 'client.js', 'hash-worker.js', 'uppy.js'],
    ms: Math.round(performance.now() - started),
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await buildWeb(process.argv[2] ?? DEFAULT_OUT_DIR);
  console.log(`web: built ${result.files.join(', ')} into ${result.outDir} in ${result.ms} ms`);
}
