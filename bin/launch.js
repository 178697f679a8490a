/**
 * What the package's bins share: run the bundled JavaScript in dist/ (cli/bundle.ts; built by
 * `npm run build` and by `prepack`, so the published package holds it and no TypeScript). In a
 * development checkout (the TypeScript entry sits next to the bin) the sources run instead,
 * through tsx (a dev dependency), whenever the bundle is missing or older than any source file
 * it was built from (dist/inputs.json): the bin never runs code older than the checkout.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);

/** Imports `bundle` (relative to the package root), or `source` through tsx in a stale checkout. */
export async function launch(bundle, source) {
  const sourceUrl = new URL(source, root);
  const bundleUrl = new URL(bundle, root);
  if (!existsSync(sourceUrl) || isFresh(bundleUrl)) {
    await import(bundleUrl.href);
    return;
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(sourceUrl.href);
}

function isFresh(bundleUrl) {
  const list = new URL('dist/inputs.json', root);
  const built = statSync(list, { throwIfNoEntry: false })?.mtimeMs;
  if (built === undefined || !existsSync(bundleUrl)) return false;
  const inputs = JSON.parse(readFileSync(list, 'utf8'));
  return inputs.every(
    (file) => (statSync(new URL(file, root), { throwIfNoEntry: false })?.mtimeMs ?? 0) <= built,
  );
}
