/**
 * The AWS side's clock, as the agent reads it in its DynamoDB answers' `Date` header. The heartbeat
 * and a file's `appliedAt` are read against the servers' clocks (the API's, the lag monitor's): an
 * agent host whose clock is minutes off would otherwise look alive when it is dead (clock ahead:
 * its last heartbeat stays "0 s ago") or dead while it works (clock behind: the alarm fires).
 *
 * The SDK corrects its own signing clock only past a 5-minute skew (`systemClockOffset`), and
 * exposes no reading of the server's time, so the header is read here.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/** The header has whole seconds: differences under this are its rounding and the round trip. */
const NOISE_MS = 2000;

export class ServerClock {
  #offsetMs = 0;
  #observed = false;

  /** This host's clock, taken as the servers' (no answers to read it from: tests, shared clients). */
  static thisHost(): ServerClock {
    const clock = new ServerClock();
    clock.#observed = true;
    return clock;
  }

  /** A response's `Date` header, received at `localMs`. */
  observe(dateHeader: string | undefined, localMs = Date.now()): void {
    if (!dateHeader) return;
    const server = Date.parse(dateHeader);
    if (Number.isNaN(server)) return;
    // The header rounds down to the second: half a second on average.
    const offset = server + 500 - localMs;
    this.#offsetMs = Math.abs(offset) < NOISE_MS ? 0 : offset;
    this.#observed = true;
  }

  /** Whether an answer has been read yet (until then, this host's clock stands in). */
  get observed(): boolean {
    return this.#observed;
  }

  /** How far the servers' clock is ahead of this host's (negative: behind); 0 within the noise. */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  nowMs(): number {
    return Date.now() + this.#offsetMs;
  }

  now(): Date {
    return new Date(this.nowMs());
  }
}

type HeaderBag = { readonly headers?: Record<string, string | undefined> } | undefined;

/** Reads the `Date` header of every answer the client gets, errors included, into `clock`. */
export function watchServerClock(client: DynamoDBClient, clock: ServerClock): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        const result = await next(args);
        clock.observe((result.response as HeaderBag)?.headers?.date);
        return result;
      } catch (error) {
        clock.observe((error as { $response?: HeaderBag }).$response?.headers?.date);
        throw error;
      }
    },
    { step: 'deserialize', name: 'mirrorServerClock' },
  );
}
