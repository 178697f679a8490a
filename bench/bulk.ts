/**
 * (c) Bulk: N files of 64 KiB uploaded through the API by 16 clients, time until both S3
 * targets hold all, against `rclone copy --transfers 16` of the same blobs from the origin
 * bucket into two fresh buckets (both copies at once, as the two targets are served).
 * (f) CPU per upload of the `npm start` tree and the agent, peak RSS of each.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blobKey } from '../contracts/ledger-keys.ts';
import { sha256Hex } from '../test/support/local-api.ts';
import { type BenchFile, makeFiles, targetProbes, uploadAll, watchTargets } from './load.ts';
import { cpuSeconds, RssPeak, treePids } from './proc.ts';
import type { Rclone } from './rclone.ts';
import type { BenchStack } from './stack.ts';

const CLIENTS = 16;
const MiB = 1024 * 1024;

export interface BulkRun {
  /** Seconds from the first upload until both S3 targets hold every file. */
  readonly seconds: number;
  /** Seconds until the agent's folder holds every file too (NaN without an agent). */
  readonly agentSeconds: number;
  readonly rcloneSeconds: number;
  /** CPU milliseconds per upload: the `npm start` tree, and the agent process. */
  readonly stackCpuMs: number;
  readonly agentCpuMs: number;
  readonly stackPeakMiB: number;
  readonly agentPeakMiB: number;
}

/**
 * With MIRROR_OBSERVE_REQUESTS=<file> (bin/local.ts), the stack writes the requests its emulators
 * accepted, by caller and operation, every second: read (fresh) before the uploads and after.
 */
async function observedRequests(): Promise<Record<string, number> | undefined> {
  const file = process.env.MIRROR_OBSERVE_REQUESTS;
  if (!file) return undefined;
  await new Promise((resolve) => setTimeout(resolve, 2500));
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

/** Requests per upload by caller and operation, once the agent's last deletes have landed. */
async function reportRequests(before: Record<string, number> | undefined, uploads: number): Promise<void> {
  if (before === undefined) return;
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const after = (await observedRequests()) ?? {};
  const byCaller = new Map<string, [string, number][]>();
  for (const [key, count] of Object.entries(after)) {
    const n = count - (before[key] ?? 0);
    if (n <= 0) continue;
    const [caller = '', operation = ''] = key.split(' ');
    byCaller.set(caller, [...(byCaller.get(caller) ?? []), [operation, n / uploads]]);
  }
  const lines = [...byCaller.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([caller, ops]) => {
      const total = ops.reduce((sum, [, n]) => sum + n, 0);
      const each = ops
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([op, n]) => `${op} ${n.toFixed(2)}`)
        .join(', ');
      return `  ${caller}: ${total.toFixed(2)} (${each})`;
    });
  const all = [...byCaller.values()].flat().reduce((sum, [, n]) => sum + n, 0);
  console.error(
    `requests per upload by caller (${uploads} uploads), ${all.toFixed(1)} in all:\n${lines.join('\n')}`,
  );
}

async function rclonePeer(
  stack: BenchStack,
  rclone: Rclone,
  files: readonly BenchFile[],
  run: number,
): Promise<number> {
  const list = join(stack.dataDir, `bulk-${run}.files`);
  await writeFile(list, `${files.map((f) => blobKey(sha256Hex(f.bytes))).join('\n')}\n`);
  const buckets = [`rclone-bulk-${run}-a`, `rclone-bulk-${run}-b`];
  for (const b of buckets) await rclone('mkdir', `loc:${b}`);
  const origin = `loc:${stack.endpoints.originBucket}`;
  const started = performance.now();
  await Promise.all(
    buckets.map((b) =>
      rclone('copy', '--transfers', '16', '--no-traverse', '--files-from', list, origin, `loc:${b}`),
    ),
  );
  return (performance.now() - started) / 1000;
}

export async function bulkRun(
  stack: BenchStack,
  rclone: Rclone,
  options: { files: number; run: number; timeoutMs: number },
): Promise<BulkRun> {
  const prefix = `bench/bulk-${options.run}`;
  const files = makeFiles(prefix, options.files, 64 * 1024);
  const expected = new Set(files.map((f) => f.path));
  const s3 = targetProbes(stack, false);
  const agentProbe = targetProbes(stack, true).filter((p) => !s3.includes(p) && p.id === stack.agent?.target);
  const requests0 = await observedRequests();
  const stackRss = new RssPeak(stack.pid);
  const agentRss = stack.agent ? new RssPeak(stack.agent.pid) : undefined;
  const cpu0 = cpuSeconds(treePids(stack.pid));
  const agentCpu0 = stack.agent ? cpuSeconds(treePids(stack.agent.pid)) : 0;
  const started = performance.now();
  const uploading = uploadAll(stack, files, CLIENTS);
  // Every 250 ms, not 100: each poll lists up to N keys in each bucket on the stack's own S3, whose
  // CPU counts in the stack's figure (at 100 ms the listings were about 9% of the main thread's time
  // in a profile of this run); 250 ms is within 1% of a bulk that takes tens of seconds.
  const seen = await watchTargets(s3, prefix, expected, { intervalMs: 250, timeoutMs: options.timeoutMs });
  await uploading;
  const last = Math.max(
    ...[...seen.values()].flatMap((m) => [
      ...m.values(),
      m.size < expected.size ? Number.POSITIVE_INFINITY : 0,
    ]),
  );
  const seconds = (last - started) / 1000;
  const agentSeen = await watchTargets(agentProbe, prefix, expected, {
    intervalMs: 200,
    timeoutMs: options.timeoutMs,
  });
  const agentTimes = [...(agentSeen.values().next().value ?? new Map()).values()] as number[];
  const agentSeconds =
    agentProbe.length === 0
      ? Number.NaN
      : agentTimes.length < expected.size
        ? Number.POSITIVE_INFINITY
        : (Math.max(...agentTimes) - started) / 1000;
  const stackCpuMs = ((cpuSeconds(treePids(stack.pid)) - cpu0) * 1000) / files.length;
  const agentCpuMs = stack.agent
    ? ((cpuSeconds(treePids(stack.agent.pid)) - agentCpu0) * 1000) / files.length
    : Number.NaN;
  const stackPeakMiB = stackRss.stop() / MiB;
  const agentPeakMiB = (agentRss?.stop() ?? Number.NaN) / MiB;
  await reportRequests(requests0, files.length);
  const rcloneSeconds = await rclonePeer(stack, rclone, files, options.run);
  return { seconds, agentSeconds, rcloneSeconds, stackCpuMs, agentCpuMs, stackPeakMiB, agentPeakMiB };
}
