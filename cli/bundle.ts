/**
 * Bundles the CLI and the agent into plain JavaScript (`<outDir>/media-mirror.mjs`,
 * `<outDir>/agent.mjs` and their shared chunks), so neither needs a TypeScript loader at run
 * time: `media-mirror --help` through tsx compiles every module on each start. ESM with code
 * splitting: what a command imports on demand stays out of the start-up path. The AWS SDK and
 * the other dependencies are bundled in, so the agent ships as files, without node_modules.
 *
 * `npm run build` (`tsx cli/bundle.ts [outDir]`; default `dist/`, next to package.json, where the
 * CLI finds the package's version) and `prepack` build them; bin/media-mirror.js and
 * bin/media-mirror-agent.js run them. `<outDir>/inputs.json` lists the project's source files the
 * bundles were built from, so that a bin in a development checkout can tell a bundle older than
 * the sources and run the sources instead (bin/launch.js).
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));

const DEFAULT_BUNDLE_DIR = resolve(root, 'dist');

/**
 * zod's `z` namespace re-exports every message locale (about 260 KB of the 450 KB zod adds to a
 * bundle); the project only uses the English messages zod configures by itself. Every process
 * that validates anything (the agent, each API verb) parses and keeps that source in memory.
 */
const englishOnlyZod: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer)
        ? { path: resolve(dirname(args.importer), '../locales/en.js'), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: dirname(args.path),
    }));
  },
};

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
  const { version } = JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8')) as {
    version: string;
  };
  // Chunk names carry content hashes: an earlier build's chunks would stay beside the new ones
  // and ship in the package (`files` takes dist/ whole).
  await rm(resolve(out, 'chunks'), { recursive: true, force: true });
  const result = await build({
    entryPoints: { 'media-mirror': resolve(root, 'bin/cli.ts'), agent: resolve(root, 'agent/main.ts') },
    outdir: out,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // The dependencies' ES module builds first (esbuild's default for node is CommonJS first). The
    // AWS SDK's ESM builds load the default credential chain's providers (SSO, STS, INI, process...)
    // through import(), so they become chunks read only when that chain runs, and unused exports
    // are dropped; its CommonJS builds put them, with the nested STS/SSO clients, in the chunk every
    // client loads. The idle agent's source shrinks from about 1.05 MB to 0.77 MB (docs/agent.md).
    mainFields: ['module', 'main'],
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    minify: true,
    sourcemap: 'linked',
    // Stack traces map to the TypeScript files and lines; the package does not carry the sources.
    sourcesContent: false,
    legalComments: 'none',
    metafile: true,
    plugins: [englishOnlyZod],
    // agent/agent.ts reads it: from a chunk in dist/chunks/, ../package.json is not the package's.
    define: { MEDIA_MIRROR_VERSION: JSON.stringify(version) },
    // Bundled CommonJS dependencies call require() for Node's built-ins.
    banner: {
      js: "import { createRequire as __mmRequire } from 'node:module'; const require = __mmRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  // The project's own files (node_modules changes show in package-lock.json): a few hundred stats.
  const inputs = Object.keys(result.metafile.inputs)
    .filter((file) => !file.includes('node_modules/') && !file.includes(':'))
    .map((file) => relative(root, resolve(file)))
    .concat('package-lock.json')
    .sort();
  await writeFile(resolve(out, 'inputs.json'), `${JSON.stringify(inputs, null, 1)}\n`);
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
