/** SQS (S3 ObjectCreated on blobs/) → verify the bytes, commit waiting uploads, fan out. */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { makeLogger, makeMetrics, metricsPort, publishMetrics } from '../adapters/powertools.js';
import { readRuntimeConfig } from '../adapters/runtime-config.js';
import { makeDeps } from '../adapters/wiring.js';
import { ingestBlob } from '../core/ingest.js';
import { decodeS3Key, s3NotificationSchema } from './events.js';

const config = readRuntimeConfig();
const logger = makeLogger('ingest');
const metrics = makeMetrics('ingest');
const deps = makeDeps(config, metricsPort(metrics));
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

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  try {
    return await processPartialResponse(event, processRecord, processor, { context });
  } finally {
    publishMetrics(metrics);
  }
};
