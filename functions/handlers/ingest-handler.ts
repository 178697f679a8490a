/** SQS (S3 ObjectCreated on blobs/) → verify the bytes, commit waiting uploads, fan out. */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import { type IngestDeps, ingestBlob } from '../core/ingest.js';
import { decodeS3Key, s3NotificationSchema } from './events.js';

export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export interface IngestHandlerDeps extends IngestDeps {
  readonly telemetry: Telemetry;
}

export function createIngestHandler(deps: IngestHandlerDeps): SqsHandler {
  const { logger } = deps.telemetry;
  const processor = new BatchProcessor(EventType.SQS);

  async function processRecord(record: SQSRecord): Promise<void> {
    const notification = s3NotificationSchema.parse(JSON.parse(record.body));
    if (!('Records' in notification)) return;
    for (const s3Record of notification.Records) {
      if (!s3Record.eventName.startsWith('ObjectCreated:')) continue;
      const { object } = s3Record.s3;
      const outcome = await ingestBlob(deps, {
        key: decodeS3Key(object.key),
        size: object.size ?? 0,
        etag: object.eTag === undefined ? undefined : `"${object.eTag.replace(/"/g, '')}"`,
        versionId: object.versionId,
        eventTime: s3Record.eventTime,
      });
      logger.info('ingested', { messageId: record.messageId, key: object.key, outcome });
    }
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
