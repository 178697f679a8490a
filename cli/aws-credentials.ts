/**
 * The keys a CLI command's own AWS calls use when the environment names them (the variables the
 * AWS CLI reads); undefined: the SDK's default chain (profile, SSO, instance role) decides. Read
 * from the command's environment, not the process's, so a caller (or a test) can give its own.
 */
export interface EnvCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export function envCredentials(env: NodeJS.ProcessEnv): EnvCredentials | undefined {
  if (!env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return undefined;
  return {
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  };
}
