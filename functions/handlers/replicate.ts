/** SQS FIFO (one target) → apply each version at the target bucket, in order per path. */
import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { replicationMessageSchema } from '../../contracts/replication-message.js';
import { makeLogger, makeMetrics, metricsPort, publishMetrics } from '../adapters/powertools.js';
import { readRuntimeConfig } from '../adapters/runtime-config.js';
import { makeDeps, makeReplicaStore } from '../adapters/wiring.js';
import { recordReplicationFailure, replicateVersion } from '../core/replicate.js';

const config = readRuntimeConfig();
const target = config.targets.find((t) => t.id === config.targetId);
const replica = target && makeReplicaStore(config, target);
if (!target || !replica) {
  throw new Error(`MIRROR_TARGET_ID "${config.targetId}" must name an S3 target in MIRROR_TARGETS`);
}
const logger = makeLogger(`replicate-${target.id}`);
const metrics = makeMetrics('replicate');
const port = metricsPort(metrics);
const { ledger, clock } = makeDeps(config, port);
const processor = new SqsFifoPartialProcessorAsync();

async function processRecord(record: SQSRecord): Promise<void> {
  const message = replicationMessageSchema.parse(JSON.parse(record.body));
  const deps = {
    target: target as NonNullable<typeof target>,
    ledger,
    replica: replica as NonNullable<typeof replica>,
    clock,
    metrics: port,
    dryRun: target?.dryRun,
  };
  try {
    const outcome = await replicateVersion(deps, message);
    if (outcome.kind === 'refused') logger.warn('message refused', { message, reason: outcome.reason });
    else logger.info('replicated', { path: message.path, version: message.version, outcome });
  } catch (error) {
    logger.warn('replication failed', {
      path: message.path,
      version: message.version,
      error: error as Error,
    });
    await recordReplicationFailure(deps, message, error).catch((cause) =>
      logger.error('could not record the failure', cause as Error),
    );
    throw error;
  }
}

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  try {
    // Only the failed record's group is retried; other paths go on (Powertools' FIFO processor).
    return await processPartialResponse(event, processRecord, processor, { context, skipGroupOnError: true });
  } finally {
    publishMetrics(metrics);
  }
};
