/** (a) Stream SHA-256 of a file (common/sha256-node.ts hashFile) against `openssl dgst -sha256`. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { hashFile } from '../common/sha256-node.ts';
import { type Row, ratios, show, spread, timed } from './stats.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function writeRandom(file: string, bytes: number): Promise<void> {
  const handle = await open(file, 'w');
  try {
    const block = randomBytes(16 * MiB);
    for (let done = 0; done < bytes; done += block.length)
      await handle.write(block, 0, Math.min(block.length, bytes - done));
  } finally {
    await handle.close();
  }
}

export async function benchHash(options: { file: string; mib: number; runs: number }): Promise<Row[]> {
  const bytes = options.mib * MiB;
  await writeRandom(options.file, bytes);
  try {
    // One untimed pass of each puts the file in the page cache for both.
    await hashFile(options.file);
    const ours: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < options.runs; i++) {
      const mine = await timed(() => hashFile(options.file));
      const theirs = await timed(() => run('openssl', ['dgst', '-sha256', options.file]));
      if (!theirs.result.stdout.includes(mine.result.sha256)) throw new Error('hash mismatch with openssl');
      ours.push(bytes / mine.seconds / 1e9);
      peer.push(bytes / theirs.seconds / 1e9);
    }
    const ratio = spread(ratios(ours, peer, false));
    return [
      {
        figure: `stream SHA-256, ${options.mib} MiB file (GB/s)`,
        measured: show(spread(ours), 'GB/s'),
        peer: `openssl dgst -sha256: ${show(spread(peer), 'GB/s')}`,
        ratio: show(ratio, 'x'),
        goal: '>= 1.0x',
        met: ratio.median >= 1,
      },
    ];
  } finally {
    await rm(options.file, { force: true });
  }
}
