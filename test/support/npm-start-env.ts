/** The environment for `npm start` on free ports, in its own data folder, without agents. */
export function npmStartEnv(dataDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    MIRROR_DATA_DIR: dataDir,
    PORT: '0',
    MIRROR_S3_PORT: '0',
    MIRROR_SQS_PORT: '0',
    MIRROR_DYNAMODB_PORT: '0',
    MIRROR_AGENTS: '0',
  };
}
