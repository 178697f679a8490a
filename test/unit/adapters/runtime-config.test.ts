/** Each handler reads only the variables it uses, and a missing one is named. */
import { describe, expect, it } from 'vitest';
import {
  apiConfigSchema,
  ingestConfigSchema,
  lagMonitorConfigSchema,
  readConfig,
  reconcileConfigSchema,
  replicateConfigSchema,
} from '../../../functions/adapters/runtime-config.js';

const targets = JSON.stringify([
  { id: 'alpha', kind: 's3', queueUrl: 'https://sqs/alpha', bucket: 'alpha-bucket', region: 'eu-west-1' },
  { id: 'dc1', kind: 'pull', queueUrl: 'https://sqs/dc1' },
]);
const full = { MIRROR_TABLE: 'ledger', MIRROR_ORIGIN_BUCKET: 'origin', MIRROR_TARGETS: targets };

describe('handler configuration', () => {
  it('names a missing variable, every one at once', () => {
    expect(() => readConfig(apiConfigSchema, { MIRROR_TARGETS: targets })).toThrow(
      /MIRROR_TABLE: is not set\n {2}MIRROR_ORIGIN_BUCKET: is not set/,
    );
    expect(() => readConfig(ingestConfigSchema, { ...full, MIRROR_TARGETS: '[' })).toThrow(
      /MIRROR_TARGETS: is not valid JSON/,
    );
  });

  it('asks each handler only for what it uses', () => {
    // The lag monitor touches no bucket; only the API reads the upload limits.
    const lag = readConfig(lagMonitorConfigSchema, { MIRROR_TABLE: 'ledger', MIRROR_TARGETS: targets });
    expect(lag).toMatchObject({ table: 'ledger', feedShards: 4, clockOffsetMs: 0 });
    expect(lag).not.toHaveProperty('originBucket');
    expect(readConfig(reconcileConfigSchema, full)).not.toHaveProperty('maxUploadBytes');
    expect(readConfig(apiConfigSchema, { ...full, MIRROR_MAX_UPLOAD_BYTES: '1024' })).toMatchObject({
      maxUploadBytes: 1024,
      contentTypes: ['*/*'],
      presignTtlSeconds: 900,
    });
  });

  it('gives replicate its one S3 target, and refuses a target id that is not one', () => {
    const config = readConfig(replicateConfigSchema, { ...full, MIRROR_TARGET_ID: 'alpha' });
    expect(config.target).toMatchObject({ id: 'alpha', bucket: 'alpha-bucket', keyPrefix: '' });
    expect(() => readConfig(replicateConfigSchema, full)).toThrow(/MIRROR_TARGET_ID: is not set/);
    expect(() => readConfig(replicateConfigSchema, { ...full, MIRROR_TARGET_ID: 'dc1' })).toThrow(
      /MIRROR_TARGET_ID: "dc1" must name an S3 target/,
    );
  });
});
