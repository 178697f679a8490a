/**
 * Every committed file whose targets do not all hold it yet, read by one loop a few at a time:
 * an upload frees its slot at its commit, so a slow or stopped target holds up no other upload,
 * and a page of many files does not poll the API once a second each.
 */
import { sleep } from '../../common/retry.ts';

/** A file the page follows: true once every target holds `version`. */
export interface Watched {
  checkTargets(version: number): Promise<boolean>;
  /** The page stops reading the file's targets: FOLLOW_MS passed and some target still lacks it. */
  stopFollowing?(): void;
}

export interface WatchClock {
  /** Milliseconds that only run forward: a wall clock stepped back 2 hours (NTP, a resumed VM) stopped the reads for 2 hours. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const pageClock: WatchClock = { now: () => performance.now(), sleep: (ms) => sleep(ms) };

/** Status reads in flight at once, and the loop's pause between rounds. */
const WATCH_READS_AT_ONCE = 4;
const WATCH_TICK_MS = 250;

/**
 * How long a file is followed. A target that refused the file (failed until a new version) or a
 * file deleted since never holds it: such files were read every 5 s for as long as the page stayed
 * open, an API call (a Lambda invocation) each, up to 16 a second once enough had piled up.
 */
export const FOLLOW_MS = 30 * 60_000;

export class TargetWatch<T extends Watched> {
  private readonly watching = new Map<T, { version: number; since: number; next: number }>();
  private looping = false;

  constructor(private readonly clock: WatchClock = pageClock) {}

  add(item: T, version: number): void {
    const now = this.clock.now();
    this.watching.set(item, { version, since: now, next: now });
    if (!this.looping) void this.loop();
  }

  get size(): number {
    return this.watching.size;
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (this.watching.size > 0) {
        const now = this.clock.now();
        const due = [...this.watching.entries()]
          .filter(([, w]) => w.next <= now)
          .sort(([, a], [, b]) => a.next - b.next)
          .slice(0, WATCH_READS_AT_ONCE);
        await Promise.all(
          due.map(async ([item, w]) => {
            if (await item.checkTargets(w.version)) this.watching.delete(item);
            else {
              // Every second for a minute, then every 5 s: a slow target is still shown live.
              const t = this.clock.now();
              w.next = t + (t - w.since < 60_000 ? 1000 : 5000);
              if (t - w.since >= FOLLOW_MS) {
                this.watching.delete(item);
                item.stopFollowing?.();
              }
            }
          }),
        );
        await this.clock.sleep(WATCH_TICK_MS);
      }
    } finally {
      this.looping = false;
    }
  }
}
