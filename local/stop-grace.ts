/**
 * How long the local stack's stop waits for work in progress. A scheduled reconcile of a large
 * mirror runs for minutes, and `npm start` must still end on SIGTERM (local/README.md): after the
 * grace the work is cut off, as Lambda may cut off an invocation, and resumes from its checkpoint
 * or its queue on the next start.
 */
export const STOP_GRACE_MS = 10_000;

/**
 * One grace for a whole stop: each step that waits for work gets what is left of it. Each taking
 * a grace of its own, a reconcile in progress was waited for by the scheduler (10 s), then by its
 * function (10 s more), and a stop took ~26 s (probe).
 */
export class StopDeadline {
  private readonly at: number;
  constructor(
    graceMs: number = STOP_GRACE_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.at = now() + graceMs;
  }
  /** Milliseconds left of the grace; 0 once it has passed. */
  leftMs(): number {
    return Math.max(0, this.at - this.now());
  }
}

/** As settled as `promises` get within `ms`; never longer. */
export async function settledWithin(
  promises: Iterable<Promise<unknown> | undefined>,
  ms: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([Promise.allSettled([...promises]), grace]);
  clearTimeout(timer);
}
