/** The ledger: one DynamoDB table, the single source of truth (versions, blobs, targets, feed). */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { LIVE_FILES_INDEX, PENDING_INDEX, TTL_ATTRIBUTE } from '../../contracts/ledger-keys.js';

export interface LedgerProps {
  /**
   * What happens to the table when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Refuse DeleteTable, whoever asks: CloudFormation included. Off by default because a first
   * deploy that fails after the table exists rolls back by deleting it, and a protected table
   * would fail that rollback (the stack stays in ROLLBACK_FAILED and the retry cannot start).
   * Turn it on once the first deploy has succeeded (docs/deploy.md); the stack's deletion and a
   * replacement keep the table either way (`removalPolicy`).
   * @default false
   */
  readonly deletionProtection?: boolean;
}

export class Ledger extends Construct {
  /**
   * The table: `pk` (S) / `sk` (S), on demand, point-in-time recovery, AWS-managed encryption, TTL on
   * `ttl` (expired idempotency records), and
   * the sparse keys-only index of live files by folder that the path policy's folder rule queries.
   */
  public readonly table: dynamodb.Table;
  /**
   * The key attributes of every secondary index. An item that carries an index's keys is in that
   * index, whatever its partition: a principal confined to its own rows by `dynamodb:LeadingKeys`
   * must also be refused these attributes (`dynamodb:Attributes`), or its rows join the listings.
   */
  public readonly indexKeyAttributes: readonly string[];

  constructor(scope: Construct, id: string, props: LedgerProps = {}) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Without the rule, idempotency records (one per mutating call) would pile up forever.
      timeToLiveAttribute: TTL_ATTRIBUTE,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      deletionProtection: props.deletionProtection ?? false,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    // The pending-uploads index holds the pending pointers alone (their keys are written on nothing
    // else): the sweeps query it instead of scanning the whole table (docs/scale.md).
    const indexes = [LIVE_FILES_INDEX, PENDING_INDEX];
    for (const index of indexes) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.name,
        partitionKey: { name: index.partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: index.sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.KEYS_ONLY,
      });
    }
    this.indexKeyAttributes = indexes.flatMap((index) => [index.partitionKey, index.sortKey]);
  }
}
