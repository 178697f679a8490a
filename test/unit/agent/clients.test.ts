/**
 * The agent's AWS clients name it in every request's user agent (`app/mirror-agent-<target>`):
 * CloudTrail's userAgent tells its calls apart, and the local stack's emulators attribute them to
 * it (test/integration/observed-grants.test.ts). The request is captured before it leaves.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it, vi } from 'vitest';
import { agentAppId, destroyClients, makeClients } from '../../../agent/aws.ts';
import type { AgentConfig } from '../../../agent/config.ts';
import type { ServerClock } from '../../../agent/server-clock.ts';
import { useSharedCredentialsFiles } from '../../support/aws-shared-files.ts';

/** The longest target id the topology admits (3-32 characters). */
const TARGET = `dc-${'x'.repeat(29)}`;

const config = {
  targetId: TARGET,
  region: 'eu-west-1',
  aws: {
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    s3Endpoint: 'http://127.0.0.1:9',
    s3ForcePathStyle: true,
    sqsEndpoint: 'http://127.0.0.1:9',
    dynamodbEndpoint: 'http://127.0.0.1:9',
  },
} as unknown as AgentConfig;

type Client = { middlewareStack: { add: (...args: never[]) => void } };

/** The user-agent header the client's next request carries (answered here, not sent). */
function capture(client: Client): () => string {
  let seen = '';
  (client.middlewareStack.add as (mw: unknown, options: unknown) => void)(
    () => async (args: { request: { headers: Record<string, string> } }) => {
      seen = args.request.headers['user-agent'] ?? '';
      return { output: { $metadata: {} }, response: {} };
    },
    { step: 'finalizeRequest', name: 'captureUserAgent' },
  );
  return () => seen;
}

describe('the agent’s clients', () => {
  it('every request names the agent and its target, within the SDK’s 50-character app id', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const clients = makeClients(config);
    try {
      const s3 = capture(clients.s3 as unknown as Client);
      const sqs = capture(clients.sqs as unknown as Client);
      const dynamo = capture(clients.dynamo as unknown as Client);
      await clients.s3.send(new HeadObjectCommand({ Bucket: 'b', Key: 'k' }));
      await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: 'http://127.0.0.1:9/0/q' }));
      await clients.dynamo.send(new GetItemCommand({ TableName: 't', Key: { pk: { S: 'P#a' } } }));
      for (const userAgent of [s3(), sqs(), dynamo()]) {
        expect(userAgent.split(' ')).toContain(`app/${agentAppId(TARGET)}`);
      }
      expect(agentAppId(TARGET).length).toBeLessThanOrEqual(50);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      destroyClients(clients);
      warn.mockRestore();
    }
  });

  it("reads the servers' clock in DynamoDB's answers, errors included: a host 10 minutes off writes server time", async () => {
    const clients = makeClients(config);
    const ahead = 10 * 60_000;
    let status = 200;
    // The wire, answered here: DynamoDB's Date header, 10 minutes ahead of this host.
    (clients.dynamo.config as { requestHandler: unknown }).requestHandler = {
      handle: async () => ({
        response: {
          statusCode: status,
          reason: undefined,
          headers: {
            date: new Date(Date.now() + ahead).toUTCString(),
            'content-type': 'application/x-amz-json-1.0',
          },
          body: Readable.from([
            Buffer.from(
              status === 200
                ? '{}'
                : '{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"}',
            ),
          ]),
        },
      }),
      updateHttpClientConfig: () => undefined,
      httpHandlerConfigs: () => ({}),
    };
    try {
      const clock = clients.clock as ServerClock;
      expect(clock.observed).toBe(false);
      await clients.dynamo.send(new GetItemCommand({ TableName: 't', Key: { pk: { S: 'P#a' } } }));
      expect(clock.observed).toBe(true);
      expect(Math.abs(clock.offsetMs - ahead)).toBeLessThan(2000);
      expect(Math.abs(clock.now().getTime() - (Date.now() + ahead))).toBeLessThan(2000);
      // An error answer tells the time too (a host far off may be refused before anything else).
      status = 400;
      clock.observe(new Date().toUTCString());
      expect(clock.offsetMs).toBe(0);
      await expect(
        clients.dynamo.send(new GetItemCommand({ TableName: 't', Key: { pk: { S: 'P#a' } } })),
      ).rejects.toThrow();
      expect(Math.abs(clock.offsetMs - ahead)).toBeLessThan(2000);
    } finally {
      destroyClients(clients);
    }
  });
});

describe('credentials from the shared files (docs/agent.md, "fixing the role or the file needs no restart")', () => {
  it('a credentials file written after a failed attempt is read on the next one, by every client', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-creds-'));
    const restoreEnv = useSharedCredentialsFiles(dir);
    const clients = makeClients({ ...config, aws: { ...config.aws, credentials: undefined } });
    try {
      const resolve = (client: { config: { credentials: () => Promise<{ accessKeyId: string }> } }) =>
        client.config.credentials();
      await expect(resolve(clients.dynamo)).rejects.toThrow();
      await writeFile(join(dir, 'aws-config'), '[profile media-mirror]\nregion = eu-west-1\n');
      await writeFile(
        join(dir, 'aws-credentials'),
        '[media-mirror]\naws_access_key_id = AKIDFIXED\naws_secret_access_key = fixed-secret\n',
      );
      expect((await resolve(clients.dynamo)).accessKeyId).toBe('AKIDFIXED');
      expect((await resolve(clients.s3)).accessKeyId).toBe('AKIDFIXED');
      expect((await resolve(clients.sqs)).accessKeyId).toBe('AKIDFIXED');
    } finally {
      destroyClients(clients);
      restoreEnv();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
