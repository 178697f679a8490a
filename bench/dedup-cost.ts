/**
 * What a deduplicated upload costs: N uploads of content the mirror already holds, each to a
 * new path, through the web client module in Node against the local stack. Reports per size:
 * the median and 90th-percentile wall time of one upload (the whole-file SHA-256 is passed in,
 * as the CLI does, so the figure is the protocol's cost, not the hashing's), API requests and
 * storage requests per upload, the median time of each kind of API request, bytes sent, and the
 * ranged reads the API made of the stored blob (its `ProofRangeReads` metric, read from the
 * functions' EMF output).
 *
 *   npx tsx bench/dedup-cost.ts            # N=50, 1 MiB and 64 MiB
 *   BENCH_DEDUP_N=10 BENCH_DEDUP_MIB=1,8 npx tsx bench/dedup-cost.ts
 */
import { randomBytes } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../common/retry.ts';
import { parseEmfLine } from '../local/metrics.ts';
import { startSandbox } from '../local/sandbox.ts';
import { sha256Hex } from '../test/support/local-api.ts';
import { uploadFile } from '../web/client/upload-file.ts';

const MiB = 1024 * 1024;
const n = Number(process.env.BENCH_DEDUP_N ?? 50);
const sizesMiB = (process.env.BENCH_DEDUP_MIB ?? '1,64').split(',').map(Number);

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** Totals of the functions' EMF metrics, by name. */
const emf = new Map<string, number>();
const total = (name: string) => emf.get(name) ?? 0;

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'mirror-bench-dedup-'));
  const sandbox = await startSandbox({
    dataDir,
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    webDir: null,
    schedules: false,
    functionLog: (_name, line) => {
      for (const sample of parseEmfLine(line) ?? []) emf.set(sample.name, total(sample.name) + sample.value);
    },
    polling: { waitTimeSeconds: 1 },
  });
  const { api, token } = sandbox.endpoints;
  try {
    for (const mib of sizesMiB) {
      const file = join(dataDir, `bench-${mib}.bin`);
      const bytes = randomBytes(mib * MiB);
      await writeFile(file, bytes);
      const blob = await openAsBlob(file);
      const sha256 = sha256Hex(bytes);
      const first = await uploadFile(blob, {
        api,
        token,
        path: `bench/${mib}/original.bin`,
        contentType: 'application/octet-stream',
        sha256,
        workerUrl: null,
        pollIntervalMs: 50,
      });
      if (first.status !== 'committed') throw new Error(`the first upload ended ${first.status}`);

      let apiRequests = 0;
      let storageRequests = 0;
      let bytesSent = 0;
      let deduplicated = 0;
      const perKind = new Map<string, number[]>();
      const counting: typeof fetch = async (input, init) => {
        const url = String(input instanceof Request ? input.url : input);
        if (!url.startsWith(api)) {
          storageRequests++;
          return fetch(input, init);
        }
        apiRequests++;
        const kind = `${init?.method ?? 'GET'} ${new URL(url).pathname.replace(/[0-9a-f-]{36}/, '{id}')}`;
        const started = performance.now();
        const response = await fetch(input, init);
        perKind.set(kind, [...(perKind.get(kind) ?? []), performance.now() - started]);
        return response;
      };
      const readsBefore = total('ProofRangeReads');
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const started = performance.now();
        const result = await uploadFile(blob, {
          api,
          token,
          path: `bench/${mib}/copy-${i}.bin`,
          contentType: 'application/octet-stream',
          sha256,
          workerUrl: null,
          fetch: counting,
          pollIntervalMs: 50,
        });
        times.push(performance.now() - started);
        if (result.status !== 'committed') throw new Error(`copy ${i} ended ${result.status}`);
        if (result.deduplicated) deduplicated++;
        bytesSent += result.bytesSent;
      }
      // EMF lines come asynchronously from the function workers.
      await sleep(500);
      const rangedReads = total('ProofRangeReads') - readsBefore;
      times.sort((a, b) => a - b);
      const kinds = [...perKind]
        .map(
          ([kind, ms]) =>
            `${kind} ${quantile(
              [...ms].sort((a, b) => a - b),
              0.5,
            ).toFixed(1)} ms`,
        )
        .join(', ');
      console.log(
        `${mib} MiB x ${n}: median ${quantile(times, 0.5).toFixed(1)} ms, p90 ${quantile(times, 0.9).toFixed(1)} ms; ` +
          `per upload ${(apiRequests / n).toFixed(2)} API requests, ${(storageRequests / n).toFixed(2)} storage requests, ` +
          `${(rangedReads / n).toFixed(2)} ranged reads of the stored blob, ${Math.round(bytesSent / n)} bytes sent; ` +
          `${deduplicated}/${n} deduplicated; median per request: ${kinds}`,
      );
    }
  } finally {
    await sandbox.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
