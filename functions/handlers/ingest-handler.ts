/** SQS (S3 ObjectCreated on blobs/) → verify the bytes, commit waiting uploads, fan out. */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import {
  type IngestDeps,
  type IngestOptions,
  ingestBlob,
  progressEvent,
  savedProgress,
} from '../core/ingest.js';
import {
  type VerificationOptions,
  type VerificationQueue,
  verificationMessageSchema,
} from '../core/verification.js';
import { decodeS3Key, s3NotificationSchema } from './events.js';

export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export interface IngestHandlerDeps extends IngestDeps {
  readonly telemetry: Telemetry;
  /**
   * Where a verification that runs out of time goes on: the ingest queue. Without it every object
   * is hashed in one pass (and one too large for the invocation's time fails it).
   */
  readonly verificationQueue?: VerificationQueue | undefined;
  /** Sizes of the verification in ranges (core/verification.ts), and the time kept in reserve. */
  readonly verification?: Omit<VerificationOptions, 'hasTime'> & {
    /**
     * A range starts only while more than this is left of the invocation: the batch's other
     * records, the last range and the continuation's send fit in it. @default 60,000, or a
     * quarter of the invocation's time when that is shorter (a local function has 30 s)
     */
    readonly reserveMs?: number | undefined;
  };
}

const DEFAULT_RESERVE_MS = 60_000;

export function createIngestHandler(deps: IngestHandlerDeps): SqsHandler {
  const { logger } = deps.telemetry;
  const processor = new BatchProcessor(EventType.SQS);

  async function processRecord(record: SQSRecord, context: Context): Promise<void> {
    const body: unknown = JSON.parse(record.body);
    const options = ingestOptions(deps, context);
    const continuation = verificationMessageSchema.safeParse(body);
    if (continuation.success) {
      const pointer = continuation.data.verifyBlob;
      const resume = await savedProgress(deps.ledger, pointer);
      await ingestAndLog(record, progressEvent(pointer), { ...options, resume });
      return;
    }
    const notification = s3NotificationSchema.parse(body);
    if (!('Records' in notification)) return;
    for (const s3Record of notification.Records) {
      if (!s3Record.eventName.startsWith('ObjectCreated:')) continue;
      const { object } = s3Record.s3;
      const event = {
        key: decodeS3Key(object.key),
        size: object.size ?? 0,
        etag: object.eTag === undefined ? undefined : `"${object.eTag.replace(/"/g, '')}"`,
        versionId: object.versionId,
        eventTime: s3Record.eventTime,
      };
      await ingestAndLog(record, event, { ...options, resume: undefined });
    }
  }

  async function ingestAndLog(
    record: SQSRecord,
    event: Parameters<typeof ingestBlob>[1],
    options: IngestOptions,
  ): Promise<void> {
    const outcome = await ingestBlob(deps, event, options);
    if (outcome.kind === 'verifying') {
      // Sent before this record counts as done: if the send fails the record comes back and goes on
      // from its own state; if the send lands but the record is not deleted, the two hashes run
      // to the same digest and the second proof finds the first (a commit is idempotent).
      await deps.verificationQueue?.continueVerification(outcome.progress);
      const { progress } = outcome;
      logger.info('verification continues', {
        messageId: record.messageId,
        sha256: progress.sha256,
        offset: progress.offset,
        size: progress.size,
        hops: progress.hops,
      });
      return;
    }
    logger.info('ingested', { messageId: record.messageId, key: event.key, outcome });
  }

  return async (event, context) => {
    logger.addContext(context);
    try {
      return await processPartialResponse(
        event,
        (record: SQSRecord) => processRecord(record, context),
        processor,
        {
          context,
        },
      );
    } finally {
      deps.telemetry.flush();
    }
  };
}

/** Ranges across invocations only with a queue to continue on; a range starts while time is left. */
function ingestOptions(deps: IngestHandlerDeps, context: Context): IngestOptions {
  if (!deps.verificationQueue) return {};
  const { reserveMs, ...sizes } = deps.verification ?? {};
  const reserve = reserveMs ?? Math.min(DEFAULT_RESERVE_MS, context.getRemainingTimeInMillis() / 4);
  return { verification: { ...sizes, hasTime: () => context.getRemainingTimeInMillis() > reserve } };
}
