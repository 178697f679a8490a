/**
 * The API's time, for a SigV4 signer on a computer whose clock is off: API Gateway refuses a
 * signature dated 5 minutes or more from its own clock (403 "Signature expired"), so a laptop
 * minutes fast, or stepped by NTP mid-run, would have every request refused. A signer dates its
 * signatures with `now()` and hands `observeDate` to the client (`RequestSigner.observeDate`),
 * which gives it each answer's `Date` header and resends a 403 once when the clock was corrected.
 * The CLI's `--auth iam` (cli/iam-auth.ts) and a page's signer (docs/browser.md, "Tokens") share
 * it. A page reads `Date` across origins only because the API exposes it (`API_EXPOSED_HEADERS`).
 */

/**
 * Past this gap between this computer's clock and an answer's `Date`, sign with the API's time: the
 * AWS SDK's threshold (`systemClockOffset`), as API Gateway refuses a signature 5 minutes off.
 */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface ApiClock {
  /** The time to date a signature with: this computer's clock, corrected once an answer showed it off. */
  now(): Date;
  /** An answer's `Date` header: true when it moved the clock (a 403 just answered was then the clock's). */
  observeDate(date: string | null): boolean;
}

export function apiClock(localNow: () => number = Date.now): ApiClock {
  let offsetMs = 0;
  return {
    now: () => new Date(localNow() + offsetMs),
    observeDate(date) {
      const server = date === null ? Number.NaN : Date.parse(date);
      if (Number.isNaN(server)) return false;
      const local = localNow();
      if (Math.abs(local + offsetMs - server) < CLOCK_SKEW_MS) return false;
      offsetMs = server - local;
      return true;
    },
  };
}
