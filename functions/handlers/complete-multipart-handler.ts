/**
 * SQS (completion messages the API sends for `POST /v1/uploads/{id}/complete`) → S3's
 * CompleteMultipartUpload (core/completion.ts). Its own function so that only it may write the
 * origin's blobs (CompleteMultipartUpload is authorized as s3:PutObject): the ingest, which
 * verifies the object S3 assembles, never writes bytes.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import { type CompletionDeps, completeRecordedUpload, completionMessageSchema } from '../core/completion.js';

export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export interface CompleteMultipartHandlerDeps extends CompletionDeps {
  readonly telemetry: Telemetry;
}

export function createCompleteMultipartHandler(deps: CompleteMultipartHandlerDeps): SqsHandler {
  const { logger } = deps.telemetry;
  const processor = new BatchProcessor(EventType.SQS);

  async function processRecord(record: SQSRecord): Promise<void> {
    // A body that is not a completion fails its record: it goes to the dead-letter queue to be seen.
    const { uploadId } = completionMessageSchema.parse(JSON.parse(record.body)).completeUpload;
    const outcome = await completeRecordedUpload(deps, uploadId);
    logger.info('multipart completion', { messageId: record.messageId, uploadId, outcome });
  }

  return async (event, context) => {
    logger.addContext(context);
    try {
      return await processPartialResponse(event, processRecord, processor, { context });
    } finally {
      deps.telemetry.flush();
    }
  };
}
