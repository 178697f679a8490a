/**
 * The HTTP API in front of the api function: every `/v1/*` route goes to one
 * Lambda integration behind the configured authorizer, except `GET /v1/health`.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer, HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { API_CORS_ALLOWED_HEADERS, API_EXPOSED_HEADERS } from '../../contracts/api.js';
import { API_WRITE_KEYS, DELETES_UNDER } from '../../contracts/ledger-keys.js';
import {
  LEDGER_ACCESS,
  type MirrorSettings,
  type TargetBinding,
  useCompletionQueue,
  useLedger,
  useOrigin,
  useSettings,
  useTargets,
} from '../grants.js';
import { acknowledge } from '../nag.js';
import type { Ledger } from './ledger.js';
import { MirrorFunction } from './mirror-function.js';
import type { OriginStore } from './origin-store.js';

/** The scopes a JWT must carry: any one of `read` on the GET routes, of `write` on the others. */
export interface JwtScopes {
  readonly read: readonly string[];
  readonly write: readonly string[];
}

/** How API Gateway authenticates callers. */
export type ApiAuth =
  | { readonly kind: 'iam' }
  | {
      readonly kind: 'jwt';
      readonly issuer: string;
      readonly audience: readonly string[];
      /**
       * Without scopes any valid token of the issuer may call every route, deletes and restores
       * included: only when that is meant.
       */
      readonly scopes: JwtScopes | 'none';
    };

export interface UploadApiProps {
  readonly ledger: Ledger;
  readonly origin: OriginStore;
  readonly targets: readonly TargetBinding[];
  readonly settings: MirrorSettings;
  /**
   * Where multipart completions go to run in the background (lib/constructs/multipart-completion.ts).
   * @default - none: a complete runs CompleteMultipartUpload within the request
   */
  readonly completionQueue?: sqs.IQueue;
  /** IAM (SigV4) or JWT authorizer on every route but the health check. */
  readonly auth: ApiAuth;
  /**
   * Browser origins allowed by CORS.
   * @default - no CORS configuration
   */
  readonly corsOrigins?: readonly string[];
  /**
   * Steady-state requests per second on the default stage.
   * @default 50
   */
  readonly throttleRateLimit?: number;
  /**
   * Burst of requests on the default stage.
   * @default 100
   */
  readonly throttleBurstLimit?: number;
  /**
   * Concurrent executions reserved for the api function: taken from the account's pool for it
   * alone, so that a bulk import (ingest, replicate) cannot use up the account's concurrency
   * and throttle the API; also the most it may run at once. Lambda keeps at least 100 of the
   * account's concurrency unreserved, so an account with a lower quota must raise it first, or
   * deploy with `false`: nothing reserved, the API shares the account's pool (docs/deploy.md).
   * @default apiReservedConcurrency(throttleRateLimit): the stage's steady rate at 0.5 s per request, at least 10
   */
  readonly reservedConcurrency?: number | false;
  /**
   * How long access logs are kept.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly accessLogRetention?: logs.RetentionDays;
}

/** The stage's default steady-state rate, requests per second. */
export const DEFAULT_THROTTLE_RATE_LIMIT = 50;
/** The stage's default burst. */
export const DEFAULT_THROTTLE_BURST_LIMIT = 100;

/**
 * Seconds an api request is budgeted to hold a function instance when sizing its reserved
 * concurrency: most requests (presign, record a part, read a version) take a few tens of
 * milliseconds; completing a large multipart upload takes longer.
 */
export const API_REQUEST_SECONDS = 0.5;

/**
 * The default reserved concurrency of the api function: enough instances to serve the stage's
 * whole steady rate (Little's law: rate x time per request), never fewer than 10.
 */
export function apiReservedConcurrency(rateLimit: number = DEFAULT_THROTTLE_RATE_LIMIT): number {
  return Math.max(10, Math.ceil(rateLimit * API_REQUEST_SECONDS));
}

/** Methods of the authorized `/v1/{proxy+}` route (OPTIONS is left to API Gateway's CORS preflight). */
const API_METHODS = [
  apigw.HttpMethod.GET,
  apigw.HttpMethod.HEAD,
  apigw.HttpMethod.POST,
  apigw.HttpMethod.PUT,
  apigw.HttpMethod.PATCH,
  apigw.HttpMethod.DELETE,
];

/** One JSON line per request, HTTP API context variables only. */
const ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    requestTime: '$context.requestTime',
    sourceIp: '$context.identity.sourceIp',
    userAgent: '$context.identity.userAgent',
    // Who made the request: API Gateway's data-plane calls are not in CloudTrail, so without these
    // a delete or a restore could be traced to an address only. A variable that does not apply to
    // the request's kind of authorization is written as "-".
    callerArn: '$context.identity.userArn',
    callerAccount: '$context.identity.accountId',
    tokenSubject: '$context.authorizer.claims.sub',
    httpMethod: '$context.httpMethod',
    routeKey: '$context.routeKey',
    path: '$context.path',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
    latencyMs: '$context.responseLatency',
    integrationLatencyMs: '$context.integrationLatency',
    error: '$context.error.message',
    integrationError: '$context.integrationErrorMessage',
    authorizerError: '$context.authorizer.error',
  }),
);

export class UploadApi extends Construct {
  /** The HTTP API. */
  public readonly httpApi: apigw.HttpApi;
  /** Its `$default` stage: auto-deployed, throttled, access-logged. */
  public readonly stage: apigw.HttpStage;
  /** The api function behind every route. */
  public readonly handler: MirrorFunction;
  /** The authorizer on every `/v1/*` route but the health check. */
  public readonly authorizer: apigw.IHttpRouteAuthorizer;
  /** The stage's access log group. */
  public readonly accessLogGroup: logs.LogGroup;
  /** The API's base URL. */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: UploadApiProps) {
    super(scope, id);
    const rateLimit = props.throttleRateLimit ?? DEFAULT_THROTTLE_RATE_LIMIT;
    const burstLimit = props.throttleBurstLimit ?? DEFAULT_THROTTLE_BURST_LIMIT;
    const reserved = props.reservedConcurrency ?? apiReservedConcurrency(rateLimit);
    checkLimits(rateLimit, burstLimit, reserved);
    const fn = new MirrorFunction(this, 'Handler', {
      handler: 'api',
      description: 'Upload API: presigned uploads, versions, change feed, target status',
      timeout: Duration.seconds(29),
      memorySize: 512,
      ...(reserved === false ? {} : { reservedConcurrency: reserved }),
    });
    useLedger(fn, props.ledger, LEDGER_ACCESS.api, {
      queryLiveFiles: true,
      scanLiveFiles: true,
      writesUnder: API_WRITE_KEYS,
      actionsUnder: { 'dynamodb:DeleteItem': DELETES_UNDER.api },
    });
    // GetObjectVersion: content URLs and ranged reads name the blob's verified object version.
    // ListBucket on the origin and each replica: a presigned GET of a copy removed out of band
    // answers 404 (the CLI's `get` says the copy is missing, exit 3), not 403 as S3 answers a
    // signer without it. The URL itself grants GetObject on its one key; nobody can list with it.
    useOrigin(fn, props.origin, {
      blobs: ['s3:PutObject', 's3:GetObject', 's3:GetObjectVersion', 's3:AbortMultipartUpload'],
      purpose:
        'presigns uploads and parts (PutObject) and content links of the verified version (GetObject, GetObjectVersion), and aborts an abandoned multipart upload',
      headMissingAs404: true,
    });
    useTargets(fn, props.targets, {
      sendMessage: true,
      readReplicaObjects: { purpose: 'Presigned GETs of files by path', headMissingAs404: true },
    });
    useSettings(fn, props.settings);
    if (props.completionQueue) useCompletionQueue(fn, props.completionQueue);
    this.handler = fn;

    this.authorizer =
      props.auth.kind === 'iam'
        ? new HttpIamAuthorizer()
        : new HttpJwtAuthorizer('JwtAuthorizer', props.auth.issuer, {
            jwtAudience: [...props.auth.audience],
          });

    const corsOrigins = props.corsOrigins ?? [];
    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      description: 'Media Mirror upload API',
      createDefaultStage: false,
      corsPreflight:
        corsOrigins.length === 0
          ? undefined
          : {
              allowOrigins: [...corsOrigins],
              allowMethods: [
                apigw.CorsHttpMethod.GET,
                apigw.CorsHttpMethod.POST,
                apigw.CorsHttpMethod.PUT,
                apigw.CorsHttpMethod.PATCH,
                apigw.CorsHttpMethod.DELETE,
                apigw.CorsHttpMethod.OPTIONS,
              ],
              allowHeaders: [...API_CORS_ALLOWED_HEADERS],
              exposeHeaders: [...API_EXPOSED_HEADERS],
              maxAge: Duration.hours(1),
            },
    });

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.stage = this.httpApi.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit, burstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        format: ACCESS_LOG_FORMAT,
      },
    });
    this.url = this.stage.url;

    const integration = new HttpLambdaIntegration('Api', fn.function, {
      payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
    });
    // HEAD beside each GET: the api answers it as GET without the body (uptime checks, curl -I).
    const health = this.httpApi.addRoutes({
      path: '/v1/health',
      methods: [apigw.HttpMethod.GET, apigw.HttpMethod.HEAD],
      integration,
      authorizer: new apigw.HttpNoneAuthorizer(),
    });
    // Reads and writes apart, so that a JWT's scopes can tell them apart.
    const scopes = props.auth.kind === 'jwt' && props.auth.scopes !== 'none' ? props.auth.scopes : undefined;
    this.httpApi.addRoutes({
      path: '/v1/{proxy+}',
      methods: [apigw.HttpMethod.GET, apigw.HttpMethod.HEAD],
      integration,
      authorizer: this.authorizer,
      ...(scopes ? { authorizationScopes: [...scopes.read] } : {}),
    });
    this.httpApi.addRoutes({
      path: '/v1/{proxy+}',
      methods: API_METHODS.filter((m) => m !== apigw.HttpMethod.GET && m !== apigw.HttpMethod.HEAD),
      integration,
      authorizer: this.authorizer,
      ...(scopes ? { authorizationScopes: [...scopes.write] } : {}),
    });
    // The open routes run the api function for anyone on the internet: a throttle of their own,
    // far below the stage's, keeps anonymous callers to a small share of its reserved concurrency.
    // The stage must come after the routes it names (CloudFormation finds no route by its key otherwise).
    const stage = this.stage.node.defaultChild as apigw.CfnStage;
    stage.routeSettings = Object.fromEntries(
      health.map((route) => [
        (route.node.defaultChild as apigw.CfnRoute).routeKey,
        { ThrottlingRateLimit: HEALTH_THROTTLE.rateLimit, ThrottlingBurstLimit: HEALTH_THROTTLE.burstLimit },
      ]),
    );
    for (const route of health) stage.node.addDependency(route);
    for (const route of health) {
      acknowledge(
        route,
        'AwsSolutions-APIG4',
        'GET and HEAD /v1/health are a liveness probe for load balancers and uptime checks: they return a fixed status and read no data.',
      );
    }
  }
}

/** `GET`/`HEAD /v1/health`: uptime checks and load balancers ask a few times a minute each. */
const HEALTH_THROTTLE = { rateLimit: 5, burstLimit: 10 } as const;

/** Refuses limits API Gateway or Lambda would refuse at deploy time, naming the prop. */
function checkLimits(rateLimit: number, burstLimit: number, reserved: number | false): void {
  const problems: string[] = [];
  if (!Number.isFinite(rateLimit) || rateLimit <= 0)
    problems.push(`throttleRateLimit: ${rateLimit} is not positive`);
  if (!Number.isInteger(burstLimit) || burstLimit < 1)
    problems.push(`throttleBurstLimit: ${burstLimit} is not a whole number of at least 1`);
  // 0 would stop the function altogether: every request would be throttled.
  if (reserved !== false && (!Number.isInteger(reserved) || reserved < 1))
    problems.push(`reservedConcurrency: ${reserved} is not a whole number of at least 1`);
  if (problems.length > 0) throw new Error(`invalid upload API settings:\n  ${problems.join('\n  ')}`);
}
