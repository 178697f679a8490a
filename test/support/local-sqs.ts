/** A local SQS (fauxqs) of a test file's own: started before its tests, stopped after them. */
import { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll } from 'vitest';
import { LOCAL_CREDENTIALS, type RunningEmulator, startSqs } from '../../local/emulators.ts';

export interface LocalSqs {
  readonly emulator: RunningEmulator;
  /** An SDK client of the emulator, with the local stack's credentials. */
  readonly client: SQSClient;
}

export function useLocalSqs(region = 'us-east-1'): LocalSqs {
  let emulator: RunningEmulator | undefined;
  let client: SQSClient | undefined;
  beforeAll(async () => {
    emulator = await startSqs({ port: 0, region });
    client = new SQSClient({ region, endpoint: emulator.endpoint, credentials: { ...LOCAL_CREDENTIALS } });
  });
  afterAll(async () => {
    client?.destroy();
    await emulator?.stop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the local SQS is started in beforeAll: use it inside tests');
    return value;
  };
  return {
    get emulator() {
      return started(emulator);
    },
    get client() {
      return started(client);
    },
  };
}
