"""Refunds only of outgoing payments (remittance, card payment, payout): refunding a deposit or an FX
conversion would create money. `refunds_guard` refuses any other original.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The refundable kinds are spelled out in the SQL below: a migration is a fixed snapshot (the code's list is
# stores.postgres.models.REFUNDABLE_KINDS).
GUARD = """
    CREATE OR REPLACE FUNCTION refunds_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        orig record;
        already bigint;
    BEGIN
        SELECT kind, amount_minor, currency, status INTO orig FROM transactions
        WHERE id = NEW.transaction_id AND created_at = NEW.transaction_created_at FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NEW;  -- the foreign key reports the missing original
        END IF;
        -- No refund row, failed ones included, may point at money that came in (a deposit) or was
        -- exchanged (an FX conversion): giving it "back" would create money.
        IF orig.kind NOT IN ('remittance', 'card_payment', 'payout') THEN
            RAISE EXCEPTION 'only an outgoing payment can be refunded, not a %', orig.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_original_refundable';
        END IF;
        IF NEW.status = 'failed' THEN
            RETURN NEW;
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
"""

# 0003's function, verbatim, so a rollback restores the identical schema.
PREVIOUS_GUARD = """
    CREATE OR REPLACE FUNCTION refunds_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
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
"""


def upgrade() -> None:
    sql(GUARD)


def downgrade() -> None:
    sql(PREVIOUS_GUARD)
