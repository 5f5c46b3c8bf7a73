import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

export type Engine = 'sqlite' | 'postgres';

/**
 * Schema migrations, in code so `dist/` carries them. Written once for both
 * engines: integers for times (ms), 0/1 for booleans, blobs for ciphertext.
 */
const m0001 = (engine: Engine): Migration => ({
  async up(db: Kysely<any>) {
    const blob = engine === 'postgres' ? 'bytea' : 'blob';
    await db.schema
      .createTable('merchants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('allowed_origins', 'text', (c) => c.notNull())
      .addColumn('allowed_proxy_targets', 'text', (c) => c.notNull())
      .addColumn('processor', 'text', (c) => c.notNull())
      .addColumn('cvv_block_threshold', 'integer', (c) => c.notNull())
      .addColumn('cvc_session_ttl_seconds', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('api_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull().references('merchants.id'))
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull().unique())
      .addColumn('suffix', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('revoked_at', 'bigint')
      .execute();
    await db.schema
      .createTable('signing_keys')
      .addColumn('kid', 'text', (c) => c.primaryKey())
      .addColumn('alg', 'text', (c) => c.notNull())
      .addColumn('public_jwk', 'text', (c) => c.notNull())
      .addColumn('private_sealed', blob, (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('activated_at', 'bigint', (c) => c.notNull())
      .addColumn('retired_at', 'bigint')
      .execute();
    await db.schema
      .createTable('cards')
      .addColumn('token', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull().references('merchants.id'))
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('brand', 'text', (c) => c.notNull())
      .addColumn('last4', 'text', (c) => c.notNull())
      .addColumn('bin', 'text', (c) => c.notNull())
      .addColumn('exp_month', 'integer', (c) => c.notNull())
      .addColumn('exp_year', 'integer', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('number_sealed', blob, (c) => c.notNull())
      .addColumn('holder_sealed', blob)
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('cards_merchant_fp').on('cards').columns(['merchant_id', 'fingerprint']).execute();
    await db.schema
      .createTable('cvv_status')
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('failed_attempts', 'integer', (c) => c.notNull())
      .addColumn('blocked', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('cvv_status_pk', ['merchant_id', 'fingerprint'])
      .execute();
    await db.schema
      .createTable('cvc_sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('card_token', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text')
      .addColumn('sealed', blob, (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('retention', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('first_used_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('cvc_sessions_card').on('cvc_sessions').columns(['card_token']).execute();
    await db.schema.createIndex('cvc_sessions_session').on('cvc_sessions').columns(['session_id']).execute();
    await db.schema.createIndex('cvc_sessions_expiry').on('cvc_sessions').columns(['expires_at']).execute();
    await db.schema
      .createTable('sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('card_token', 'text', (c) => c.notNull())
      .addColumn('operations', 'text', (c) => c.notNull())
      .addColumn('amount_value', 'bigint')
      .addColumn('amount_currency', 'text')
      .addColumn('reference', 'text')
      .addColumn('require_3ds', 'integer', (c) => c.notNull())
      .addColumn('require_cvv', 'integer', (c) => c.notNull())
      .addColumn('max_attempts', 'integer', (c) => c.notNull())
      .addColumn('cvv_retention', 'text', (c) => c.notNull())
      .addColumn('form', 'text', (c) => c.notNull())
      .addColumn('return_url', 'text')
      .addColumn('metadata', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('jti', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull())
      .addColumn('att_collect', 'integer', (c) => c.notNull())
      .addColumn('att_threeds', 'integer', (c) => c.notNull())
      .addColumn('att_charge', 'integer', (c) => c.notNull())
      .addColumn('results', 'text', (c) => c.notNull())
      .addColumn('replay_jti', 'text')
      .addColumn('replay_hash', 'text')
      .addColumn('replay_sealed', blob)
      .addColumn('replay_at', 'bigint')
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('sessions_merchant').on('sessions').columns(['merchant_id', 'created_at']).execute();
    await db.schema
      .createTable('idempotency_keys')
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('endpoint', 'text', (c) => c.notNull())
      .addColumn('idem_key', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('status', 'integer')
      .addColumn('response_sealed', blob)
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('idempotency_pk', ['merchant_id', 'endpoint', 'idem_key'])
      .execute();
    await db.schema.createIndex('idempotency_expiry').on('idempotency_keys').columns(['expires_at']).execute();
    await db.schema
      .createTable('meta')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
  },
});

/** 3-D Secure transactions, charges (intent before the processor is called), webhooks and their outbox. */
const m0002 = (engine: Engine): Migration => ({
  async up(db: Kysely<any>) {
    const blob = engine === 'postgres' ? 'bytea' : 'blob';
    await db.schema
      .createTable('tds_transactions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('ds_transaction_id', 'text', (c) => c.notNull())
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('result_status', 'text')
      .addColumn('eci', 'text')
      .addColumn('cavv_sealed', blob)
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('completed_at', 'bigint')
      .execute();
    await db.schema.createIndex('tds_session').on('tds_transactions').columns(['session_id', 'created_at']).execute();
    await db.schema
      .createTable('charges')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('idempotency_key', 'text')
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('provider_key', 'text', (c) => c.notNull())
      .addColumn('processor', 'text', (c) => c.notNull())
      .addColumn('amount_value', 'bigint', (c) => c.notNull())
      .addColumn('currency', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('authorization_code', 'text')
      .addColumn('decline_code', 'text')
      .addColumn('cvv_result', 'text')
      .addColumn('avs_result', 'text')
      .addColumn('network_transaction_id', 'text')
      .addColumn('response_sealed', blob)
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('charges_idem')
      .unique()
      .on('charges')
      .columns(['merchant_id', 'mode', 'idempotency_key'])
      .where('idempotency_key', 'is not', null)
      .execute();
    await db.schema.createIndex('charges_session').on('charges').columns(['session_id']).execute();
    await db.schema.createIndex('charges_pending').on('charges').columns(['status', 'created_at']).execute();
    await db.schema
      .createTable('webhook_endpoints')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('events', 'text', (c) => c.notNull())
      .addColumn('secret_sealed', blob, (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('webhook_endpoints_merchant').on('webhook_endpoints').columns(['merchant_id', 'mode']).execute();
    await db.schema
      .createTable('webhook_outbox')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('endpoint_id', 'text', (c) => c.notNull())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
      .addColumn('locked_until', 'bigint', (c) => c.notNull())
      .addColumn('last_status', 'integer')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('delivered_at', 'bigint')
      .execute();
    await db.schema.createIndex('webhook_outbox_due').on('webhook_outbox').columns(['status', 'next_attempt_at']).execute();
  },
});

/** Merchants' custom CVV forms (sanitized HTML and CSS). */
const m0003: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('custom_forms')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('html', 'text', (c) => c.notNull())
      .addColumn('css', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('custom_forms_merchant').on('custom_forms').columns(['merchant_id', 'mode', 'created_at']).execute();
  },
};

/**
 * Per-CVV key shares, apart from the ciphertext: a CVV's data key is derived
 * from the CVV key and its share, and the share is deleted with the CVV. On
 * PostgreSQL the table is UNLOGGED (never in the WAL) and vacuumed after
 * deletions, so a dead cvc_sessions row left for vacuum holds only a
 * ciphertext nothing can open.
 */
const m0004 = (engine: Engine): Migration => ({
  async up(db: Kysely<any>) {
    if (engine === 'postgres') {
      await sql`CREATE UNLOGGED TABLE cvv_keys (cvc_id text PRIMARY KEY, share bytea NOT NULL, created_at bigint NOT NULL)`.execute(db);
    } else {
      await db.schema
        .createTable('cvv_keys')
        .addColumn('cvc_id', 'text', (c) => c.primaryKey())
        .addColumn('share', 'blob', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    }
  },
});

/** Indexes found by the benchmark's profile: the sweeper's expiry scan, a card's CVC sessions, orphan key shares. */
const m0005: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.createIndex('sessions_status_expiry').on('sessions').columns(['status', 'expires_at']).execute();
    await db.schema.createIndex('cvc_sessions_card_level').on('cvc_sessions').columns(['card_token', 'session_id', 'created_at']).execute();
    await db.schema.createIndex('cvv_keys_created').on('cvv_keys').columns(['created_at']).execute();
  },
};

/**
 * A charge in flight owns its session (API.md section 2): the session row
 * names the charge from the moment it wins its token until its outcome is
 * recorded. Charges that send a CVV carry the card number's fingerprint, so
 * the pending ones are the CVV attempts in flight (counted against the
 * blocking threshold before the processor is called).
 */
const m0006: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('sessions').addColumn('charge_id', 'text').execute();
    await db.schema.alterTable('sessions').addColumn('charge_at', 'bigint').execute();
    await db.schema.alterTable('charges').addColumn('cvv_fingerprint', 'text').execute();
    await sql`CREATE INDEX sessions_charge_lock ON sessions (charge_at) WHERE charge_id IS NOT NULL`.execute(db);
    await sql`CREATE INDEX charges_cvv_in_flight ON charges (merchant_id, cvv_fingerprint) WHERE status = 'pending'`.execute(db);
  },
};

/**
 * Settings per mode (API.md section 8): a test key must never change where
 * live card data goes. Each merchant's one shared record becomes two rows,
 * test and live, both with what the merchant had set, so nothing is lost. The
 * merchants table keeps its name; its old setting columns are no longer read,
 * and the processor there (a sealed copy of the provider's credentials) is
 * cleared so it does not linger.
 */
const m0007: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('merchant_settings')
      .addColumn('merchant_id', 'text', (c) => c.notNull().references('merchants.id'))
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('allowed_origins', 'text', (c) => c.notNull())
      .addColumn('allowed_proxy_targets', 'text', (c) => c.notNull())
      .addColumn('processor', 'text', (c) => c.notNull())
      .addColumn('cvv_block_threshold', 'integer', (c) => c.notNull())
      .addColumn('cvc_session_ttl_seconds', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('merchant_settings_pk', ['merchant_id', 'mode'])
      .execute();
    for (const mode of ['test', 'live']) {
      await sql`INSERT INTO merchant_settings (merchant_id, mode, allowed_origins, allowed_proxy_targets, processor, cvv_block_threshold, cvc_session_ttl_seconds, updated_at)
        SELECT id, ${mode}, allowed_origins, allowed_proxy_targets, processor, cvv_block_threshold, cvc_session_ttl_seconds, updated_at FROM merchants`.execute(
        db,
      );
    }
    await sql`UPDATE merchants SET processor = '{"type":"simulator"}', allowed_origins = '[]', allowed_proxy_targets = '[]'`.execute(db);
  },
};

/**
 * PostgreSQL: the guard of a transaction unit's statement (kysely-store.ts,
 * Guarded). A unit's statements are sent in one round trip, so a statement
 * that finds nothing to change (a token already used, a CVV gone) must stop
 * the ones after it in the database itself: it raises, the transaction is
 * aborted, and the COMMIT sent behind it rolls back. SQLite checks in the
 * unit's synchronous transaction and needs nothing.
 */
const m0008 = (engine: Engine): Migration => ({
  async up(db: Kysely<any>) {
    if (engine !== 'postgres') return;
    await sql`CREATE OR REPLACE FUNCTION cvvops_refuse(refused boolean) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        IF refused THEN
          RAISE EXCEPTION 'cvvops: a guarded statement found no row' USING ERRCODE = 'CV001';
        END IF;
        RETURN false;
      END $$`.execute(db);
  },
});

/**
 * Lifetimes (README, "Data lifecycle"): indexes for the sweeps that end each
 * table's rows (replay records past their window, delivered webhook rows) and
 * the leases that let one instance of a cluster run the retention sweep.
 */
const m0009: Migration = {
  async up(db: Kysely<any>) {
    await sql`CREATE INDEX sessions_replay ON sessions (replay_at) WHERE replay_at IS NOT NULL`.execute(db);
    await db.schema.createIndex('webhook_outbox_delivered').on('webhook_outbox').columns(['status', 'delivered_at']).execute();
    await db.schema
      .createTable('leases')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('holder', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/**
 * Every event's own record (GET /Events), whether or not an endpoint listens;
 * kept 30 days by the retention sweep. And the replay-record index of 0009
 * narrowed to completed sessions: every operation rewrites its session's
 * replay record, so an index over all of them changed on every operation
 * (the benchmark showed it); active sessions' records are overwritten by the
 * next operation or cleared at cancel or expiry, completed ones are what the
 * sweeper must find.
 */
const m0010: Migration = {
  async up(db: Kysely<any>) {
    await sql`DROP INDEX sessions_replay`.execute(db);
    await sql`CREATE INDEX sessions_replay_completed ON sessions (replay_at) WHERE status = 'completed' AND replay_at IS NOT NULL`.execute(db);
    await db.schema
      .createTable('events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('events_merchant').on('events').columns(['merchant_id', 'mode', 'created_at', 'id']).execute();
    await db.schema.createIndex('events_created').on('events').columns(['created_at']).execute();
  },
};

/** An endpoint's deliveries, newest first (GET /WebhookEndpoints/{id}/deliveries). */
const m0011: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.createIndex('webhook_outbox_endpoint').on('webhook_outbox').columns(['endpoint_id', 'created_at', 'id']).execute();
  },
};

/** A session's trail (GET /CvvOperations/{id}/history): written with the state changes it records, deleted with the session. */
const m0012: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('session_history')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('session_id', 'text', (c) => c.notNull())
      .addColumn('merchant_id', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('operation', 'text')
      .addColumn('outcome', 'text')
      .addColumn('code', 'text')
      .addColumn('request_id', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('session_history_session').on('session_history').columns(['session_id', 'created_at', 'id']).execute();
  },
};

export function migrationProvider(engine: Engine): MigrationProvider {
  return {
    async getMigrations() {
      return {
        '0001_initial': m0001(engine),
        '0002_payments_webhooks': m0002(engine),
        '0003_custom_forms': m0003,
        '0004_cvv_key_shares': m0004(engine),
        '0005_indexes': m0005,
        '0006_charge_ownership': m0006,
        '0007_settings_per_mode': m0007,
        '0008_unit_guards': m0008(engine),
        '0009_lifetimes': m0009,
        '0010_events': m0010,
        '0011_deliveries': m0011,
        '0012_session_history': m0012,
      };
    },
  };
}
