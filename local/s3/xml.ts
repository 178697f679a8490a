/**
 * S3's wire formats: the XML error shape, XML responses, and strict parsing of the few
 * XML bodies clients send (multipart completion, versioning, CORS, multi-object delete).
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** An error S3 answers with its XML error document. */
export class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Extra elements S3 adds to some errors (e.g. `Key`, `BucketName`). */
    readonly extra: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'S3Error';
  }
}

export const errors = {
  accessDenied: (message = 'Access Denied') => new S3Error(403, 'AccessDenied', message),
  noSuchBucket: (bucket: string) =>
    new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) =>
    new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key }),
  noSuchVersion: (key: string, versionId: string) =>
    new S3Error(404, 'NoSuchVersion', 'The specified version does not exist.', {
      Key: key,
      VersionId: versionId,
    }),
  noSuchUpload: (uploadId: string) =>
    new S3Error(
      404,
      'NoSuchUpload',
      'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
      { UploadId: uploadId },
    ),
  invalidArgument: (message: string, name?: string, value?: string) =>
    new S3Error(
      400,
      'InvalidArgument',
      message,
      name === undefined ? {} : { ArgumentName: name, ArgumentValue: value ?? '' },
    ),
  invalidRequest: (message: string) => new S3Error(400, 'InvalidRequest', message),
  malformedXml: () =>
    new S3Error(
      400,
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema',
    ),
  badDigest: (message: string) => new S3Error(400, 'BadDigest', message),
  incompleteBody: () =>
    new S3Error(
      400,
      'IncompleteBody',
      'You did not provide the number of bytes specified by the Content-Length',
    ),
  notImplemented: (what: string) =>
    new S3Error(
      501,
      'NotImplemented',
      `A header or query you provided implies functionality that is not implemented: ${what}`,
    ),
  methodNotAllowed: (method: string) =>
    new S3Error(
      405,
      'MethodNotAllowed',
      `The specified method is not allowed against this resource: ${method}`,
    ),
  preconditionFailed: (condition: string) =>
    new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
      Condition: condition,
    }),
};

const XML_ESCAPES: Record<string, string> = {
  '<': '&lt;',
  '>': '&gt;',
  '&': '&amp;',
  "'": '&apos;',
  '"': '&quot;',
  '\r': '&#13;',
};

export function escapeXml(text: string): string {
  return text.replace(/[<>&'"\r]/g, (c) => XML_ESCAPES[c] ?? c);
}

/** A value tree rendered as XML elements; arrays repeat the element, `undefined` omits it. */
export type XmlValue =
  | string
  | number
  | boolean
  | undefined
  | XmlTree
  | readonly XmlTree[]
  | readonly string[];
export interface XmlTree {
  readonly [element: string]: XmlValue;
}

function render(tree: XmlTree): string {
  let out = '';
  for (const [name, value] of Object.entries(tree)) {
    if (value === undefined) continue;
    const items = Array.isArray(value) ? value : [value];
    for (const item of items as readonly (string | number | boolean | XmlTree)[]) {
      const inner = typeof item === 'object' ? render(item) : escapeXml(String(item));
      out += `<${name}>${inner}</${name}>`;
    }
  }
  return out;
}

export const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/** A response document: `<?xml ...?><Root xmlns="...">...</Root>`. */
export function xmlDocument(root: string, body: XmlTree | string, namespace = true): string {
  const xmlns = namespace ? ` xmlns="${S3_XMLNS}"` : '';
  const inner = typeof body === 'string' ? escapeXml(body) : render(body);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root}${xmlns}>${inner}</${root}>`;
}

export function errorDocument(error: S3Error, resource: string, requestId: string): string {
  return xmlDocument(
    'Error',
    { Code: error.code, Message: error.message, ...error.extra, Resource: resource, RequestId: requestId },
    false,
  );
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  // Values as sent: a key may begin or end with spaces or a line break (`keep ` is not `keep`).
  // The layout between elements arrives as `#text` beside them, which no reader asks for.
  trimValues: false,
  processEntities: true,
  ignoreDeclaration: true,
});

/** XML 1.0's Char production: what a character reference may name. */
const isXmlChar = (c: number) =>
  c === 0x9 ||
  c === 0xa ||
  c === 0xd ||
  (c >= 0x20 && c <= 0xd7ff) ||
  (c >= 0xe000 && c <= 0xfffd) ||
  (c >= 0x10000 && c <= 0x10ffff);

/**
 * Numeric character references (`&#34;`, `&#x27;`) replaced by the characters they name, before
 * the parser sees the text: fast-xml-parser decodes them only with its HTML entities on, which
 * would also take names XML does not define (`&nbsp;`). Go's encoding/xml writes `"` as `&#34;`,
 * so rclone's CompleteMultipartUpload ETags and DeleteObjects keys arrive that way. A character
 * XML gives a meaning to goes back as its predefined entity (`&#38;` as `&amp;`), so it is decoded
 * once, as text; a reference to no XML character is S3's MalformedXML.
 */
function withCharacterReferencesResolved(xml: string): string {
  return xml.replace(
    /&#(?:x([0-9a-fA-F]+)|([0-9]+));/g,
    (_, hex: string | undefined, dec: string | undefined) => {
      const code = hex === undefined ? Number.parseInt(dec ?? '', 10) : Number.parseInt(hex, 16);
      if (!isXmlChar(code)) throw errors.malformedXml();
      const char = String.fromCodePoint(code);
      return char === '&' ? '&amp;' : char === '<' ? '&lt;' : char === '>' ? '&gt;' : char;
    },
  );
}

/** An element's children: each name maps to its occurrences (text or nested). */
export type XmlNode = string | { [name: string]: XmlNode | XmlNode[] };

/**
 * Parses a request body whose root must be `root`; anything else, or XML that is not
 * well-formed, is S3's MalformedXML.
 */
export function parseXmlBody(text: string, root: string): Record<string, unknown> {
  if (text.trim() === '' || XMLValidator.validate(text) !== true) throw errors.malformedXml();
  let doc: unknown;
  try {
    doc = parser.parse(withCharacterReferencesResolved(text));
  } catch {
    throw errors.malformedXml();
  }
  const raw = (doc as Record<string, unknown>)[root];
  // An empty root, or one holding only layout: no elements.
  const top = typeof raw === 'string' && raw.trim() === '' ? '' : raw;
  if (top === '' || top === undefined) {
    if (top === '' && Object.keys(doc as object).length === 1) return {};
    throw errors.malformedXml();
  }
  if (typeof top !== 'object' || top === null || Array.isArray(top)) throw errors.malformedXml();
  return top as Record<string, unknown>;
}

/** Occurrences of a child element, as an array (XML gives one or many). */
export function children(node: unknown, name: string): unknown[] {
  if (typeof node !== 'object' || node === null) return [];
  const value = (node as Record<string, unknown>)[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** The text of a child element that must occur at most once. */
export function text(node: unknown, name: string): string | undefined {
  const all = children(node, name);
  if (all.length > 1) throw errors.malformedXml();
  const [value] = all;
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw errors.malformedXml();
  return value;
}
