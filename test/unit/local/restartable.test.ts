/**
 * The SQS outage of a chaos run (local/delivery-faults.ts `restartable`): an emulator stopped and
 * started again on its port. The chaos workload restarts it from several lanes at once.
 */
import { describe, expect, it } from 'vitest';
import { restartable } from '../../../local/delivery-faults.ts';
import type { RunningEmulator } from '../../../local/emulators.ts';

/** Emulators that hold a port as listening would: a second start on a held port fails. */
function fakePorts() {
  const held = new Set<number>();
  let next = 40_000;
  const start = async (port: number | undefined): Promise<RunningEmulator> => {
    const p = port ?? next++;
    // Starting takes a while, as a real one does (listen, then create the queues).
    await new Promise((r) => setTimeout(r, 5));
    if (held.has(p)) throw new Error(`port ${p} is already in use`);
    held.add(p);
    return {
      port: p,
      endpoint: `http://127.0.0.1:${p}`,
      stop: async () => {
        await new Promise((r) => setTimeout(r, 5));
        held.delete(p);
      },
    };
  };
  return { held, start };
}

describe('restartable emulator', () => {
  it('restarts asked for at once run one after the other, each on the same port', async () => {
    const ports = fakePorts();
    const emulator = await restartable(ports.start);
    await Promise.all([emulator.restart(), emulator.restart(), emulator.restart()]);
    expect(emulator.restarts).toBe(3);
    expect([...ports.held]).toEqual([emulator.port]);
  });

  it("each restart's own step after the start (the queues created again) ends before the next restart begins", async () => {
    const ports = fakePorts();
    const emulator = await restartable(ports.start);
    const steps: string[] = [];
    const queuesAgain = (n: number) => async () => {
      steps.push(`after ${n} begins`);
      await new Promise((r) => setTimeout(r, 10));
      // The emulator it set up is still the one running.
      expect([...ports.held]).toEqual([emulator.port]);
      steps.push(`after ${n} ends`);
    };
    await Promise.all([emulator.restart(queuesAgain(1)), emulator.restart(queuesAgain(2))]);
    expect(steps).toEqual(['after 1 begins', 'after 1 ends', 'after 2 begins', 'after 2 ends']);
  });

  it('a stop asked for during a restart waits for it, and leaves nothing running', async () => {
    const ports = fakePorts();
    const emulator = await restartable(ports.start);
    const restarting = emulator.restart();
    await emulator.stop();
    await restarting;
    expect(ports.held.size).toBe(0);
  });
});
