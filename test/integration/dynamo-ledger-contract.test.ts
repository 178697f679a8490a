/** The ledger contract (test/support/ledger-contract.ts) on DynamoLedger, on the gated DynamoDB. */
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll } from 'vitest';
import { agentRowKey } from '../../contracts/ledger-keys.js';
import { DynamoLedger } from '../../functions/adapters/dynamo-ledger.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';
import { ledgerContract } from '../support/ledger-contract.js';

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

ledgerContract(
  'DynamoLedger',
  async () => {
    const table = await emulators.createTable();
    const db = DynamoDBDocumentClient.from(emulators.dynamo);
    return {
      ledger: new DynamoLedger(emulators.dynamo, table),
      // The agent's own row, as agent/ writes it with its own client.
      async recordAgentHeartbeat(targetId, heartbeatAt, conditions = [], rebuilding = undefined) {
        const rebuildingFields = rebuilding && {
          rebuilding: true,
          ...(rebuilding.since === undefined ? {} : { rebuildingSince: rebuilding.since }),
        };
        await db.send(
          new PutCommand({
            TableName: table,
            Item: {
              ...agentRowKey(targetId),
              targetId,
              heartbeatAt,
              conditions: [...conditions],
              ...rebuildingFields,
            },
          }),
        );
      },
    };
  },
  // The emulator serialises every transaction: contention is slow there, keep it small.
  { writers: 8 },
);
