/** SQS FIFO (one target) → apply each version at the target bucket: in order per path, paths in parallel. */
import type { SQSRecord } from 'aws-lambda';
import { replicationMessageSchema } from '../../contracts/replication-message.js';
import type { Telemetry } from '../adapters/powertools.js';
import {
  type KnownApplied,
  type ReplicateDeps,
  recordReplicationFailure,
  replicateVersion,
} from '../core/replicate.js';
import { processFifoGroupsInParallel } from './fifo-groups.js';
import type { SqsHandler } from './ingest-handler.js';

export interface ReplicateHandlerDeps extends Omit<ReplicateDeps, 'metrics'> {
  readonly telemetry: Telemetry;
}

export function createReplicateHandler(handlerDeps: ReplicateHandlerDeps): SqsHandler {
  const { telemetry, ...rest } = handlerDeps;
  const deps: ReplicateDeps = { ...rest, metrics: telemetry.metrics };
  const { logger } = telemetry;

  async function processRecord(record: SQSRecord, known: KnownApplied): Promise<void> {
    const message = replicationMessageSchema.parse(JSON.parse(record.body));
    try {
      const outcome = await replicateVersion(deps, message, known);
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
      // Paths side by side, each in order; a failure returns the rest of its own path only.
      return await processFifoGroupsInParallel(event, context, () => {
        const known: KnownApplied = new Map();
        return (record) => processRecord(record, known);
      });
    } finally {
      telemetry.flush();
    }
  };
}
