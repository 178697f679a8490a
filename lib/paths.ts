/** Where the CDK app finds the Lambda handlers it bundles. */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file lives in `<root>/lib`). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The Lambda handlers (functions/handlers/<name>.ts): each file exports `handler`. */
export const HANDLER_NAMES = [
  'api',
  'ingest',
  'complete-multipart',
  'replicate',
  'lag-monitor',
  'reconcile',
  'pending-sweep',
] as const;

export type HandlerName = (typeof HANDLER_NAMES)[number];

/** Absolute path of a handler's entry file. */
export function handlerEntry(name: HandlerName): string {
  return path.join(REPO_ROOT, 'functions', 'handlers', `${name}.ts`);
}

/** The lock file that pins what esbuild bundles. */
export const LOCK_FILE = path.join(REPO_ROOT, 'package-lock.json');
