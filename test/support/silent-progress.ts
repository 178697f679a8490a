import type { ProgressSink } from '../../cli/progress.ts';

/** A progress sink that discards everything, for tests that do not look at progress. */
export const silentProgress: ProgressSink = { phase() {}, bytes() {}, stop() {} };
