/** Lambda entry of the lag monitor (createLagMonitorHandler in lag-monitor-handler.ts). */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { lagMonitorConfigSchema, readConfig } from '../adapters/runtime-config.js';
import { makeLagMonitorDeps } from '../adapters/wiring.js';
import { createLagMonitorHandler } from './lag-monitor-handler.js';

const config = readConfig(lagMonitorConfigSchema);
const telemetry = makeTelemetry(makeLogger('lag-monitor'), makeMetrics('lag-monitor'));
export const handler = createLagMonitorHandler({ ...makeLagMonitorDeps(config), telemetry });
