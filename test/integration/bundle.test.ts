/**
 * The CLI and the agent as the package ships them: what `npm pack` puts in (bins and bundles, not
 * the TypeScript), and the bins run from the bundles alone (no node_modules, no sources beside
 * them) — `--help`, a verb against the local stack, the agent mirroring and idling. Prints the
 * figures `npm run bench -- --only=bundle` holds against their goals (bench/bundle.ts); timing
 * on a loaded machine is not asserted here.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_IDLE_GOAL_MIB,
  agentNodeFlags,
  HELP_GOAL_MS,
  type InstalledPackage,
  installPackage,
  measureAgentIdle,
  measureEmptyNodeIdle,
  measureHelp,
} from '../../bench/bundle.ts';
import { bundleCli } from '../../cli/bundle.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { waitFor } from '../support/wait.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const PULL = 'onprem-dc1';
const MiB = 1024 * 1024;

let work: string;
let pkg: InstalledPackage;
let sandbox: Sandbox;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mirror-bundle-'));
  pkg = await installPackage(join(work, 'package'));
  sandbox = await startSandbox({
    dataDir: join(work, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    topology: parseTopology({ homeRegion: 'us-east-1', targets: [{ id: PULL, kind: 'pull' }] }),
    env: {},
    webDir: null,
    schedules: false,
    agents: false,
    log: () => {},
    functionLog: () => {},
  });
}, 180_000);

afterAll(async () => {
  await sandbox?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * The installed `media-mirror` bin, run through its shebang from the work folder. Asynchronous:
 * the local stack it talks to runs in this process.
 */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return cliWith('', ...args);
}

/**
 * Preloaded into a run: Node's global fetch throws. The CLI's API requests go through node:http
 * (cli/api-transport.ts): undici's WebAssembly parser cost every short command about 0.25 s of CPU.
 */
const GLOBAL_FETCH_THROWS = `--import=data:text/javascript,${encodeURIComponent(
  'globalThis.fetch = () => { throw new Error("the global fetch was called"); };',
)}`;

function cliWith(
  nodeOptions: string,
  ...args: string[]
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      pkg.cli,
      ['--endpoints', sandbox.endpointsFile, ...args],
      { cwd: work, env: { ...process.env, NODE_OPTIONS: nodeOptions } },
      (error, stdout, stderr) =>
        resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the package as npm installs it', () => {
  it('ships the bins, the bundles and the web client; not the CLI, agent or functions sources, nor tsx or the emulators', async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: repoRoot,
      maxBuffer: 16 * 1024 * 1024,
    });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path) ?? [];
    for (const file of ['bin/media-mirror.js', 'bin/media-mirror-agent.js', 'bin/launch.js', 'package.json'])
      expect(files).toContain(file);
    expect(
      files.filter((f) => /^(cli|agent|functions|local|lib)\//.test(f) || /^bin\/.*\.ts$/.test(f)),
    ).toEqual([]);
    const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as {
      files: string[];
      bin: Record<string, string>;
      dependencies: Record<string, string>;
      scripts: Record<string, string>;
    };
    // dist/ is built at pack time (prepack), so the dry run above lists it only after a build.
    expect(manifest.files).toContain('dist');
    expect(manifest.scripts.prepack).toBe('npm run build');
    expect(manifest.scripts.build).toContain('cli/bundle.ts');
    expect(manifest.bin).toEqual({
      'media-mirror': 'bin/media-mirror.js',
      'media-mirror-agent': 'bin/media-mirror-agent.js',
    });
    for (const dev of ['tsx', 'dynalite', 'fauxqs', '@aws-sdk/client-s3', 'commander'])
      expect(Object.keys(manifest.dependencies)).not.toContain(dev);
  }, 120_000);

  it('a rebuild leaves no chunk of an earlier build behind (npm pack ships dist/ whole)', async () => {
    const out = join(work, 'rebuild');
    await bundleCli(out);
    const first = await readdir(join(out, 'chunks'));
    await writeFile(join(out, 'chunks/chunk-EARLIER.mjs'), 'export {};\n');
    await bundleCli(out);
    expect((await readdir(join(out, 'chunks'))).sort()).toEqual(first.sort());
  }, 120_000);

  it('media-mirror --help and --version run from the bundle, with no node_modules and no TypeScript beside it', async () => {
    const installed = await readdir(pkg.dir, { recursive: true });
    expect(installed.filter((f) => f.endsWith('.ts') || f.startsWith('node_modules'))).toEqual([]);
    // The peak it prints is the CLI's own, not its starter's (bench/bundle.ts, USAGE_HOOK).
    const starterLoad = Buffer.alloc(256 * MiB, 1);
    const help = measureHelp(pkg);
    starterLoad.fill(0, 0, 1);
    expect(help.maxRssMiB).toBeGreaterThan(10);
    expect(help.maxRssMiB).toBeLessThan(128);
    for (const run of help.runs) {
      expect(run.status).toBe(0);
      for (const command of [
        'upload',
        'sync',
        'ls',
        'log',
        'get',
        'rm',
        'restore',
        'limits',
        'status',
        'agent',
      ])
        expect(run.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    }
    const version = await cli('--version');
    const { version: expected } = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(version.stdout.trim()).toBe(expected);
    console.log(
      `media-mirror --help, installed bin, median of ${help.runs.length}: ${Math.round(help.wallMs)} ms wall ` +
        `(${Math.round(help.wallMinMs)}-${Math.round(help.wallMaxMs)}; goal < ${HELP_GOAL_MS} ms), ` +
        `${Math.round(help.cpuMs)} ms CPU, ${help.maxRssMiB.toFixed(1)} MiB max RSS; node -e 0: ` +
        `${Math.round(help.emptyNodeWallMs)} ms wall, ${Math.round(help.emptyNodeCpuMs)} ms CPU (alternating; ` +
        `--help at ${help.wallRatio.toFixed(2)}x its wall time); ${pkg.bytes} bytes of JavaScript in the bundles`,
    );
  }, 180_000);

  it('a verb runs from the bundle against the local stack, without the global fetch: upload, then ls --json lists the file; sync --exclude leaves out what it matches', async () => {
    const file = join(work, 'hello.txt');
    await writeFile(file, 'hello from the bundle\n');
    const upload = await cliWith(GLOBAL_FETCH_THROWS, 'upload', file, 'bundle/hello.txt', '--json');
    expect(upload.stderr).not.toMatch(/unexpected error|global fetch/);
    expect(upload.status).toBe(0);
    expect(JSON.parse(upload.stdout)).toMatchObject({
      path: 'bundle/hello.txt',
      version: 1,
      status: 'committed',
    });
    const ls = await cliWith(GLOBAL_FETCH_THROWS, 'ls', 'bundle/', '--json');
    expect(ls.status).toBe(0);
    const listed = JSON.parse(ls.stdout) as { files: { path: string; version: number }[] };
    expect(listed.files).toEqual([expect.objectContaining({ path: 'bundle/hello.txt', version: 1 })]);
    // The glob engine of --exclude is bundled too.
    const lib = join(work, 'lib');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'kept.txt'), 'kept\n');
    await writeFile(join(lib, 'junk.tmp'), 'junk\n');
    const sync = await cliWith(
      GLOBAL_FETCH_THROWS,
      'sync',
      lib,
      'bundle/lib',
      '--exclude',
      '*.tmp',
      '--no-cache',
      '--json',
    );
    expect(sync.status, sync.stderr).toBe(0);
    expect(JSON.parse(sync.stdout)).toMatchObject({ files: 1, excluded: 1, uploaded: 1, failed: 0 });
  }, 120_000);

  it('the installed agent starts, mirrors what is committed, idles, and stops on SIGTERM', async () => {
    const file = join(work, 'for-the-agent.txt');
    await writeFile(file, 'mirrored by the bundled agent\n');
    expect((await cli('upload', file, 'bundle/for-the-agent.txt')).status).toBe(0);
    const dir = join(work, 'mirror');
    // Held while the agent starts: a starter much larger than the agent, whose peak getrusage's maxrss
    // carries across exec on Linux (checked below).
    const starterLoad = Buffer.alloc(256 * MiB, 1);
    const idle = await measureAgentIdle(pkg, { endpointsFile: sandbox.endpointsFile, target: PULL, dir });
    starterLoad.fill(0, 0, 1);
    expect(idle.log).toContain('agent stopped');
    // The version it reports (log, AGENT row) is the package's, from inside a chunk of dist/.
    const { version } = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(idle.log).toMatch(
      new RegExp(`"msg":"agent starting".*"version":"${version.replaceAll('.', '\\.')}"`),
    );
    expect(await readFile(join(dir, 'bundle/for-the-agent.txt'), 'utf8')).toBe(
      'mirrored by the bundled agent\n',
    );
    const flags = await agentNodeFlags(pkg);
    const [emptyRss] = await measureEmptyNodeIdle(flags, { runs: 1 });
    console.log(
      `installed agent idle 10 s after start: ${idle.rssMiB.toFixed(1)} MiB RSS (goal < ${AGENT_IDLE_GOAL_MIB} MiB), ` +
        `V8 heap ${idle.heapUsedMiB.toFixed(1)} MiB used of ${idle.heapTotalMiB.toFixed(1)} MiB; ` +
        `an empty idle node with the bin's flags (${flags.join(' ')}): ${emptyRss?.toFixed(1)} MiB`,
    );
    expect(idle.rssMiB).toBeGreaterThan(0);
    // The peak it reports at exit is its own, not its starter's (common/peak-rss.ts): 305 MiB before.
    const stopped = JSON.parse(idle.log.split('\n').find((l) => l.includes('"agent stopped"')) ?? '{}') as {
      maxRssBytes?: number;
    };
    const starterMiB = process.memoryUsage().rss / MiB;
    expect(
      stopped.maxRssBytes,
      `the log line 'agent stopped' (this process: ${starterMiB.toFixed(0)} MiB)`,
    ).toBeDefined();
    expect(Number(stopped.maxRssBytes) / MiB).toBeGreaterThanOrEqual(idle.rssMiB - 1);
    expect(Number(stopped.maxRssBytes) / MiB).toBeLessThan(idle.rssMiB + 48);
  }, 180_000);

  it("the installed agent takes its credentials from the standard AWS chain: a profile's credential_process (IAM Roles Anywhere's signing helper) or the environment; a wrong secret is refused", async () => {
    const file = join(work, 'for-the-chain.txt');
    await writeFile(file, 'signed with the chain\n');
    expect((await cli('upload', file, 'chain/file.txt')).status).toBe(0);
    const endpoints = JSON.parse(await readFile(sandbox.endpointsFile, 'utf8')) as {
      s3: { endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } };
      sqs: { endpoint: string };
      dynamodb: { endpoint: string };
      table: string;
      originBucket: string;
      targets: Record<string, { queue: string }>;
    };
    const { accessKeyId, secretAccessKey } = endpoints.s3.credentials;
    // No endpoints file: the names as flags, the emulators as the SDK's own endpoint variables.
    const base = {
      PATH: process.env.PATH ?? '',
      HOME: work,
      AWS_ENDPOINT_URL_S3: endpoints.s3.endpoint,
      AWS_ENDPOINT_URL_SQS: endpoints.sqs.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb.endpoint,
      MIRROR_S3_FORCE_PATH_STYLE: 'true',
    };
    const helper = join(work, 'signing-helper.mjs');
    await writeFile(
      helper,
      `console.log(JSON.stringify(${JSON.stringify({ Version: 1, AccessKeyId: accessKeyId, SecretAccessKey: secretAccessKey })}));\n`,
    );
    const config = join(work, 'aws-config');
    await writeFile(config, `[profile anywhere]\ncredential_process = ${process.execPath} ${helper}\n`);

    const run = async (
      name: string,
      env: Record<string, string>,
      until: (log: string, dir: string) => Promise<boolean>,
    ) => {
      const dir = join(work, `mirror-${name}`);
      const child = spawn(
        pkg.agent,
        [
          '--target',
          PULL,
          '--dir',
          dir,
          '--table',
          endpoints.table,
          '--origin-bucket',
          endpoints.originBucket,
          '--queue-url',
          endpoints.targets[PULL]?.queue ?? '',
          '--region',
          'us-east-1',
          '--log-format',
          'json',
        ],
        { cwd: work, env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let log = '';
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
      });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      try {
        await waitFor(
          `the ${name} agent`,
          async () => {
            if (child.exitCode !== null) throw new Error(`the agent exited with ${child.exitCode}: ${log}`);
            return (await until(log, dir)) ? true : undefined;
          },
          60_000,
        );
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    };
    const mirrored = async (_log: string, dir: string) =>
      (await readFile(join(dir, 'chain/file.txt'), 'utf8').catch(() => '')) === 'signed with the chain\n';
    await run('credential-process', { AWS_CONFIG_FILE: config, AWS_PROFILE: 'anywhere' }, mirrored);
    await run(
      'environment',
      { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey },
      mirrored,
    );
    // The emulators check signatures: the two runs above were signed with what the chain found.
    await run(
      'wrong-secret',
      { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
      async (log) => /"condition":"access-denied"/.test(log),
    );
    expect(await mirrored('', join(work, 'mirror-wrong-secret'))).toBe(false);
  }, 180_000);
});
