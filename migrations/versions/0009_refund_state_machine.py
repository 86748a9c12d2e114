"""Refund state machine and immutable refund facts.

Before this, `refunds_guard` let any refund move to `failed` (a completed refund flipped to failed left the
cap while its ledger credit stayed) and did not fire on a change of `transaction_id` at all. Now, for every
role including the owner:
- status: pending -> completed | failed; completed and failed are terminal;
- id, transaction_id, transaction_created_at, amount_minor, currency and created_at never change, and the
  refund transaction, once set, stays;
- a refund whose refund transaction has completed (its credit is posted) cannot fail.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE FUNCTION refunds_guard_update() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    BEGIN
        IF NEW.id <> OLD.id OR NEW.transaction_id <> OLD.transaction_id
           OR NEW.transaction_created_at <> OLD.transaction_created_at OR NEW.amount_minor <> OLD.amount_minor
           OR NEW.currency <> OLD.currency OR NEW.created_at <> OLD.created_at
           OR (OLD.refund_transaction_id IS NOT NULL AND (
                   NEW.refund_transaction_id IS DISTINCT FROM OLD.refund_transaction_id
                   OR NEW.refund_transaction_created_at IS DISTINCT FROM OLD.refund_transaction_created_at)) THEN
            RAISE EXCEPTION 'the original, amount, currency and refund transaction of a refund are immutable'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_immutable';
        END IF;
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            IF NOT (OLD.status = 'pending' AND NEW.status IN ('completed', 'failed')) THEN
                RAISE EXCEPTION 'refund status cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_status_transition';
            END IF;
            IF NEW.status = 'failed' AND EXISTS (
                   SELECT 1 FROM transactions t WHERE t.id = NEW.refund_transaction_id
                   AND t.created_at = NEW.refund_transaction_created_at AND t.status = 'completed') THEN
                RAISE EXCEPTION 'a refund whose credit is posted cannot fail; reverse its transaction instead'
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_credited_cannot_fail';
            END IF;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refunds_guard_update BEFORE UPDATE ON refunds
        FOR EACH ROW EXECUTE FUNCTION refunds_guard_update();
    """)


def downgrade() -> None:
    sql("""
    DROP TRIGGER refunds_guard_update ON refunds;
    DROP FUNCTION refunds_guard_update();
    """)
