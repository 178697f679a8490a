/** The exit listener of removeOnExit: whatever the removal meets, it does not throw while the process exits. */
import { describe, expect, it } from 'vitest';
import { removeOnExit } from '../../../cli/remove-on-exit.ts';

describe('removeOnExit', () => {
  it('a path that cannot be removed (a name too long for the file system) throws nothing from the exit listener (probe V6)', () => {
    const before = process.listeners('exit');
    const cancel = removeOnExit(`/tmp/${'x'.repeat(300)}/partial`);
    try {
      const added = process.listeners('exit').filter((l) => !before.includes(l));
      expect(added).toHaveLength(1);
      expect(() => (added[0] as (code: number) => void)(0)).not.toThrow();
    } finally {
      cancel();
    }
    expect(process.listeners('exit')).toEqual(before);
  });
});
