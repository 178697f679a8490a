/**
 * The continuation of a long verification goes to the ingest queue as a message the ingest
 * handler reads back (through the local SQS emulator): it names the object and how far the hash
 * got, never the SHA-256 state, which the ledger keeps.
 */
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsVerificationQueue } from '../../functions/adapters/sqs-verification.js';
import { hashInRanges, verificationMessageSchema } from '../../functions/core/verification.js';
import { randomBytes, sha256Hex } from '../support/domain.js';
import { useLocalSqs } from '../support/local-sqs.ts';
import { VersionedBlobs } from '../support/versioned-blobs.js';

const REGION = 'us-east-1';
const localSqs = useLocalSqs(REGION);

describe('SqsVerificationQueue', () => {
  it('sends the progress as a continuation message without its state; the saved state finishes the hash', async () => {
    const { QueueUrl } = await localSqs.client.send(
      new CreateQueueCommand({ QueueName: 'ingest-continuations' }),
    );
    const blobs = new VersionedBlobs();
    const bytes = randomBytes(300_000);
    const sha256 = sha256Hex(bytes);
    const versionId = blobs.put(sha256, bytes);
    const target = {
      sha256,
      versionId,
      etag: '"e"',
      size: bytes.length,
      eventTime: '2026-11-30T00:00:00.000Z',
    };
    const first = await hashInRanges(blobs, target, { rangeBytes: 100_000, hasTime: () => false });
    if (first.done || 'gone' in first) throw new Error('one range of three');

    await new SqsVerificationQueue(localSqs.client, QueueUrl as string).continueVerification(first.progress);

    const received = await localSqs.client.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 2 }));
    expect(received.Messages).toHaveLength(1);
    const sent = JSON.parse(received.Messages?.[0]?.Body ?? '');
    expect(sent.verifyBlob).not.toHaveProperty('state');
    const { state: _state, ...pointer } = first.progress;
    expect(verificationMessageSchema.parse(sent).verifyBlob).toEqual(pointer);
    const rest = await hashInRanges(
      blobs,
      target,
      { rangeBytes: 100_000, hasTime: () => true },
      first.progress,
    );
    expect(rest).toEqual({ done: true, sha256, size: bytes.length });
  });

  it('refuses to send a progress that is not one (nothing reaches the queue)', async () => {
    const { QueueUrl } = await localSqs.client.send(new CreateQueueCommand({ QueueName: 'ingest-refused' }));
    const queue = new SqsVerificationQueue(localSqs.client, QueueUrl as string);
    await expect(
      queue.continueVerification({ sha256: 'not-hex', size: 1, offset: 0, hops: 1 }),
    ).rejects.toThrow();
    const received = await localSqs.client.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1 }));
    expect(received.Messages ?? []).toEqual([]);
  });
});
