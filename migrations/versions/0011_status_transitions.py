"""Status state machines in the database for fx_orders, settlements, stablecoin_transfers and kyc_records,
and FX orders tied to a rate row of their own currency pair.

One trigger function, `guard_status_transition(<table>)`, refuses any status change that is not a row of
`status_transitions` (no grant to any application role: the rules are schema, not data).
Inserts may start in any status; `transactions` and `refunds` keep their own guards (0003, 0009).

`fx_orders_guard` also checks that the referenced rate row quotes the order's pair (sell = base,
buy = quote), and now fires on every update, so swapping the rate or a currency is checked too.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: table -> {from status: allowed next statuses}; a status missing as a key is terminal.
TRANSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "fx_orders": {"quoted": ("executed", "cancelled", "failed"), "executed": ("settled", "failed")},
    # A failed settlement may be resubmitted: its period key (corridor, partner, period) allows one row.
    "settlements": {"open": ("submitted", "failed"), "submitted": ("settled", "failed"), "failed": ("submitted",)},
    "stablecoin_transfers": {"pending": ("confirming", "confirmed", "failed"), "confirming": ("confirmed", "failed")},
    "kyc_records": {"pending": ("verified", "rejected", "expired"), "verified": ("expired",)},
}

FX_GUARD = """
    CREATE OR REPLACE FUNCTION fx_orders_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        expected numeric;
        pair record;
    BEGIN
        -- The rate row must quote this order's pair, sell as base (buy = sell x rate).
        SELECT base_currency, quote_currency INTO pair FROM fx_rates
        WHERE id = NEW.rate_id AND observed_at = NEW.rate_observed_at;
        IF FOUND AND (pair.base_currency <> NEW.sell_currency OR pair.quote_currency <> NEW.buy_currency) THEN
            RAISE EXCEPTION 'the rate row quotes %/%, not the order''s %/%', pair.base_currency, pair.quote_currency,
                NEW.sell_currency, NEW.buy_currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'fx_orders_rate_pair';
        END IF;
        SELECT NEW.sell_amount_minor * NEW.rate * power(10::numeric, b.exponent - s.exponent) INTO expected
        FROM currencies s, currencies b WHERE s.code = NEW.sell_currency AND b.code = NEW.buy_currency;
        IF expected IS NOT NULL AND abs(NEW.buy_amount_minor - expected) > 1 THEN
            RAISE EXCEPTION 'buy amount does not match sell amount times rate'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'fx_orders_amounts_match_rate';
        END IF;
        RETURN NEW;
    END $$;
"""

# 0004's function and trigger, verbatim, so a rollback restores the identical schema.
PREVIOUS_FX_GUARD = """
    CREATE OR REPLACE FUNCTION fx_orders_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        expected numeric;
    BEGIN
        SELECT NEW.sell_amount_minor * NEW.rate * power(10::numeric, b.exponent - s.exponent) INTO expected
        FROM currencies s, currencies b WHERE s.code = NEW.sell_currency AND b.code = NEW.buy_currency;
        IF expected IS NOT NULL AND abs(NEW.buy_amount_minor - expected) > 1 THEN
            RAISE EXCEPTION 'buy amount does not match sell amount times rate'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'fx_orders_amounts_match_rate';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER fx_orders_guard BEFORE INSERT OR UPDATE OF sell_amount_minor, buy_amount_minor, rate
        ON fx_orders FOR EACH ROW EXECUTE FUNCTION fx_orders_guard();
"""


def upgrade() -> None:
    rows = ", ".join(f"('{table}', '{src}', '{dst}')" for table, moves in TRANSITIONS.items()
                     for src, targets in moves.items() for dst in targets)
    sql(f"""
    CREATE TABLE status_transitions (
        table_name   text NOT NULL,
        from_status  text NOT NULL,
        to_status    text NOT NULL,
        PRIMARY KEY (table_name, from_status, to_status),
        CONSTRAINT status_transitions_change CHECK (from_status <> to_status)
    );
    INSERT INTO status_transitions (table_name, from_status, to_status) VALUES {rows};

    CREATE FUNCTION guard_status_transition() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    BEGIN
        IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
               SELECT 1 FROM status_transitions WHERE table_name = TG_ARGV[0]
               AND from_status = OLD.status::text AND to_status = NEW.status::text) THEN
            RAISE EXCEPTION '% status cannot go from % to %', TG_ARGV[0], OLD.status, NEW.status
                USING ERRCODE = 'check_violation', CONSTRAINT = TG_ARGV[0] || '_status_transition';
        END IF;
        RETURN NEW;
    END $$;
    """)
    for table in TRANSITIONS:
        sql(f"CREATE TRIGGER {table}_status_transition BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION guard_status_transition('{table}');")
    sql(FX_GUARD)
    sql("""
    DROP TRIGGER fx_orders_guard ON fx_orders;
    CREATE TRIGGER fx_orders_guard BEFORE INSERT OR UPDATE ON fx_orders FOR EACH ROW EXECUTE FUNCTION fx_orders_guard();
    """)


def downgrade() -> None:
    sql("DROP TRIGGER fx_orders_guard ON fx_orders;")
    sql(PREVIOUS_FX_GUARD)
    for table in TRANSITIONS:
        sql(f"DROP TRIGGER {table}_status_transition ON {table};")
    sql("""
    DROP FUNCTION guard_status_transition();
    DROP TABLE status_transitions;
    """)
