/**
 * rclone, the peer: a real S3 client talking to the same local S3 emulator as the stack
 * (configured by environment, as the S3 emulator's own test does). `.ci/run` installs it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { BenchStack } from './stack.ts';

const run = promisify(execFile);

export type Rclone = (...args: string[]) => Promise<{ stdout: string; seconds: number }>;

/** An rclone with the remote `loc:` pointing at the stack's S3 emulator. */
export function rcloneFor(stack: BenchStack): Rclone {
  const s3 = stack.endpoints.s3;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RCLONE_CONFIG_LOC_TYPE: 's3',
    RCLONE_CONFIG_LOC_PROVIDER: 'Other',
    RCLONE_CONFIG_LOC_ENDPOINT: s3.endpoint,
    RCLONE_CONFIG_LOC_REGION: s3.region,
    RCLONE_CONFIG_LOC_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    RCLONE_CONFIG_LOC_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    RCLONE_CONFIG_LOC_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG: `${stack.dataDir}/rclone.conf`,
  };
  // rclone 1.60 refuses to start while AWS_CA_BUNDLE is set.
  delete env.AWS_CA_BUNDLE;
  return async (...args) => {
    const started = performance.now();
    const out = await run('rclone', args, { env, maxBuffer: 64 * 1024 * 1024 });
    return { stdout: out.stdout, seconds: (performance.now() - started) / 1000 };
  };
}
