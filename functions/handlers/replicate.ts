/** Lambda entry of one target's replicate (createReplicateHandler in replicate-handler.ts). */
import { SQSClient } from '@aws-sdk/client-sqs';
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { readConfig, replicateConfigSchema } from '../adapters/runtime-config.js';
import { SqsRelease } from '../adapters/sqs-release.js';
import { makeReplicateDeps } from '../adapters/wiring.js';
import { createReplicateHandler } from './replicate-handler.js';

const config = readConfig(replicateConfigSchema);
const telemetry = makeTelemetry(makeLogger(`replicate-${config.target.id}`), makeMetrics('replicate'));
export const handler = createReplicateHandler({
  ...makeReplicateDeps(config, telemetry.metrics),
  telemetry,
  requeue: new SqsRelease(new SQSClient({ region: config.region }), config.target.queueUrl),
});
