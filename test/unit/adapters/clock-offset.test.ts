import { describe, expect, it } from 'vitest';
import { readRuntimeConfig } from '../../../functions/adapters/runtime-config.js';
import { offsetClock, systemClock } from '../../../functions/adapters/wiring.js';

const base = {
  MIRROR_TABLE: 'mirror-ledger',
  MIRROR_ORIGIN_BUCKET: 'mirror-origin',
  MIRROR_TARGETS: '[]',
};

describe('MIRROR_CLOCK_OFFSET_MS (local stack only)', () => {
  it('shifts the functions clock when DynamoDB is an emulator', () => {
    const config = readRuntimeConfig({
      ...base,
      MIRROR_CLOCK_OFFSET_MS: String(-2 * 86_400_000),
      AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:4567',
    });
    expect(config.clockOffsetMs).toBe(-2 * 86_400_000);
    const shifted = offsetClock(config.clockOffsetMs).now().getTime();
    expect(Math.abs(shifted - (Date.now() - 2 * 86_400_000))).toBeLessThan(1000);
  });

  it('is refused on AWS (no emulator endpoint), and absent means the system clock', () => {
    expect(() => readRuntimeConfig({ ...base, MIRROR_CLOCK_OFFSET_MS: '1000' })).toThrow(
      /MIRROR_CLOCK_OFFSET_MS: only for the local stack/,
    );
    expect(readRuntimeConfig(base).clockOffsetMs).toBe(0);
    expect(offsetClock(0)).toBe(systemClock);
  });
});
