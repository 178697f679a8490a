/**
 * The agent's AWS clients name it in every request's user agent (`app/mirror-agent-<target>`):
 * CloudTrail's userAgent tells its calls apart, and the local stack's emulators attribute them to
 * it (test/integration/observed-grants.test.ts). The request is captured before it leaves.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it, vi } from 'vitest';
import { agentAppId, destroyClients, makeClients } from '../../../agent/aws.ts';
import type { AgentConfig } from '../../../agent/config.ts';

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
});
