/**
 * What the browser tests share: the local stack on ephemeral ports serving a fresh
 * build of the page, an agent for each pull target (so every target can hold a file),
 * and Debian's Chromium driven by playwright-core with a fresh profile.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { type AgentHandle, startAgent } from '../../agent/agent.ts';
import { createMemoryLog } from '../../agent/log.ts';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { buildWeb } from '../../web/build.ts';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** docs/platform.md: the flags Debian's Chromium needs here (playwright adds --headless itself). */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Stack {
  readonly sandbox: Sandbox;
  readonly agents: readonly AgentHandle[];
  readonly api: string;
  readonly token: string;
  readonly s3: string;
  readonly tmp: string;
  /** Lines the sandbox logged (errors of the local plumbing). */
  readonly log: string[];
  stop(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const tmp = await mkdtemp(join(tmpdir(), 'mirror-browser-'));
  const log: string[] = [];
  await buildWeb(join(tmp, 'dist'), { sourcemap: false });
  const sandbox = await startSandbox({
    dataDir: join(tmp, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    env: {},
    webDir: join(tmp, 'dist'),
    polling: { waitTimeSeconds: 1 },
    log: (m) => log.push(m),
    functionLog: () => undefined,
  });
  const agents: AgentHandle[] = [];
  try {
    const e = sandbox.endpoints;
    // The sandbox runs no agent for pull targets: one per pull target here, as `media-mirror agent` would.
    for (const [id, target] of Object.entries(e.targets)) {
      if (target.kind !== 'pull') continue;
      agents.push(
        await startAgent({
          targetId: id,
          dir: join(tmp, `mirror-${id}`),
          table: e.table,
          originBucket: e.originBucket,
          queueUrl: target.queue,
          feedShards: sandbox.topology.feedShards,
          region: e.s3.region,
          heartbeatSeconds: 1,
          waitTimeSeconds: 1,
          shutdownGraceSeconds: 2,
          aws: {
            s3Endpoint: e.s3.endpoint,
            sqsEndpoint: e.sqs.endpoint,
            dynamodbEndpoint: e.dynamodb.endpoint,
            s3ForcePathStyle: true,
            credentials: { ...e.s3.credentials },
          },
          log: createMemoryLog(),
        }),
      );
    }
  } catch (error) {
    await sandbox.stop();
    throw error;
  }
  return {
    sandbox,
    agents,
    api: sandbox.endpoints.api,
    token: sandbox.endpoints.token,
    s3: new URL(sandbox.endpoints.s3.endpoint).origin,
    tmp,
    log,
    async stop() {
      for (const agent of agents) await agent.stop().catch(() => undefined);
      await sandbox.stop();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

export interface Browser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

export async function launchBrowser(tmp: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (.ci/run does)`);
  }
  const profile = await mkdtemp(join(tmp, 'profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1100, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Console errors and uncaught exceptions of a page. A 422 to `POST /v1/uploads/{id}/proof` is the
 * API's documented "send the bytes" answer to a proof of possession (docs/api.md), which every
 * upload of new content gets: it and the console line Chromium logs for it are not errors.
 */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  let refusedProofs = 0;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (refusedProofs > 0 && m.text().includes('status of 422')) {
      refusedProofs--;
      return;
    }
    errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  // Chromium logs failed loads without their address: name them.
  page.on('response', (r) => {
    if (
      r.status() === 422 &&
      r.request().method() === 'POST' &&
      /\/v1\/uploads\/[^/]+\/proof$/.test(r.url())
    ) {
      refusedProofs++;
      return;
    }
    if (r.status() >= 400) errors.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return errors;
}

/** A file of pseudo-random bytes, written in 1 MiB blocks (nothing repeats within a part). */
export async function randomFile(path: string, size: number, seed: number): Promise<string> {
  const handle = await open(path, 'w');
  try {
    let x = seed >>> 0 || 1;
    const block = Buffer.alloc(1024 * 1024);
    for (let done = 0; done < size; ) {
      for (let i = 0; i < block.length; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        block.writeUInt32LE(x >>> 0, i);
      }
      const n = Math.min(block.length, size - done);
      await handle.write(block, 0, n);
      done += n;
    }
  } finally {
    await handle.close();
  }
  return path;
}

export const MB = 1_000_000;
export const MiB = 1024 * 1024;

/**
 * A test page of a frontend: `entry` (a fixtures/ module) bundled for the browser into `<name>.js`
 * in `dist`, loaded by `<name>.html` with one file input (`#files`).
 */
export async function buildFixturePage(
  dist: string,
  name: string,
  entry: URL,
  input: { multiple: boolean },
): Promise<void> {
  await build({
    entryPoints: { [name]: fileURLToPath(entry) },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    outdir: dist,
    logLevel: 'silent',
  });
  await writeFile(
    join(dist, `${name}.html`),
    `<!doctype html><html><head><link rel="icon" href="data:,"></head><body><input type="file" id="files"${input.multiple ? ' multiple' : ''}><script type="module" src="${name}.js"></script></body></html>`,
  );
}
