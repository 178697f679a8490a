/** The on-premises pull agent's programmatic surface (the local stack runs one in-process). */
import { join } from 'node:path';
import type { z } from 'zod';
import type { writtenEndpointsSchema } from '../contracts/endpoints.ts';
import type { StartAgentOptions } from './agent.ts';
import type { AgentLog } from './log.ts';

export {
  AGENT_VERSION,
  type AgentHandle,
  type AgentStats,
  type StartAgentOptions,
  startAgent,
} from './agent.ts';
export { type AgentConfig, type AgentFlags, resolveAgentConfig } from './config.ts';
export { type AgentLog, createJsonLog, createMemoryLog, createTtyLog, silentLog } from './log.ts';
export { driftCount, type VerifyReport, verifyMirror } from './verify.ts';

/** What the agent reads of the local stack's endpoints (contracts/endpoints.ts), as the stack hands it over. */
export type SandboxEndpointsLike = Pick<
  z.infer<typeof writtenEndpointsSchema>,
  's3' | 'sqs' | 'dynamodb' | 'table' | 'originBucket' | 'targets'
>;

/**
 * Options for the local stack's in-process agent: target `targetId` mirrored into
 * `<dataDir>/onprem/<targetId>/`, against the emulators of `endpoints`.
 */
export function sandboxAgentOptions(
  endpoints: SandboxEndpointsLike,
  options: {
    readonly targetId: string;
    readonly dataDir: string;
    readonly feedShards: number;
    readonly pathPrefix?: string | undefined;
    readonly log?: AgentLog | undefined;
  },
): StartAgentOptions {
  const target = endpoints.targets[options.targetId];
  if (target?.kind !== 'pull') {
    throw new Error(`"${options.targetId}" is not a pull target of the local stack`);
  }
  return {
    targetId: options.targetId,
    dir: join(options.dataDir, 'onprem', options.targetId),
    table: endpoints.table,
    originBucket: endpoints.originBucket,
    queueUrl: target.queue,
    feedShards: options.feedShards,
    pathPrefix: options.pathPrefix,
    region: endpoints.s3.region,
    // Locally the pipeline runs on one machine: check the feed more often than on AWS.
    catchUpIntervalSeconds: 15,
    aws: {
      s3Endpoint: endpoints.s3.endpoint,
      sqsEndpoint: endpoints.sqs.endpoint,
      dynamodbEndpoint: endpoints.dynamodb.endpoint,
      s3ForcePathStyle: endpoints.s3.forcePathStyle ?? true,
      credentials: endpoints.s3.credentials,
    },
    ...(options.log ? { log: options.log } : {}),
  };
}
