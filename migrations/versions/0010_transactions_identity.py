"""Transactions: identity, kind and links immutable too; the service role updates only the mutable columns.

0003's guard froze the money columns but not id, created_at (the partition key: ledger entries and
refunds reference (id, created_at)), kind, reference, corridor_id, fx_rate_observed_at, fx_order_id or
payment_method_id, and kredete_app could UPDATE every column. Now the trigger refuses those changes for
every role, and kredete_app holds UPDATE only on the columns a lifecycle change touches.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: What kredete_app may change on a transaction (status changes and their notes, free-text corrections).
APP_UPDATABLE = ("status", "updated_at", "failure_reason", "completed_at", "description", "memo",
                 "counterparty_name", "counterparty_reference")

GUARD = """
    CREATE OR REPLACE FUNCTION transactions_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.amount_minor <> OLD.amount_minor OR NEW.currency <> OLD.currency OR NEW.fee_minor <> OLD.fee_minor
           OR NEW.user_id <> OLD.user_id OR NEW.wallet_id <> OLD.wallet_id
           OR NEW.dest_amount_minor IS DISTINCT FROM OLD.dest_amount_minor
           OR NEW.dest_currency IS DISTINCT FROM OLD.dest_currency OR NEW.fx_rate IS DISTINCT FROM OLD.fx_rate THEN
            RAISE EXCEPTION 'money fields of a transaction are immutable'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_money_immutable';
        END IF;
        -- Identity and linkage: changing them would orphan the posting (ledger entries and refunds point at
        -- (id, created_at); created_at also picks the partition) or rewrite what the money was.
        IF NEW.id <> OLD.id OR NEW.created_at <> OLD.created_at OR NEW.kind <> OLD.kind
           OR NEW.reference <> OLD.reference OR NEW.corridor_id IS DISTINCT FROM OLD.corridor_id
           OR NEW.fx_rate_observed_at IS DISTINCT FROM OLD.fx_rate_observed_at
           OR NEW.fx_order_id IS DISTINCT FROM OLD.fx_order_id
           OR NEW.payment_method_id IS DISTINCT FROM OLD.payment_method_id THEN
            RAISE EXCEPTION 'identity, kind and links of a transaction are immutable'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_identity_immutable';
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
"""

# 0003's function, verbatim, so a rollback restores the identical schema.
PREVIOUS_GUARD = """
    CREATE OR REPLACE FUNCTION transactions_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    sql(GUARD)
    sql(f"""
    REVOKE UPDATE ON transactions FROM kredete_app;
    GRANT UPDATE ({", ".join(APP_UPDATABLE)}) ON transactions TO kredete_app;
    """)


def downgrade() -> None:
    sql(f"""
    REVOKE UPDATE ({", ".join(APP_UPDATABLE)}) ON transactions FROM kredete_app;
    GRANT UPDATE ON transactions TO kredete_app;
    """)
    sql(PREVIOUS_GUARD)
