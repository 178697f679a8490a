/**
 * The local stack as users run it: `npm start` in a child process (its own process group,
 * its own data folder, free ports, no in-process agent), and the pull target's agent as a
 * process of its own, from the bundle that ships to on-premises servers (cli/bundle.ts, built
 * into the data folder), so that the CPU and memory of each are measured apart from the bench's
 * clients.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleCli } from '../cli/bundle.ts';
import { type Endpoints, writtenEndpointsSchema } from '../contracts/endpoints.ts';
import { ENDPOINTS_FILE } from '../local/data-dir.ts';
import { npmStartEnv } from '../test/support/npm-start-env.ts';
import { type BucketClients, bucketClients } from '../test/support/regional-s3.ts';
import { waitFor } from '../test/support/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export type StackEndpoints = Required<Endpoints> & { api: string; token: string };

export interface BenchStack {
  readonly endpoints: StackEndpoints;
  /** npm's pid: the root of the `npm start` tree. */
  readonly pid: number;
  readonly dataDir: string;
  /** A client for a bucket, signing for its region (the local S3 refuses another, as S3 does). */
  readonly s3: BucketClients;
  /** The CLI as the package ships it (its bundle, cli/bundle.ts), for `node <cli> ...`. */
  readonly cli: string;
  /** The agent process (pull target) and the folder it mirrors into, when started. */
  readonly agent: { readonly pid: number; readonly dir: string; readonly target: string } | undefined;
  /** The S3 targets: id and bucket and key prefix. */
  readonly s3Targets: readonly {
    readonly id: string;
    readonly bucket: string;
    readonly keyPrefix: string;
    /** Its bucket's region: the local S3 refuses a request signed for another. */
    readonly region: string;
  }[];
  stop(): Promise<void>;
}

function spawnLogged(command: string, args: string[], env: NodeJS.ProcessEnv, log: string): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = createWriteStream(log);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return child;
}

/** Ends a child's whole process group (npm, its shell, tsx and node), then waits for it. */
async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timeout = setTimeout(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }, 20_000);
  await exited;
  clearTimeout(timeout);
}

export async function startStack(options: {
  agent: boolean;
  log?: (line: string) => void;
}): Promise<BenchStack> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mirror-bench-'));
  const env = npmStartEnv(dataDir);
  const npm = spawnLogged('npm', ['start'], env, join(dataDir, 'stack.log'));
  const children: ChildProcess[] = [npm];
  const stop = async () => {
    for (const child of children.reverse()) await stopGroup(child);
    // A process of the group may still be flushing into the folder as it ends: retry ENOTEMPTY.
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };
  try {
    const file = join(dataDir, ENDPOINTS_FILE);
    const text = await waitFor(
      `the local stack's ${file} (log: ${join(dataDir, 'stack.log')})`,
      async () => {
        if (npm.exitCode !== null) throw new Error(`npm start exited with ${npm.exitCode}`);
        return readFile(file, 'utf8').catch(() => undefined);
      },
      180_000,
      200,
    );
    const endpoints = writtenEndpointsSchema.parse(JSON.parse(text)) as StackEndpoints;
    const s3 = bucketClients(endpoints);
    const targets = Object.entries(endpoints.targets);
    const s3Targets = targets
      .filter(([, t]) => t.kind === 's3' && t.bucket !== undefined)
      .map(([id, t]) => ({
        id,
        bucket: t.bucket as string,
        keyPrefix: t.keyPrefix ?? '',
        region: t.region ?? endpoints.s3.region,
      }));
    const pull = targets.find(([, t]) => t.kind === 'pull')?.[0];
    // The CLI and the agent run as users run them: bundled, no TypeScript loader.
    const built = await bundleCli(join(dataDir, 'dist'));
    let agent: BenchStack['agent'];
    if (options.agent && pull !== undefined) {
      const dir = join(dataDir, 'agent-mirror');
      const args = [built.agent, '--target', pull, '--dir', dir, '--endpoints', file];
      const child = spawnLogged(process.execPath, args, env, join(dataDir, 'agent.log'));
      children.push(child);
      agent = { pid: child.pid as number, dir, target: pull };
    }
    options.log?.(`stack up (npm pid ${npm.pid}, data ${dataDir})`);
    return {
      endpoints,
      pid: npm.pid as number,
      dataDir,
      cli: built.cli,
      s3,
      agent,
      s3Targets,
      stop: async () => {
        s3.destroy();
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
