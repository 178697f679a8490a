import { readFileSync } from 'node:fs';

/**
 * This process's peak resident set, in bytes. On Linux, VmHWM of /proc/self/status: the peak of
 * this program's own memory. Not `process.resourceUsage().maxRSS` there: getrusage's maxrss
 * carries the peak of the process that started this one across exec (a fork copies its parent's
 * resident pages into the count), so an agent started by a 300 MiB process reported 300 MiB. Where
 * there is no /proc, maxRSS is all there is.
 */
export function peakRssBytes(): number {
  try {
    const kib = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (kib !== undefined) return Number(kib) * 1024;
  } catch {
    // No procfs (macOS, Windows): getrusage below.
  }
  return process.resourceUsage().maxRSS * 1024;
}
