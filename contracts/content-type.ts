/**
 * The content type rule the API's claim holds to (contracts/api.ts builds its schema from it):
 * `type/subtype`, no parameters. Nothing imported, so the CLI checks `--content-type` before it
 * loads anything else.
 */
export const MAX_CONTENT_TYPE_LENGTH = 255;
export const CONTENT_TYPE_PATTERN = /^[a-zA-Z0-9!#$&^_.+-]+\/[a-zA-Z0-9!#$&^_.+-]+$/;
export const CONTENT_TYPE_RULE = 'must be a MIME type such as image/jpeg';

/**
 * Whether `accepted`, the deployment's `contentTypes` (`image/*` takes a family, stars alone any
 * type), takes `contentType`: the API's own test, and the CLI's before it sends.
 */
export function contentTypeAllowed(contentType: string, accepted: readonly string[]): boolean {
  const type = contentType.toLowerCase();
  const [family] = type.split('/');
  return accepted.some((pattern) => {
    const p = pattern.toLowerCase();
    return p === '*/*' || p === type || (p.endsWith('/*') && p.slice(0, -2) === family);
  });
}
