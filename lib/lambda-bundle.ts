/**
 * How a handler becomes the JavaScript Lambda runs, shared by the CDK app (lib/constructs/
 * mirror-function.ts, through NodejsFunction's esbuild bundling) and the local stack
 * (local/handler-bundles.ts), so `npm start` runs the handlers bundled the way they deploy.
 */

/** ES module builds of dependencies first: the AWS SDK's load its credential providers on demand. */
export const LAMBDA_MAIN_FIELDS: readonly string[] = ['module', 'main'];

/** ESM bundles still meet CommonJS dependencies that call `require`: give them one. */
export const LAMBDA_REQUIRE_SHIM =
  "import { createRequire as __mirrorCreateRequire } from 'node:module';const require = __mirrorCreateRequire(import.meta.url);";
