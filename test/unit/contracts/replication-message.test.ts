/**
 * The replication message is stated once (contracts/replication-message.ts): the fan-out sends
 * it, replicate and the agent parse it. A real body, as the fan-out puts it on the wire, is pinned
 * here byte for byte, so a change to the wire format shows up as a failing test.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { replicationMessageSchema } from '../../../contracts/replication-message.ts';
import { SqsFanout } from '../../../functions/adapters/sqs-fanout.js';
import { replicationMessage } from '../../../functions/core/commit.js';

const SHA = 'ab'.repeat(32);

async function sentBody(message: Parameters<SqsFanout['send']>[0]): Promise<string> {
  const bodies: string[] = [];
  const sqs = {
    send: async (command: { input: { Entries?: { Id: string; MessageBody?: string }[] } }) => {
      const entries = command.input.Entries ?? [];
      bodies.push(...entries.map((e) => e.MessageBody ?? ''));
      return { Successful: entries.map((e) => ({ Id: e.Id })), Failed: [] };
    },
  } as unknown as SQSClient;
  await new SqsFanout(sqs, [{ id: 'onprem-dc1', queueUrl: 'http://q/onprem-dc1.fifo' }]).send(message);
  return bodies[0] ?? '';
}

describe('the replication message', () => {
  const version = {
    path: 'photos/2026/été 🌅.jpg',
    version: 3,
    sha256: SHA,
    size: 1234,
    contentType: 'image/jpeg',
    deleted: false,
    committedAt: '2026-11-29T20:00:00.000Z',
  };

  it('goes on the wire exactly as committed today (fields, order, astral characters escaped)', async () => {
    const body = await sentBody(replicationMessage('onprem-dc1', version));
    expect(body).toBe(
      `{"targetId":"onprem-dc1","path":"photos/2026/été \\ud83c\\udf05.jpg","version":3,"sha256":"${SHA}",` +
        '"size":1234,"contentType":"image/jpeg","deleted":false,"committedAt":"2026-11-29T20:00:00.000Z"}',
    );
    expect(replicationMessageSchema.parse(JSON.parse(body))).toEqual({ targetId: 'onprem-dc1', ...version });
  });

  it('a tombstone carries null sha256 and content type', async () => {
    const tombstone = { ...version, version: 4, sha256: null, size: 0, contentType: null, deleted: true };
    const body = await sentBody(replicationMessage('onprem-dc1', tombstone));
    expect(replicationMessageSchema.parse(JSON.parse(body))).toEqual({
      targetId: 'onprem-dc1',
      ...tombstone,
    });
  });

  it('the sender refuses what no consumer would accept', async () => {
    const bad = { ...replicationMessage('onprem-dc1', version), sha256: 'XYZ' };
    await expect(sentBody(bad)).rejects.toThrow(/sha256/);
  });

  it('requires a hex sha256 or null (tombstone), a positive version and a content type (or null)', () => {
    const base = replicationMessage('t', version);
    expect(replicationMessageSchema.safeParse(base).success).toBe(true);
    expect(replicationMessageSchema.safeParse({ ...base, sha256: null, deleted: true }).success).toBe(true);
    expect(replicationMessageSchema.safeParse({ ...base, version: 0 }).success).toBe(false);
    expect(replicationMessageSchema.safeParse({ ...base, sha256: 'XYZ' }).success).toBe(false);
    const { contentType: _, ...withoutContentType } = base;
    expect(replicationMessageSchema.safeParse(withoutContentType).success).toBe(false);
  });
});
