/**
 * The lost-notification sweep's adapters (core/pending-sweep.ts): the origin's object versions of
 * a blob (ListObjectVersions, then a HeadObject of each for its checksum, time and sender), and the
 * ingest queue fed with S3 event notifications in S3's own shape.
 */
import { ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { blobKey } from '../../contracts/ledger-keys.js';
import type {
  IngestEventQueue,
  OriginVersions,
  StoredBlobVersion,
  SweptEvent,
} from '../core/pending-sweep.js';
import { S3BlobStore } from './s3.js';

/** S3 lists versions a page of 1,000 at a time; a blob's key holds a handful (one per upload of its bytes). */
const MAX_VERSIONS = 1000;

export class S3OriginVersions implements OriginVersions {
  private readonly blobs: S3BlobStore;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {
    this.blobs = new S3BlobStore(s3, bucket);
  }

  async versionsOf(sha256: string): Promise<readonly StoredBlobVersion[]> {
    const key = blobKey(sha256);
    const out = await this.s3.send(
      new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: key, MaxKeys: MAX_VERSIONS }),
    );
    const found: StoredBlobVersion[] = [];
    for (const listed of out.Versions ?? []) {
      if (listed.Key !== key) continue;
      const versionId =
        listed.VersionId === undefined || listed.VersionId === 'null' ? undefined : listed.VersionId;
      // Deleted since it was listed (the ingest discards duplicates): nothing to send.
      const stat = await this.blobs.stat(sha256, versionId);
      if (stat) found.push({ ...stat, versionId, lastModified: stat.lastModified ?? listed.LastModified });
    }
    return found;
  }
}

/** Sends S3 ObjectCreated notifications (event version 2.1) to the ingest queue, as S3 does. */
export class SqsIngestEvents implements IngestEventQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly origin: { readonly bucket: string; readonly region: string },
  ) {}

  async sendObjectCreated(event: SweptEvent): Promise<void> {
    const record = {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: this.origin.region,
      eventTime: event.eventTime,
      eventName: 'ObjectCreated:Put',
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'pending-sweep',
        bucket: { name: this.origin.bucket, arn: `arn:aws:s3:::${this.origin.bucket}` },
        object: {
          key: event.key,
          size: event.size,
          ...(event.etag === undefined ? {} : { eTag: event.etag.replace(/"/g, '') }),
          ...(event.versionId === undefined ? {} : { versionId: event.versionId }),
        },
      },
    };
    await this.sqs.send(
      new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify({ Records: [record] }) }),
    );
  }
}
