/**
 * `npm run bench`: speed and memory figures, each beside a peer measured in the same run.
 *   1. stream hashing of a file vs `openssl dgst -sha256` (the ceiling on this machine)
 *   2. blob verification through the S3 emulator vs a plain GET of the same object (transfer only)
 *   3. commits per second on the DynamoDB emulator: distinct paths vs one contended path
 *   4. gate: the local stack with the DynamoDB/SQS gates on and off (bench/gate.ts)
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { hashFile } from '../common/sha256-node.ts';
import { commitVersion } from '../functions/core/commit.js';
import { makeWorld, randomBytes } from '../test/support/domain.js';
import { startEmulators } from '../test/support/emulators.js';
import { benchGate } from './gate.ts';

const MiB = 1024 * 1024;
const fileMiB = Number(process.env.BENCH_FILE_MIB ?? 512);
const blobMiB = Number(process.env.BENCH_BLOB_MIB ?? 256);

async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number; peakRssMiB: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  const start = process.hrtime.bigint();
  const result = await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  clearInterval(timer);
  return { result, seconds, peakRssMiB: Math.round(peak / MiB) };
}

const rate = (bytes: number, s: number) => `${(bytes / s / 1e9).toFixed(2)} GB/s`;

async function main() {
  const emulators = await startEmulators();
  try {
    const world = await makeWorld(emulators);
    const file = join(emulators.dir, 'bench.bin');
    const bytes = randomBytes(fileMiB * MiB);
    await writeFile(file, bytes);

    const ours = await timed(() => hashFile(file));
    const peer = await timed(async () => execFileSync('openssl', ['dgst', '-sha256', file]).toString());
    if (!peer.result.includes(ours.result.sha256)) throw new Error('hash mismatch with openssl');
    console.log(
      `hash ${fileMiB} MiB file: ours ${rate(bytes.length, ours.seconds)} (peak RSS ${ours.peakRssMiB} MiB), openssl ${rate(bytes.length, peer.seconds)}; ratio ours/openssl = ${(peer.seconds / ours.seconds).toFixed(2)}`,
    );

    const blob = bytes.subarray(0, blobMiB * MiB);
    const key = `blobs/${'0'.repeat(64)}`;
    await emulators.s3.send(new PutObjectCommand({ Bucket: world.originBucket, Key: key, Body: blob }));
    const transfer = await timed(async () => {
      const out = await emulators.s3.send(new GetObjectCommand({ Bucket: world.originBucket, Key: key }));
      let n = 0;
      for await (const chunk of out.Body as AsyncIterable<Uint8Array>) n += chunk.byteLength;
      return n;
    });
    const verify = await timed(() => world.deps.blobs.hash('0'.repeat(64)));
    console.log(
      `verify ${blobMiB} MiB blob via S3 emulator: ${rate(blob.length, verify.seconds)} (peak RSS ${verify.peakRssMiB} MiB); plain GET ${rate(blob.length, transfer.seconds)}; hashing keeps ${((transfer.seconds / verify.seconds) * 100).toFixed(0)}% of transfer speed`,
    );

    for (const [label, pathOf] of [
      ['distinct paths', (i: number) => `bench/${i}.jpg`],
      ['one contended path', () => 'bench/hot.jpg'],
    ] as const) {
      const n = 100;
      const run = await timed(() =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            commitVersion(world.deps, {
              uploadId: randomUUID(),
              path: pathOf(i),
              sha256: 'a'.repeat(64),
              size: 1,
              contentType: 'image/jpeg',
              deleted: false,
              reserveOnUpload: false,
            }),
          ),
        ),
      );
      console.log(
        `commit ${n} concurrent (${label}), dynalite, K=${world.deps.feedShards}: ${(n / run.seconds).toFixed(0)} commits/s`,
      );
    }
    await rm(file);
  } finally {
    await emulators.stop();
  }
}

// `npm run bench -- gate` runs the gate section only.
const only = process.argv[2];
if (only === undefined) await main();
if (only === undefined || only === 'gate') await benchGate();
