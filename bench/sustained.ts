/**
 * (e) Sustained: uploads started at a fixed rate (open loop: a slow stack does not slow the
 * clients) for a fixed time; per target, the lag of each file (its PUT answered, to seen at
 * the target) at p50/p95/p99, and the backlog (uploaded, not yet at the target) at half
 * time and at the end: a backlog that grows means the rate is not sustainable.
 */
import { sleep } from '../common/retry.ts';
import { makeFiles, targetProbes, uploadOne, watchTargets } from './load.ts';
import type { BenchStack } from './stack.ts';
import { quantile } from './stats.ts';

export interface TargetLag {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  /** Uploaded but not yet seen at the target, at half time and at the end of the uploads. */
  readonly backlogHalf: number;
  readonly backlogEnd: number;
  /** Uploads the stack refused (still 503 or 429 after the client's retries). */
  readonly refused: number;
}

export async function sustainedRun(
  stack: BenchStack,
  options: { rate: number; seconds: number; run: number },
): Promise<Map<string, TargetLag>> {
  const prefix = `bench/sustained-${options.run}`;
  const files = makeFiles(prefix, options.rate * options.seconds, 64 * 1024);
  const putDone = new Map<string, number>();
  const expected = new Set<string>();
  let uploadsOver = false;
  let refused = 0;
  const backlog = (seen: ReadonlyMap<string, ReadonlyMap<string, number>>) =>
    new Map([...seen].map(([id, m]) => [id, [...putDone.keys()].filter((p) => !m.has(p)).length]));
  let live: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map();
  let half: Map<string, number> | undefined;
  const started = performance.now();
  const watching = watchTargets(targetProbes(stack, true), prefix, expected, {
    intervalMs: 100,
    // Long enough for a slow stack's last uploads to land: lag is what is measured.
    timeoutMs: (options.seconds + 600) * 1000,
    stopWhen: () => uploadsOver,
    onPoll: (seen) => {
      live = seen;
      if (half === undefined && performance.now() >= started + (options.seconds * 1000) / 2)
        half = backlog(seen);
    },
  });
  const uploads = files.map(async (file, i) => {
    await sleep(Math.max(0, started + (i * 1000) / options.rate - performance.now()));
    expected.add(file.path);
    // An upload the stack sheds (503 after the client's retries) is counted, not waited for.
    const answered = await uploadOne(stack, file).catch(() => undefined);
    if (answered === undefined) {
      refused++;
      expected.delete(file.path);
    } else putDone.set(file.path, answered);
  });
  await Promise.all(uploads);
  const end = backlog(live);
  uploadsOver = true;
  const seen = await watching;
  const out = new Map<string, TargetLag>();
  for (const [id, m] of seen) {
    const lags = [...putDone].map(([path, put]) => ((m.get(path) ?? Number.POSITIVE_INFINITY) - put) / 1000);
    out.set(id, {
      p50: quantile(lags, 0.5),
      p95: quantile(lags, 0.95),
      p99: quantile(lags, 0.99),
      backlogHalf: half?.get(id) ?? Number.NaN,
      backlogEnd: end.get(id) ?? Number.NaN,
      refused,
    });
  }
  return out;
}
