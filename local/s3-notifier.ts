/**
 * The local equivalent of an S3 event notification to SQS: ObjectCreated events of the
 * origin bucket whose key starts with `blobs/` become the message S3 sends (event
 * message structure, eventVersion 2.1), sent to the ingest queue.
 *
 * The record is built from AWS's documented event message structure; it names the
 * object version created when the bucket is versioned (the ingest pins what it verifies
 * to that version).
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeliveryFaults } from './delivery-faults.ts';
import type { S3ObjectCreated } from './emulators.ts';

/** One record of an S3 event notification (the shape Lambda's `S3EventRecord` describes). */
export interface S3NotificationRecord {
  eventVersion: '2.1';
  eventSource: 'aws:s3';
  awsRegion: string;
  eventTime: string;
  eventName: string;
  userIdentity: { principalId: string };
  requestParameters: { sourceIPAddress: string };
  responseElements: { 'x-amz-request-id': string; 'x-amz-id-2': string };
  s3: {
    s3SchemaVersion: '1.0';
    configurationId: string;
    bucket: { name: string; ownerIdentity: { principalId: string }; arn: string };
    /** `versionId` only for a versioned bucket, as AWS documents it. */
    object: { key: string; size: number; eTag: string; versionId?: string; sequencer: string };
  };
}

/** Dummy principal ids (S3 reports the uploader's and the bucket owner's). */
const PRINCIPAL = 'AWS:AIDALOCALSANDBOXUSER';
const OWNER = 'A1LOCALSANDBOX';

/**
 * S3 URL-encodes keys in notifications the way HTML forms do: spaces as `+`,
 * other reserved characters percent-encoded, `/` kept.
 */
export function encodeEventKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

let lastSequencer = 0n;
/** Hex, growing with time within the process, as S3's per-key sequencer does. */
function nextSequencer(): string {
  let value = BigInt(Date.now()) * 1_000_000n;
  if (value <= lastSequencer) value = lastSequencer + 1n;
  lastSequencer = value;
  return value.toString(16).toUpperCase().padStart(18, '0');
}

export function buildS3Record(
  event: S3ObjectCreated & { size: number; eTag: string },
  options: { region: string; configurationId: string },
): S3NotificationRecord {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: options.region,
    eventTime: event.time.toISOString(),
    eventName: event.eventName,
    userIdentity: { principalId: PRINCIPAL },
    requestParameters: { sourceIPAddress: event.sourceIp },
    responseElements: {
      'x-amz-request-id': event.requestId,
      'x-amz-id-2': createHash('sha256').update(event.requestId).digest('base64'),
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: options.configurationId,
      bucket: {
        name: event.bucket,
        ownerIdentity: { principalId: OWNER },
        arn: `arn:aws:s3:::${event.bucket}`,
      },
      object: {
        key: encodeEventKey(event.key),
        size: event.size,
        eTag: event.eTag,
        ...(event.versionId === undefined ? {} : { versionId: event.versionId }),
        sequencer: nextSequencer(),
      },
    },
  };
}

/** Tries per notification, 1.4 s of pauses in all: a stopping stack waits for them (drain). */
const SEND_ATTEMPTS = 4;

export interface S3NotifierOptions {
  readonly sqs: SQSClient;
  readonly bucket: string;
  readonly prefix: string;
  readonly queueUrl: string;
  readonly region: string;
  /** Fills in size and ETag when the emulator's event lacks them (copies). */
  readonly head: (bucket: string, key: string) => Promise<{ size: number; eTag: string }>;
  readonly onError: (error: Error) => void;
  /** Lost, doubled, late and out-of-order notifications (docs/chaos.md); none unless given. */
  readonly faults?: DeliveryFaults;
}

export interface S3Notifier {
  /** Feeds one created object (wired to the emulator's events). */
  notify(event: S3ObjectCreated): void;
  /** Waits for the notifications being sent. */
  drain(): Promise<void>;
}

export function createS3Notifier(options: S3NotifierOptions): S3Notifier {
  const sending = new Set<Promise<void>>();
  const configurationId = 'origin-blobs-created';
  async function send(event: S3ObjectCreated): Promise<void> {
    let { size, eTag } = event;
    if (size === undefined || eTag === undefined) {
      const head = await options.head(event.bucket, event.key);
      size ??= head.size;
      eTag ??= head.eTag;
    }
    const record = buildS3Record({ ...event, size, eTag }, { region: options.region, configurationId });
    const command = new SendMessageCommand({
      QueueUrl: options.queueUrl,
      MessageBody: JSON.stringify({ Records: [record] }),
    });
    // S3 retries delivery to its destination: one failed send must not lose the event here.
    for (let attempt = 1; ; attempt++) {
      try {
        await options.sqs.send(command);
        return;
      } catch (err) {
        if (attempt >= SEND_ATTEMPTS) throw err;
        await sleep(100 * 2 ** attempt);
      }
    }
  }
  const track = (event: S3ObjectCreated, delayMs = 0) => {
    const p = (delayMs > 0 ? sleep(delayMs).then(() => send(event)) : send(event)).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      options.onError(
        new Error(`S3 notification for ${event.bucket}/${event.key} failed: ${e.message}`, { cause: e }),
      );
    });
    sending.add(p);
    void p.finally(() => sending.delete(p));
  };
  // A notification held back goes after the next one, or on its own once the longest delay passed.
  let held: { event: S3ObjectCreated; timer: NodeJS.Timeout }[] = [];
  const release = () => {
    const out = held;
    held = [];
    for (const h of out) {
      clearTimeout(h.timer);
      track(h.event);
    }
  };
  const deliver = (event: S3ObjectCreated) => {
    const faults = options.faults;
    const fate = faults ? faults.fate() : 'deliver';
    if (fate === 'drop') return;
    if (fate === 'reorder') {
      held.push({ event, timer: setTimeout(release, faults?.delayMs() ?? 0) });
      return;
    }
    track(event, fate === 'delay' ? (faults?.delayMs() ?? 0) : 0);
    if (fate === 'duplicate') track(event);
    release();
  };
  return {
    notify(event) {
      if (event.bucket !== options.bucket || !event.key.startsWith(options.prefix)) return;
      deliver(event);
    },
    async drain() {
      release();
      await Promise.allSettled([...sending]);
    },
  };
}
