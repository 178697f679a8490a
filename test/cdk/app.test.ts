import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildTestApp, fakeResolve, props, resourcesOfType, testTopology } from './fixture.js';

describe('stacks', () => {
  const mirror = buildTestApp(testTopology(), { nag: false });

  it('a home stack in homeRegion and one replica stack per distinct S3 target region', () => {
    expect(mirror.home.region).toBe('us-east-1');
    expect(mirror.home.stackName).toBe('TestMirror-Home');
    expect([...mirror.replicas.keys()]).toEqual(['eu-west-1', 'ap-south-1']);
    for (const [region, stack] of mirror.replicas) {
      expect(stack.region).toBe(region);
      expect(stack.stackName).toBe(`TestMirror-Replica-${region}`);
    }
    expect([...(mirror.replicas.get('eu-west-1')?.buckets.keys() ?? [])]).toEqual(['target-a', 'target-c']);
    expect([...(mirror.replicas.get('ap-south-1')?.buckets.keys() ?? [])]).toEqual(['target-b']);
  });

  it('the home stack depends on every replica stack, and references none of them', () => {
    const deps = mirror.home.dependencies.map((s) => s.stackName).sort();
    expect(deps).toEqual(['TestMirror-Replica-ap-south-1', 'TestMirror-Replica-eu-west-1']);
    const home = Template.fromStack(mirror.home).toJSON();
    expect(JSON.stringify(home)).not.toContain('Fn::ImportValue');
    for (const stack of mirror.replicas.values()) {
      expect(
        Object.keys(Template.fromStack(stack).toJSON().Outputs ?? {}).some((k) => k.startsWith('Export')),
      ).toBe(false);
      expect(JSON.stringify(Template.fromStack(stack).toJSON())).not.toContain('Export');
    }
  });

  it('synthesizes without an account: names use AWS::AccountId, resolved in each stack', () => {
    for (const stack of [mirror.home, ...mirror.replicas.values()]) {
      expect(stack.resolve(stack.account)).toEqual({ Ref: 'AWS::AccountId' });
    }
  });

  it('replica buckets have the names the home stack grants on and hands to the functions', () => {
    const homeText = JSON.stringify(fakeResolve(Template.fromStack(mirror.home).toJSON()));
    const expected: Record<string, string> = {
      'target-a': 'testmirror-target-a-123456789012',
      'target-b': 'testmirror-target-b-123456789012',
      'target-c': 'explicit-replica-c',
    };
    for (const stack of mirror.replicas.values()) {
      const template = Template.fromStack(stack);
      for (const [id, replica] of stack.buckets) {
        const bucket = resourcesOfType(template, 'AWS::S3::Bucket')[
          stack.getLogicalId(replica.bucket.node.defaultChild as never)
        ];
        const name = fakeResolve(props(bucket as never).BucketName);
        expect(name, id).toBe(expected[id]);
        expect(homeText).toContain(`arn:aws:s3:::${expected[id]}/`);
        expect(homeText).toContain(`\\"bucket\\":\\"${expected[id]}\\"`);
        expect(props(bucket as never)).toMatchObject({
          BucketEncryption: {
            ServerSideEncryptionConfiguration: [
              { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
            ],
          },
          LoggingConfiguration: {
            DestinationBucketName: { Ref: expect.any(String) },
            LogFilePrefix: `${id}/`,
          },
        });
        expect(props(bucket as never).VersioningConfiguration).toBeUndefined();
      }
    }
  });
});

describe('JWT authorizer', () => {
  const topology = testTopology({
    api: {
      auth: 'jwt',
      jwtIssuer: 'https://issuer.example.com/',
      jwtAudience: ['media-mirror'],
      corsOrigins: [],
    },
  });
  const mirror = buildTestApp(topology, { nag: false });
  const home = Template.fromStack(mirror.home);

  it('creates a JWT authorizer with the issuer and audience', () => {
    home.resourceCountIs('AWS::ApiGatewayV2::Authorizer', 1);
    home.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      IdentitySource: ['$request.header.Authorization'],
      JwtConfiguration: { Issuer: 'https://issuer.example.com/', Audience: ['media-mirror'] },
    });
  });

  it('puts it on every /v1/* route but GET and HEAD /v1/health', () => {
    const [authorizerId] = Object.keys(resourcesOfType(home, 'AWS::ApiGatewayV2::Authorizer'));
    const routes = Object.values(resourcesOfType(home, 'AWS::ApiGatewayV2::Route')).map((r) => props(r));
    expect(routes).toHaveLength(8);
    for (const route of routes) {
      if (route.RouteKey === 'GET /v1/health' || route.RouteKey === 'HEAD /v1/health') {
        expect(route.AuthorizationType).toBe('NONE');
        expect(route.AuthorizerId).toBeUndefined();
      } else {
        expect(route.AuthorizationType, String(route.RouteKey)).toBe('JWT');
        expect(route.AuthorizerId).toEqual({ Ref: authorizerId });
      }
    }
  });

  it('by default a token needs mirror/read or mirror/write to read, and mirror/write to change anything', () => {
    const routes = Object.values(resourcesOfType(home, 'AWS::ApiGatewayV2::Route')).map((r) => props(r));
    const scopes = Object.fromEntries(routes.map((r) => [r.RouteKey, r.AuthorizationScopes]));
    expect(scopes).toEqual({
      'GET /v1/health': undefined,
      'HEAD /v1/health': undefined,
      'GET /v1/{proxy+}': ['mirror/read', 'mirror/write'],
      'HEAD /v1/{proxy+}': ['mirror/read', 'mirror/write'],
      'POST /v1/{proxy+}': ['mirror/write'],
      'PUT /v1/{proxy+}': ['mirror/write'],
      'PATCH /v1/{proxy+}': ['mirror/write'],
      'DELETE /v1/{proxy+}': ['mirror/write'],
    });
  });

  it('scopes of your own, or none on purpose ("none": any valid token may call every route)', () => {
    const api = {
      auth: 'jwt',
      jwtIssuer: 'https://issuer.example.com/',
      jwtAudience: ['m'],
      corsOrigins: [],
    };
    const scopesOf = (jwtScopes: unknown) => {
      const t = Template.fromStack(
        buildTestApp(testTopology({ api: { ...api, jwtScopes } }), { nag: false }).home,
      );
      const routes = Object.values(resourcesOfType(t, 'AWS::ApiGatewayV2::Route')).map((r) => props(r));
      return Object.fromEntries(routes.map((r) => [r.RouteKey, r.AuthorizationScopes]));
    };
    expect(scopesOf({ read: ['cms.read'], write: ['cms.admin'] })).toMatchObject({
      'GET /v1/{proxy+}': ['cms.read'],
      'DELETE /v1/{proxy+}': ['cms.admin'],
    });
    expect(Object.values(scopesOf('none')).every((s) => s === undefined)).toBe(true);
    expect(() => testTopology({ api: { ...api, jwtScopes: { read: [], write: ['w'] } } })).toThrow(
      /jwtScopes/,
    );
    expect(() => testTopology({ api: { ...api, jwtScopes: { read: ['a b'], write: ['w'] } } })).toThrow(
      /OAuth scope/,
    );
  });

  it('IAM auth: no scopes on any route', () => {
    const iam = Template.fromStack(buildTestApp(testTopology(), { nag: false }).home);
    for (const route of Object.values(resourcesOfType(iam, 'AWS::ApiGatewayV2::Route'))) {
      expect(props(route).AuthorizationScopes).toBeUndefined();
    }
  });

  it('without CORS origins, configures no CORS on the API or the bucket', () => {
    home.hasResourceProperties('AWS::ApiGatewayV2::Api', { CorsConfiguration: Match.absent() });
    for (const bucket of Object.values(resourcesOfType(home, 'AWS::S3::Bucket'))) {
      expect(props(bucket).CorsConfiguration).toBeUndefined();
    }
  });

  it('refuses a JWT topology without an audience, naming the field', () => {
    const noAudience = testTopology({ api: { auth: 'jwt', jwtIssuer: 'https://issuer.example.com/' } });
    expect(() => buildTestApp(noAudience, { nag: false })).toThrow(/api\.jwtAudience: required/);
  });
});

describe('topology edge cases', () => {
  it('a pull-only topology has no replica stack and no replicate function', () => {
    const mirror = buildTestApp(testTopology({ targets: [{ id: 'onprem-dc1', kind: 'pull' }] }), {
      nag: false,
    });
    expect(mirror.replicas.size).toBe(0);
    expect(mirror.home.dependencies).toHaveLength(0);
    const home = Template.fromStack(mirror.home);
    // api, ingest, complete-multipart, lag monitor, reconcile, the lost-notification sweep, and
    // CDK's AwsCustomResource function (each dead-letter queue's RedriveAllowPolicy)
    expect(Object.keys(resourcesOfType(home, 'AWS::Lambda::Function'))).toHaveLength(7);
    // The pull target's lag, dead letters and heartbeat; ingest dead letters, rejections, errors and
    // queue age; completion dead letters; uploads pending past their expiry; reconcile errors and
    // not running; the sweep's errors, not running, and the lost notifications and lost completions
    // it resent; the API's 5xx and the api function's throttles.
    home.resourceCountIs('AWS::CloudWatch::Alarm', 17);
  });

  it('a bucket name that would pass 63 characters is refused at synth, naming the field', () => {
    const longId = `t${'x'.repeat(30)}1`;
    const topology = testTopology({
      name: `M${'n'.repeat(30)}`,
      targets: [{ id: longId, kind: 's3', region: 'eu-west-1' }],
    });
    expect(() => buildTestApp(topology, { nag: false })).toThrow(
      /targets\.0\.bucketName .*not a valid S3 bucket name/,
    );
  });

  it('an invalid or duplicate explicit bucket name is refused', () => {
    expect(() =>
      buildTestApp(
        testTopology({
          targets: [{ id: 'target-a', kind: 's3', region: 'eu-west-1', bucketName: 'Bad_Name' }],
        }),
        {
          nag: false,
        },
      ),
    ).toThrow(/targets\.0\.bucketName: "Bad_Name" is not a valid S3 bucket name/);
    expect(() =>
      buildTestApp(
        testTopology({
          targets: [
            { id: 'target-a', kind: 's3', region: 'eu-west-1', bucketName: 'same-bucket' },
            { id: 'target-b', kind: 's3', region: 'eu-west-2', bucketName: 'same-bucket' },
          ],
        }),
        { nag: false },
      ),
    ).toThrow(/target "target-b": bucket name "same-bucket" is also used by target "target-a"/);
  });

  it('an S3 target in the home region still gets its own replica stack', () => {
    const mirror = buildTestApp(
      testTopology({ targets: [{ id: 'local-copy', kind: 's3', region: 'us-east-1' }] }),
      {
        nag: false,
      },
    );
    expect([...mirror.replicas.keys()]).toEqual(['us-east-1']);
    expect(mirror.home.dependencies.map((s) => s.stackName)).toEqual(['TestMirror-Replica-us-east-1']);
  });
});
