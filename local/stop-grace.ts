/**
 * How long the local stack's stop waits for work in progress. A scheduled reconcile of a large
 * mirror runs for minutes, and `npm start` must still end on SIGTERM (local/README.md): after the
 * grace the work is cut off, as Lambda may cut off an invocation, and resumes from its checkpoint
 * or its queue on the next start.
 */
export const STOP_GRACE_MS = 10_000;

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
