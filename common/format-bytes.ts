/** `1536` → `1.5 KiB`: sizes and rates for people, in binary units (the CLI's progress, the agent's status line). */
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  for (;;) {
    // Rates are rarely whole: bytes are shown whole, larger units to one decimal, and a value
    // that rounds to 1024 moves up a unit ("1.0 MiB", not "1024.0 KiB").
    const shown = unit === 0 ? Math.round(value) : Math.round(value * 10) / 10;
    if (!(shown >= 1024) || unit === UNITS.length - 1) {
      return unit === 0 ? `${shown} B` : `${shown.toFixed(1)} ${UNITS[unit]}`;
    }
    value /= 1024;
    unit++;
  }
}
