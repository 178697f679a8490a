/** Lambda entry of the lost-notification sweep (createPendingSweepHandler in pending-sweep-handler.ts). */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { pendingSweepConfigSchema, readConfig } from '../adapters/runtime-config.js';
import { makePendingSweepDeps } from '../adapters/wiring.js';
import { createPendingSweepHandler } from './pending-sweep-handler.js';

const config = readConfig(pendingSweepConfigSchema);
const telemetry = makeTelemetry(makeLogger('pending-sweep'), makeMetrics('pending-sweep'));
export const handler = createPendingSweepHandler({
  ...makePendingSweepDeps(config, telemetry.metrics),
  telemetry,
  options: config.graceMs === undefined ? undefined : { graceMs: config.graceMs },
});
