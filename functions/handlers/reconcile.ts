/** Lambda entry of reconcile (createReconcileHandler in reconcile-handler.ts). */
import { makeLogger, makeMetrics, makeTelemetry } from '../adapters/powertools.js';
import { readConfig, reconcileConfigSchema } from '../adapters/runtime-config.js';
import { makeReconcileDeps } from '../adapters/wiring.js';
import { createReconcileHandler } from './reconcile-handler.js';

const config = readConfig(reconcileConfigSchema);
const telemetry = makeTelemetry(makeLogger('reconcile'), makeMetrics('reconcile'));
export const handler = createReconcileHandler({ ...makeReconcileDeps(config, telemetry.metrics), telemetry });
