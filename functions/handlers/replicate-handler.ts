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
import { type BatchDeadline, processFifoGroupsInParallel } from './fifo-groups.js';
import type { SqsHandler } from './ingest-handler.js';

export interface ReplicateHandlerDeps extends Omit<ReplicateDeps, 'metrics'> {
  readonly telemetry: Telemetry;
  /** When a batch stops before the invocation's end (fifo-groups.ts). @default its defaults */
  readonly deadline?: BatchDeadline | undefined;
  /**
   * Hands records stopped by the deadline back to the queue at once (functions/adapters/sqs-release.ts),
   * so that their paths wait for the next poll, not for the queue's visibility timeout.
   */
  readonly requeue?: { release(receiptHandles: readonly string[]): Promise<void> } | undefined;
}

export function createReplicateHandler(handlerDeps: ReplicateHandlerDeps): SqsHandler {
  const { telemetry, deadline, requeue, ...rest } = handlerDeps;
  const deps: ReplicateDeps = { ...rest, metrics: telemetry.metrics };
  const { logger } = telemetry;

  /** The record's message; one that is not fails its record (retried, then in the DLQ), said in the log. */
  function parseMessage(record: SQSRecord) {
    try {
      return replicationMessageSchema.parse(JSON.parse(record.body));
    } catch (error) {
      logger.error(
        'the record is not a replication message: it fails (and goes to the DLQ after its retries)',
        {
          messageId: record.messageId,
          error: error as Error,
        },
      );
      throw error;
    }
  }

  async function processRecord(record: SQSRecord, known: KnownApplied, signal: AbortSignal): Promise<void> {
    const message = parseMessage(record);
    try {
      const outcome = await replicateVersion(deps, message, known, signal);
      if (outcome.kind === 'refused') logger.warn('message refused', { message, reason: outcome.reason });
      else logger.info('replicated', { path: message.path, version: message.version, outcome });
    } catch (error) {
      if (signal.aborted) {
        // Stopped by the invocation's deadline, not failed: nothing to record on the target row.
        deps.metrics.count('ReplicationsDeferred', 1, { target: deps.target.id });
        logger.info('replication deferred to the next delivery', {
          path: message.path,
          version: message.version,
        });
        throw error;
      }
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
      const { batchItemFailures, deferred } = await processFifoGroupsInParallel(
        event,
        context,
        () => {
          const known: KnownApplied = new Map();
          return (record, signal) => processRecord(record, known, signal);
        },
        deadline,
      );
      if (deferred.length > 0 && requeue) {
        // Best effort: a record not handed back still returns after the visibility timeout.
        await requeue
          .release(deferred.map((r) => r.receiptHandle))
          .catch((error) => logger.warn('could not hand deferred records back', error as Error));
      }
      return { batchItemFailures };
    } finally {
      telemetry.flush();
    }
  };
}
