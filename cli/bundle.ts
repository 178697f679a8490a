/**
 * Bundles the CLI and the agent into plain JavaScript (`<outDir>/media-mirror.mjs`,
 * `<outDir>/agent.mjs` and their shared chunks), so neither needs a TypeScript loader at run
 * time: `media-mirror --help` through tsx compiles every module on each start. ESM with code
 * splitting: what a command imports on demand stays out of the start-up path. The AWS SDK and
 * the other dependencies are bundled in, so the agent ships as files, without node_modules.
 *
 * `tsx cli/bundle.ts [outDir]` (default `dist/`, next to package.json, where the CLI finds the
 * package's version).
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));

const DEFAULT_BUNDLE_DIR = resolve(root, 'dist');

export interface BundleResult {
  readonly outDir: string;
  readonly cli: string;
  readonly agent: string;
  readonly bytes: number;
  readonly ms: number;
}

export async function bundleCli(outDir: string = DEFAULT_BUNDLE_DIR): Promise<BundleResult> {
  const started = performance.now();
  const out = resolve(outDir);
  const result = await build({
    entryPoints: { 'media-mirror': resolve(root, 'bin/cli.ts'), agent: resolve(root, 'agent/main.ts') },
    outdir: out,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'none',
    metafile: true,
    // Bundled CommonJS dependencies call require() for Node's built-ins.
    banner: {
      js: "import { createRequire as __mmRequire } from 'node:module'; const require = __mmRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  const bytes = Object.entries(result.metafile.outputs)
    .filter(([file]) => file.endsWith('.mjs'))
    .reduce((n, [, o]) => n + o.bytes, 0);
  return {
    outDir: out,
    cli: resolve(out, 'media-mirror.mjs'),
    agent: resolve(out, 'agent.mjs'),
    bytes,
    ms: Math.round(performance.now() - started),
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const built = await bundleCli(process.argv[2]);
  console.log(
    `bundled ${built.cli} and ${built.agent} (${built.bytes} bytes of JavaScript) in ${built.ms} ms`,
  );
}
