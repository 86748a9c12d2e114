"""Core payments: wallets, payment_methods, transactions and ledger_entries (partitioned by month),
refunds, settlements, idempotency_keys; the double-entry integrity machinery.

Integrity enforced here, in the database:
- every posting balances to zero per (transaction, currency) at COMMIT (deferred constraint trigger);
- ledger entries are immutable (corrections are new postings);
- wallet balances are maintained from the ledger by a statement trigger (set-based, cheap for COPY),
  customer wallets never go negative, and `wallet_balance_mismatches` proves them derivable;
- transaction status follows a state machine; money columns are positive BIGINT minor units;
- refunds never exceed the original (checked under a row lock on the original).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from migrations.helpers import monthly_partitions, sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE TYPE wallet_kind AS ENUM ('customer', 'clearing', 'fees', 'liquidity', 'payout');
    CREATE TYPE wallet_status AS ENUM ('active', 'frozen', 'closed');
    CREATE TYPE payment_method_kind AS ENUM ('card', 'bank_account', 'mobile_money', 'crypto_wallet');
    CREATE TYPE transaction_kind AS ENUM ('deposit', 'remittance', 'payout', 'fx_conversion', 'refund',
                                          'card_payment', 'fee');
    CREATE TYPE transaction_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'cancelled',
                                            'reversed');
    CREATE TYPE ledger_direction AS ENUM ('debit', 'credit');
    CREATE TYPE refund_status AS ENUM ('pending', 'completed', 'failed');
    CREATE TYPE settlement_status AS ENUM ('open', 'submitted', 'settled', 'failed');

    -- balance_minor = sum(credits) - sum(debits) of the wallet's ledger entries, kept by ledger triggers.
    -- House wallets (user_id NULL) are the company's side of each posting and may go negative.
    CREATE TABLE wallets (
        id             uuid PRIMARY KEY,
        user_id        uuid REFERENCES users (id),
        kind           wallet_kind NOT NULL,
        currency       text NOT NULL REFERENCES currencies (code),
        balance_minor  bigint NOT NULL DEFAULT 0,
        status         wallet_status NOT NULL DEFAULT 'active',
        label          text,
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT wallets_id_currency_key UNIQUE (id, currency),
        CONSTRAINT wallets_id_user_currency_key UNIQUE (id, user_id, currency),
        CONSTRAINT wallets_owner CHECK ((kind = 'customer') = (user_id IS NOT NULL)),
        CONSTRAINT wallets_customer_non_negative CHECK (kind <> 'customer' OR balance_minor >= 0)
    );
    CREATE UNIQUE INDEX wallets_one_per_user_currency ON wallets (user_id, currency) WHERE kind = 'customer';
    CREATE UNIQUE INDEX wallets_house_label ON wallets (kind, currency, label) WHERE user_id IS NULL;
    -- Balance changes come from the ledger; updated_at tracks changes of status and label only.
    CREATE TRIGGER wallets_updated_at BEFORE UPDATE OF status, label ON wallets
        FOR EACH ROW EXECUTE FUNCTION set_updated_at();

    -- The house wallets every posting needs, one per (kind, currency), with stable ids.
    INSERT INTO wallets (id, user_id, kind, currency, label, created_at, updated_at)
    SELECT md5('house:' || k.kind || ':' || c.code)::uuid, NULL, k.kind::wallet_kind, c.code, 'main',
           '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'
    FROM currencies c CROSS JOIN (VALUES ('clearing'), ('fees'), ('liquidity'), ('payout')) AS k (kind);

    CREATE TABLE payment_methods (
        id                uuid PRIMARY KEY,
        user_id           uuid NOT NULL REFERENCES users (id),
        kind              payment_method_kind NOT NULL,
        provider          text NOT NULL,
        currency          text NOT NULL REFERENCES currencies (code),
        country           char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
        label             text NOT NULL,
        last4             char(4) CHECK (last4 ~ '^[0-9]{4}$'),
        details_enc       text NOT NULL CONSTRAINT payment_methods_details_encrypted CHECK (details_enc LIKE 'enc1.%'),
        fingerprint_bidx  text NOT NULL CHECK (fingerprint_bidx ~ '^[0-9a-f]{64}$'),
        status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'expired')),
        created_at        timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT payment_methods_user_fingerprint_key UNIQUE (user_id, fingerprint_bidx)
    );

    CREATE TABLE transactions (
        id                      uuid NOT NULL,
        created_at              timestamptz NOT NULL,
        updated_at              timestamptz NOT NULL,
        user_id                 uuid NOT NULL,
        kind                    transaction_kind NOT NULL,
        status                  transaction_status NOT NULL DEFAULT 'pending',
        corridor_id             text REFERENCES corridors (id),
        wallet_id               uuid NOT NULL,
        amount_minor            bigint NOT NULL CONSTRAINT transactions_amount_positive CHECK (amount_minor > 0),
        currency                text NOT NULL,
        fee_minor               bigint NOT NULL DEFAULT 0 CONSTRAINT transactions_fee_non_negative
                                    CHECK (fee_minor >= 0),
        dest_amount_minor       bigint CONSTRAINT transactions_dest_amount_positive CHECK (dest_amount_minor > 0),
        dest_currency           text REFERENCES currencies (code),
        fx_rate                 numeric(24, 12) CHECK (fx_rate > 0),
        fx_rate_observed_at     timestamptz,
        fx_order_id             uuid,
        payment_method_id       uuid REFERENCES payment_methods (id),
        reference               text NOT NULL CHECK (reference ~ '^KRD-[0-9A-Z]{12}$'),
        counterparty_name       text CHECK (length(counterparty_name) <= 200),
        counterparty_reference  text CHECK (length(counterparty_reference) <= 200),
        description             text CHECK (length(description) <= 1000),
        memo                    text CHECK (length(memo) <= 1000),
        failure_reason          text,
        completed_at            timestamptz,
        PRIMARY KEY (id, created_at),
        -- One FK check proves the wallet exists, belongs to the user and holds the currency.
        CONSTRAINT transactions_wallet_fkey FOREIGN KEY (wallet_id, user_id, currency)
            REFERENCES wallets (id, user_id, currency),
        CONSTRAINT transactions_dest_pair CHECK ((dest_currency IS NULL) = (dest_amount_minor IS NULL)),
        CONSTRAINT transactions_fx_carries_rate CHECK (dest_currency IS NULL OR dest_currency = currency
            OR (fx_rate IS NOT NULL AND fx_rate_observed_at IS NOT NULL AND fx_rate_observed_at <= created_at)),
        CONSTRAINT transactions_remittance_has_corridor CHECK (kind <> 'remittance' OR corridor_id IS NOT NULL),
        CONSTRAINT transactions_completed_has_time CHECK (
            (status IN ('completed', 'reversed')) = (completed_at IS NOT NULL)),
        CONSTRAINT transactions_failed_has_reason CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
    ) PARTITION BY RANGE (created_at);
    CREATE INDEX transactions_user_time ON transactions (user_id, created_at DESC, id DESC);
    CREATE INDEX transactions_time ON transactions (created_at DESC, id DESC);
    CREATE INDEX transactions_open_status ON transactions (status, created_at)
        WHERE status IN ('pending', 'processing');
    CREATE INDEX transactions_corridor_time ON transactions (corridor_id, created_at) WHERE corridor_id IS NOT NULL;
    CREATE INDEX transactions_reference ON transactions (reference);
    CREATE INDEX transactions_wallet_time ON transactions (wallet_id, created_at);

    -- State machine: pending -> processing -> completed -> reversed; failed/cancelled are terminal.
    -- Money fields never change after insert.
    CREATE FUNCTION transactions_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.amount_minor <> OLD.amount_minor OR NEW.currency <> OLD.currency OR NEW.fee_minor <> OLD.fee_minor
           OR NEW.user_id <> OLD.user_id OR NEW.wallet_id <> OLD.wallet_id
           OR NEW.dest_amount_minor IS DISTINCT FROM OLD.dest_amount_minor
           OR NEW.dest_currency IS DISTINCT FROM OLD.dest_currency OR NEW.fx_rate IS DISTINCT FROM OLD.fx_rate THEN
            RAISE EXCEPTION 'money fields of a transaction are immutable'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_money_immutable';
        END IF;
        IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
               (OLD.status = 'pending' AND NEW.status IN ('processing', 'completed', 'failed', 'cancelled'))
            OR (OLD.status = 'processing' AND NEW.status IN ('completed', 'failed'))
            OR (OLD.status = 'completed' AND NEW.status = 'reversed')) THEN
            RAISE EXCEPTION 'transaction status cannot go from % to %', OLD.status, NEW.status
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_status_transition';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER transactions_guard_update BEFORE UPDATE ON transactions
        FOR EACH ROW EXECUTE FUNCTION transactions_guard_update();

    -- Financial records are never deleted (a reversal is a status and a new posting).
    CREATE FUNCTION transactions_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'transactions are never deleted; reverse them instead'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_no_delete';
    END $$;
    CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
        FOR EACH ROW EXECUTE FUNCTION transactions_no_delete();
    CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
        FOR EACH STATEMENT EXECUTE FUNCTION transactions_no_delete();

    -- Entries of one transaction share its created_at (partition key and FK), so a posting lives in one
    -- partition. Amounts are positive; the direction says debit or credit.
    CREATE TABLE ledger_entries (
        transaction_id  uuid NOT NULL,
        created_at      timestamptz NOT NULL,
        line_no         smallint NOT NULL CHECK (line_no > 0),
        wallet_id       uuid NOT NULL,
        currency        text NOT NULL,
        direction       ledger_direction NOT NULL,
        amount_minor    bigint NOT NULL CONSTRAINT ledger_entries_amount_positive CHECK (amount_minor > 0),
        entry_type      text NOT NULL CHECK (entry_type IN ('principal', 'fee', 'fx', 'funding', 'payout', 'refund')),
        PRIMARY KEY (transaction_id, created_at, line_no),
        -- "Every entry belongs to an existing transaction" is checked set-based by ledger_after_insert,
        -- once per statement: a declarative FK into the partitioned transactions table costs a
        -- cross-partition lookup per row (about 50us, 10x the row's own cost when bulk loading).
        -- Transactions can never be deleted (transactions_no_delete), so the check cannot go stale.
        -- The wallet must hold the entry's currency.
        CONSTRAINT ledger_entries_wallet_fkey FOREIGN KEY (wallet_id, currency) REFERENCES wallets (id, currency)
    ) PARTITION BY RANGE (created_at);
    CREATE INDEX ledger_entries_wallet_time ON ledger_entries (wallet_id, created_at);

    CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger entries are immutable; post a correcting transaction'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_immutable';
    END $$;
    CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable();

    -- Per database transaction, the net of every (transaction, currency) touched so far when non-zero.
    -- Since entries are insert-only, "every database transaction adds balanced postings" is the same as
    -- "every transaction balances". Rows live only until the commit check; a rollback discards them.
    CREATE UNLOGGED TABLE ledger_pending (
        xact            bigint NOT NULL,
        transaction_id  uuid NOT NULL,
        currency        text NOT NULL,
        net_minor       bigint NOT NULL,
        PRIMARY KEY (xact, transaction_id, currency)
    );
    CREATE UNLOGGED TABLE ledger_check_marker (xact bigint PRIMARY KEY);

    -- Set-based and once per statement (a COPY of a million rows fires it once): apply the wallet
    -- deltas and remember any (transaction, currency) the statement left unbalanced.
    CREATE FUNCTION ledger_after_insert() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        n integer;
    BEGIN
        IF EXISTS (SELECT 1 FROM (SELECT DISTINCT transaction_id, created_at FROM new_rows) r
                   WHERE NOT EXISTS (SELECT 1 FROM transactions t
                                     WHERE t.id = r.transaction_id AND t.created_at = r.created_at)) THEN
            RAISE EXCEPTION 'ledger entry for a transaction that does not exist'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_transaction_fkey';
        END IF;
        IF EXISTS (SELECT 1 FROM new_rows r JOIN wallets w ON w.id = r.wallet_id
                   WHERE w.status <> 'active' AND r.direction = 'debit') THEN
            RAISE EXCEPTION 'a frozen or closed wallet cannot be debited'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_wallet_active';
        END IF;
        UPDATE wallets w SET balance_minor = w.balance_minor + d.delta
        FROM (SELECT wallet_id, sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) AS delta
              FROM new_rows GROUP BY wallet_id) d
        WHERE w.id = d.wallet_id AND d.delta <> 0;

        INSERT INTO ledger_pending AS p (xact, transaction_id, currency, net_minor)
        SELECT txid_current(), transaction_id, currency,
               sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END)
        FROM new_rows GROUP BY transaction_id, currency
        HAVING sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) <> 0
        ON CONFLICT (xact, transaction_id, currency) DO UPDATE SET net_minor = p.net_minor + EXCLUDED.net_minor;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            INSERT INTO ledger_check_marker (xact) VALUES (txid_current()) ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER ledger_after_insert AFTER INSERT ON ledger_entries
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_after_insert();

    -- Deferred to COMMIT: the whole database transaction's postings must net to zero.
    CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT transaction_id, currency INTO bad FROM ledger_pending
        WHERE xact = NEW.xact AND net_minor <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unbalanced posting: transaction % does not net to zero in %', bad.transaction_id,
                bad.currency USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_postings_balanced';
        END IF;
        DELETE FROM ledger_pending WHERE xact = NEW.xact;
        DELETE FROM ledger_check_marker WHERE xact = NEW.xact;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER ledger_check_balanced AFTER INSERT ON ledger_check_marker
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

    -- Wallets whose stored balance is not what their ledger says; empty when the books are right.
    CREATE VIEW wallet_balance_mismatches AS
        SELECT w.id AS wallet_id, w.currency, w.balance_minor AS stored_minor, COALESCE(l.net, 0) AS ledger_minor
        FROM wallets w
        LEFT JOIN (SELECT wallet_id, sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) AS net
                   FROM ledger_entries GROUP BY wallet_id) l ON l.wallet_id = w.id
        WHERE w.balance_minor <> COALESCE(l.net, 0);

    CREATE TABLE refunds (
        id                             uuid PRIMARY KEY,
        transaction_id                 uuid NOT NULL,
        transaction_created_at         timestamptz NOT NULL,
        refund_transaction_id          uuid,
        refund_transaction_created_at  timestamptz,
        amount_minor                   bigint NOT NULL CONSTRAINT refunds_amount_positive CHECK (amount_minor > 0),
        currency                       text NOT NULL REFERENCES currencies (code),
        reason                         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
        status                         refund_status NOT NULL DEFAULT 'pending',
        created_at                     timestamptz NOT NULL DEFAULT now(),
        completed_at                   timestamptz,
        CONSTRAINT refunds_original_fkey FOREIGN KEY (transaction_id, transaction_created_at)
            REFERENCES transactions (id, created_at),
        CONSTRAINT refunds_refund_transaction_fkey FOREIGN KEY (refund_transaction_id, refund_transaction_created_at)
            REFERENCES transactions (id, created_at),
        CONSTRAINT refunds_refund_transaction_pair CHECK (
            (refund_transaction_id IS NULL) = (refund_transaction_created_at IS NULL)),
        CONSTRAINT refunds_completed_has_time CHECK ((status = 'completed') = (completed_at IS NOT NULL))
    );
    CREATE INDEX refunds_transaction ON refunds (transaction_id);

    -- Serialised per original by a row lock, so two concurrent refunds cannot together exceed it.
    CREATE FUNCTION refunds_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        orig record;
        already bigint;
    BEGIN
        IF NEW.status = 'failed' THEN
            RETURN NEW;
        END IF;
        SELECT amount_minor, currency, status INTO orig FROM transactions
        WHERE id = NEW.transaction_id AND created_at = NEW.transaction_created_at FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NEW;  -- the foreign key reports the missing original
        END IF;
        IF orig.status <> 'completed' THEN
            RAISE EXCEPTION 'only a completed transaction can be refunded'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_original_completed';
        END IF;
        IF NEW.currency <> orig.currency THEN
            RAISE EXCEPTION 'a refund is in the currency of the original'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_currency_matches';
        END IF;
        SELECT COALESCE(sum(amount_minor), 0) INTO already FROM refunds
        WHERE transaction_id = NEW.transaction_id AND status <> 'failed' AND id <> NEW.id;
        IF already + NEW.amount_minor > orig.amount_minor THEN
            RAISE EXCEPTION 'refunds would exceed the original amount'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_not_exceeding_original';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refunds_guard BEFORE INSERT OR UPDATE OF amount_minor, status ON refunds
        FOR EACH ROW EXECUTE FUNCTION refunds_guard();

    CREATE TABLE settlements (
        id                  uuid PRIMARY KEY,
        corridor_id         text NOT NULL REFERENCES corridors (id),
        partner             text NOT NULL,
        currency            text NOT NULL REFERENCES currencies (code),
        period_start        timestamptz NOT NULL,
        period_end          timestamptz NOT NULL,
        transaction_count   integer NOT NULL CHECK (transaction_count >= 0),
        gross_minor         bigint NOT NULL CHECK (gross_minor >= 0),
        fee_minor           bigint NOT NULL CHECK (fee_minor >= 0),
        net_minor           bigint NOT NULL,
        status              settlement_status NOT NULL DEFAULT 'open',
        external_reference  text,
        created_at          timestamptz NOT NULL DEFAULT now(),
        settled_at          timestamptz,
        CONSTRAINT settlements_period CHECK (period_end > period_start),
        CONSTRAINT settlements_net CHECK (net_minor = gross_minor - fee_minor),
        CONSTRAINT settlements_settled_has_time CHECK ((status = 'settled') = (settled_at IS NOT NULL)),
        CONSTRAINT settlements_period_key UNIQUE (corridor_id, partner, period_start)
    );

    -- Retryable writes: the first request with a key wins; a retry with the same body gets the same
    -- resource, a different body is a conflict.
    CREATE TABLE idempotency_keys (
        user_id              uuid NOT NULL REFERENCES users (id),
        key                  text NOT NULL CHECK (length(key) BETWEEN 8 AND 200),
        operation            text NOT NULL,
        request_hash         text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
        resource_id          uuid NOT NULL,
        created_at           timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, key)
    );
    """)
    for parent in ("transactions", "ledger_entries"):
        monthly_partitions(parent)


def downgrade() -> None:
    sql("""
    DROP TABLE idempotency_keys;
    DROP TABLE settlements;
    DROP TABLE refunds;
    DROP FUNCTION refunds_guard();
    DROP VIEW wallet_balance_mismatches;
    DROP TABLE ledger_entries;
    DROP TABLE ledger_check_marker;
    DROP TABLE ledger_pending;
    DROP FUNCTION ledger_check_balanced();
    DROP FUNCTION ledger_after_insert();
    DROP FUNCTION ledger_entries_immutable();
    DROP TABLE transactions;
    DROP FUNCTION transactions_no_delete();
    DROP FUNCTION transactions_guard_update();
    DROP TABLE payment_methods;
    DROP TABLE wallets;
    DROP TYPE settlement_status;
    DROP TYPE refund_status;
    DROP TYPE ledger_direction;
    DROP TYPE transaction_status;
    DROP TYPE transaction_kind;
    DROP TYPE payment_method_kind;
    DROP TYPE wallet_status;
    DROP TYPE wallet_kind;
    """)
