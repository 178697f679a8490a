/** SQS FIFO (one target) → apply each version at the target bucket, in order per path. */
import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { SQSRecord } from 'aws-lambda';
import { replicationMessageSchema } from '../../contracts/replication-message.js';
import type { Telemetry } from '../adapters/powertools.js';
import { type ReplicateDeps, recordReplicationFailure, replicateVersion } from '../core/replicate.js';
import type { SqsHandler } from './ingest-handler.js';

export interface ReplicateHandlerDeps extends Omit<ReplicateDeps, 'metrics'> {
  readonly telemetry: Telemetry;
}

export function createReplicateHandler(handlerDeps: ReplicateHandlerDeps): SqsHandler {
  const { telemetry, ...rest } = handlerDeps;
  const deps: ReplicateDeps = { ...rest, metrics: telemetry.metrics };
  const { logger } = telemetry;
  const processor = new SqsFifoPartialProcessorAsync();

  async function processRecord(record: SQSRecord): Promise<void> {
    const message = replicationMessageSchema.parse(JSON.parse(record.body));
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

  return async (event, context) => {
    logger.addContext(context);
    try {
      // Only the failed record's group is retried; other paths go on (Powertools' FIFO processor).
      return await processPartialResponse(event, processRecord, processor, {
        context,
        skipGroupOnError: true,
      });
    } finally {
      telemetry.flush();
    }
  };
}
