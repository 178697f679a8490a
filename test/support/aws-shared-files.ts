/**
 * Points the AWS SDK's default credentials chain at shared files in `dir` (`aws-credentials`,
 * `aws-config`, profile `media-mirror`), as docs/agent.md sets an access key up, with no keys in
 * the environment and no instance metadata (the chain ends at once instead of timing out).
 * Returns what puts the environment back.
 */
import { join } from 'node:path';

export function useSharedCredentialsFiles(dir: string): () => void {
  const saved = { ...process.env };
  Object.assign(process.env, {
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials'),
    AWS_CONFIG_FILE: join(dir, 'aws-config'),
    AWS_PROFILE: 'media-mirror',
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'])
    delete process.env[key];
  return () => {
    process.env = saved;
  };
}
