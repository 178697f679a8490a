import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { contentTypeAllowed } from '../../../contracts/content-type.js';
import { parseTopology, targetSelects } from '../../../contracts/topology.js';

describe('topology', () => {
  it('the shipped mirror.config.json is valid: two replica regions and one pull target', () => {
    const topology = parseTopology(JSON.parse(readFileSync('mirror.config.json', 'utf8')));
    expect(topology.targets.filter((t) => t.kind === 's3')).toHaveLength(2);
    expect(topology.targets.filter((t) => t.kind === 'pull')).toHaveLength(1);
    expect(topology.limits.presignTtlSeconds).toBeLessThanOrEqual(900);
  });

  it('lists every problem with its field', () => {
    expect(() =>
      parseTopology({
        targets: [
          { id: 'eu', kind: 's3', region: 'mars-1' },
          { id: 'eu', kind: 'pull' },
        ],
        api: { auth: 'jwt' },
      }),
    ).toThrow(/targets\.0\.id[\s\S]*targets\.0\.region[\s\S]*targets\.1\.id: duplicate[\s\S]*api\.jwtIssuer/);
  });

  it('a JWT issuer must be https:// (OIDC issuers are; its keys are fetched from it), naming the field', () => {
    const targets = [{ id: 'eu-copy', kind: 's3', region: 'eu-west-1' }];
    const api = (jwtIssuer: string) => ({ auth: 'jwt', jwtIssuer, jwtAudience: ['mirror'] });
    for (const issuer of ['http://idp.example.com', 'ftp://idp.example.com']) {
      expect(() => parseTopology({ targets, api: api(issuer) })).toThrow(
        /api\.jwtIssuer: must be an https:\/\/ URL/,
      );
    }
    expect(parseTopology({ targets, api: api('https://idp.example.com/pool') }).api.jwtIssuer).toBe(
      'https://idp.example.com/pool',
    );
  });

  it('an alarm topic outside the home region is refused (CloudWatch would refuse every alarm, and the deploy roll back); one in it is taken', () => {
    const targets = [{ id: 'eu-copy', kind: 's3', region: 'eu-west-1' }];
    const topic = (region: string) => `arn:aws:sns:${region}:123456789012:pager`;
    expect(() =>
      parseTopology({ homeRegion: 'us-east-1', targets, monitoring: { alarmTopicArn: topic('eu-west-1') } }),
    ).toThrow(/monitoring\.alarmTopicArn: is in eu-west-1, but the alarms are in the home region us-east-1/);
    const topology = parseTopology({
      homeRegion: 'us-east-1',
      targets,
      monitoring: { alarmTopicArn: topic('us-east-1') },
    });
    expect(topology.monitoring.alarmTopicArn).toBe(topic('us-east-1'));
  });

  it('a prefix filter selects only paths under it', () => {
    expect(targetSelects({ pathPrefix: 'public/' }, 'public/a.png')).toBe(true);
    expect(targetSelects({ pathPrefix: 'public/' }, 'publicity.png')).toBe(false);
    expect(targetSelects({}, 'anything')).toBe(true);
  });
});

describe('content types', () => {
  it.each([
    ['image/png', ['image/*'], true],
    ['IMAGE/PNG', ['image/*'], true],
    ['imagex/png', ['image/*'], false],
    ['application/pdf', ['application/pdf'], true],
    ['application/json', ['application/pdf'], false],
    ['text/x-anything', ['*/*'], true],
  ] as const)('%s against %j → %s', (type, allowed, expected) => {
    expect(contentTypeAllowed(type, allowed)).toBe(expected);
  });
});
