/** The browser client's public surface (`web/dist/client.js`). */

export {
  type PartPlan,
  S3_MAX_PART_BYTES,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
} from '../../contracts/multipart.ts';
export {
  type CallOptions,
  type FetchLike,
  MirrorApi,
  type MirrorApiOptions,
  newIdempotencyKey,
  type RequestSigner,
  type SignableRequest,
} from './api.ts';
export { type ApiClock, apiClock, CLOCK_SKEW_MS } from './api-clock.ts';
export { ApiError, UploadError } from './errors.ts';
export { DEFAULT_CHUNK_BYTES, hashRange } from './hashing.ts';
export {
  allParts,
  checkPlan,
  formatBytes,
  missingParts,
  type PartRange,
  type Phase,
  retryDelay,
  type UploadProgress,
} from './plan.ts';
export { type SigV4Request, type SigV4Signer, sigV4RequestSigner } from './sigv4-signer.ts';
export {
  continueUpload,
  sendableHeaders,
  sha256File,
  type UploadFileOptions,
  type UploadResult,
  uploadFile,
} from './upload-file.ts';
