/** The browser client's public surface (`web/dist/client.js`). */
export { DEFAULT_CHUNK_BYTES, hashRange } from './hashing.ts';
export {
  allParts,
  checkPlan,
  formatBytes,
  missingParts,
  type PartPlan,
  type PartRange,
  type Phase,
  retryDelay,
  S3_MAX_PART_BYTES,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
  type UploadProgress,
} from './plan.ts';
export {
  sendableHeaders,
  sha256File,
  UploadError,
  type UploadFileOptions,
  type UploadResult,
  uploadFile,
} from './upload-file.ts';
