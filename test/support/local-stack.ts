/**
 * The local stack (local/sandbox.ts) for integration tests: on ephemeral loopback ports, in a temp
 * folder of the test's own, serving no page, quiet; and the CLI run against it, in-process or as the
 * installed bin.
 *
 * local/sandbox.ts and cli/program.ts are imported when first used, not when this module loads: a
 * test may set process.env before the stack starts for modules that read it once at load (the
 * in-process agent's crash points, test/integration/crash-points.test.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Sandbox, SandboxOptions } from '../../local/sandbox.ts';
import { type BucketClients, bucketClients } from './regional-s3.ts';

const BIN = fileURLToPath(new URL('../../bin/media-mirror.js', import.meta.url));

/** What every test stack shares, with `dataDir`; the test's own options go on top. */
export function testStackOptions(dataDir: string, options: SandboxOptions = {}): SandboxOptions {
  return {
    dataDir,
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    webDir: null,
    polling: { waitTimeSeconds: 1 },
    log: () => undefined,
    functionLog: () => undefined,
    ...options,
  };
}

/** Starts a stack with testStackOptions. */
export async function startTestSandbox(dataDir: string, options: SandboxOptions = {}): Promise<Sandbox> {
  const { startSandbox } = await import('../../local/sandbox.ts');
  return startSandbox(testStackOptions(dataDir, options));
}

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs `media-mirror --endpoints <the stack's endpoints file> ...args` in-process; its output and exit code. */
export async function runCliOn(
  sandbox: Sandbox,
  args: readonly string[],
  io: { cwd: string; env?: Record<string, string> },
): Promise<CliRun> {
  const { runCli } = await import('../../cli/program.ts');
  let out = '';
  let err = '';
  const code = await runCli(['node', 'media-mirror', '--endpoints', sandbox.endpointsFile, ...args], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env: io.env ?? {},
    cwd: io.cwd,
  });
  return { code, out, err };
}

/** Arguments for `process.execPath` that run the installed-style bin against the stack. */
export const binArgs = (sandbox: Sandbox, ...args: string[]): string[] => [
  BIN,
  '--endpoints',
  sandbox.endpointsFile,
  ...args,
];

/** The variables that point a CLI's own S3 client (`sync --from s3://`) at the stack's S3. */
export function s3Env(sandbox: Sandbox): Record<string, string> {
  const { endpoint, credentials } = sandbox.endpoints.s3;
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  };
}

export interface TestStack {
  readonly sandbox: Sandbox;
  /** The test's temp folder: the stack's state in `data/`, the CLI's cwd and cache, whatever the test writes. */
  readonly dir: string;
  /** A client on the stack's S3 emulator, signing for the home region (the origin bucket's). */
  readonly s3: S3Client;
  /** A client for a bucket, signing for its region (a replica bucket's is its target's). */
  readonly s3For: BucketClients;
  /** Runs the CLI in-process from `dir`, with its cache in `dir/cache` and `env` besides. */
  cliWith(env: Record<string, string>): (...args: string[]) => Promise<CliRun>;
  /** cliWith no more variables. */
  cli(...args: string[]): Promise<CliRun>;
  /** Stops the stack and removes `dir`. */
  stop(): Promise<void>;
}

/**
 * Starts a stack in a new temp folder `mirror-<name>-*`. `options` may be worked out from that
 * folder (files a test writes before the start); a failed start removes it.
 */
export async function startTestStack(
  name: string,
  options: SandboxOptions | ((dir: string) => SandboxOptions | Promise<SandboxOptions>) = {},
): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), `mirror-${name}-`));
  let sandbox: Sandbox;
  try {
    const own = typeof options === 'function' ? await options(dir) : options;
    sandbox = await startTestSandbox(join(dir, 'data'), own);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const s3For = bucketClients(sandbox.endpoints);
  const s3 = s3For(sandbox.endpoints.originBucket);
  const cliWith =
    (env: Record<string, string>) =>
    (...args: string[]) =>
      runCliOn(sandbox, args, { cwd: dir, env: { XDG_CACHE_HOME: join(dir, 'cache'), ...env } });
  return {
    sandbox,
    dir,
    s3,
    s3For,
    cliWith,
    cli: cliWith({}),
    async stop() {
      s3For.destroy();
      await sandbox.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
