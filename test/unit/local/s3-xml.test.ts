/**
 * The local S3's XML request bodies (local/s3/xml.ts) as real clients write them: Go's
 * encoding/xml (rclone) writes `"` and `'` as numeric character references, which S3 decodes.
 */
import { describe, expect, it } from 'vitest';
import { children, parseXmlBody, text } from '../../../local/s3/xml.ts';

const keys = (xml: string) => children(parseXmlBody(xml, 'Delete'), 'Object').map((o) => text(o, 'Key'));

describe('local S3 XML bodies', () => {
  it('decodes numeric character references, decimal and hex, once', () => {
    expect(keys('<Delete><Object><Key>q/it&#39;s.txt</Key></Object></Delete>')).toEqual(["q/it's.txt"]);
    const complete = parseXmlBody(
      '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#34;46d71a5c&#x22;</ETag></Part></CompleteMultipartUpload>',
      'CompleteMultipartUpload',
    );
    expect(text(children(complete, 'Part')[0], 'ETag')).toBe('"46d71a5c"');
    // An escaped ampersand stays text: `&amp;#34;` is the five characters "&#34;", not a quote.
    expect(keys('<Delete><Object><Key>a&amp;#34;b &#38; c &#60;d&#62;</Key></Object></Delete>')).toEqual([
      'a&#34;b & c <d>',
    ]);
  });

  it('a reference to no XML character is MalformedXML', () => {
    for (const bad of ['&#0;', '&#xFFFE;', '&#x110000;']) {
      expect(() => keys(`<Delete><Object><Key>a${bad}</Key></Object></Delete>`)).toThrow(
        expect.objectContaining({ code: 'MalformedXML' }),
      );
    }
  });
});
