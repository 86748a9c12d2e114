"""Database roles and grants: least privilege enforced by PostgreSQL, not only by code.

- kredete_app: the services. DML on business tables; transactions INSERT/UPDATE (never DELETE);
  ledger_entries INSERT only; wallets without the balance column (the ledger maintains it);
  audit_logs INSERT and SELECT only.
- kredete_agent_ro: the agent tools. SELECT on exactly what the tools read, `users_public` instead of
  `users` (plus the name and address ciphertexts, for the redaction layer's known-values list);
  read-only transactions and a statement timeout by default; cannot create objects.
- kredete_agent_log: may only EXECUTE audit_append.

Roles are cluster-wide and created NOLOGIN; `kredete db migrate` gives them LOGIN and a password on
the local stack. The downgrade revokes this database's grants and drops a role only when no other
database still uses it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROLES = ("kredete_app", "kredete_agent_ro", "kredete_agent_log")

APP_DML = ("users", "kyc_records", "subscriptions", "notification_prefs", "sessions", "coach_assignments",
           "payment_methods", "refunds", "settlements", "idempotency_keys", "fx_rates", "fx_orders",
           "stablecoin_transfers", "hedging_positions", "liquidity_pools")
AGENT_READ = ("transactions", "ledger_entries", "wallets", "users_public", "corridors", "currencies", "refunds",
              "fx_rates", "fx_orders", "coach_assignments", "audit_logs", "audit_chain_head")


def upgrade() -> None:
    for role in ROLES:
        sql(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
            END IF;
        EXCEPTION WHEN duplicate_object THEN NULL;  -- created concurrently by another database's migration
        END $$;
        """)
    sql(f"""
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION audit_append(text, text, text, text, uuid, text, text, text, integer, jsonb, integer,
                                            text, jsonb, timestamptz) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION audit_canonical(bigint, timestamptz, text, text, uuid, text, text, text, text, text,
                                               integer, jsonb, integer, text, jsonb) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION ensure_monthly_partitions(regclass, date, integer) FROM PUBLIC;
    GRANT USAGE ON SCHEMA public TO kredete_app, kredete_agent_ro, kredete_agent_log;

    GRANT SELECT ON ALL TABLES IN SCHEMA public TO kredete_app;
    REVOKE SELECT ON ledger_pending, ledger_check_marker FROM kredete_app;
    GRANT INSERT, UPDATE, DELETE ON {", ".join(APP_DML)} TO kredete_app;
    GRANT INSERT, UPDATE ON transactions TO kredete_app;
    GRANT INSERT ON ledger_entries TO kredete_app;
    GRANT INSERT (id, user_id, kind, currency, status, label, created_at, updated_at) ON wallets TO kredete_app;
    GRANT UPDATE (status, label, updated_at) ON wallets TO kredete_app;
    GRANT INSERT ON audit_logs TO kredete_app;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kredete_app;
    GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, uuid, text, text, text, integer, jsonb, integer,
                                           text, jsonb, timestamptz) TO kredete_app, kredete_agent_log;
    GRANT EXECUTE ON FUNCTION audit_canonical(bigint, timestamptz, text, text, uuid, text, text, text, text, text,
                                              integer, jsonb, integer, text, jsonb) TO kredete_app, kredete_agent_ro;

    GRANT SELECT ON {", ".join(AGENT_READ)} TO kredete_agent_ro;
    GRANT SELECT (id, full_name_enc, address_enc) ON users TO kredete_agent_ro;

    ALTER ROLE kredete_agent_ro SET default_transaction_read_only = on;
    ALTER ROLE kredete_agent_ro SET statement_timeout = '5s';
    ALTER ROLE kredete_agent_ro SET idle_in_transaction_session_timeout = '30s';
    ALTER ROLE kredete_agent_log SET statement_timeout = '2s';
    ALTER ROLE kredete_app SET idle_in_transaction_session_timeout = '60s';
    """)


def downgrade() -> None:
    for role in ROLES:
        sql(f"""
        DROP OWNED BY {role};
        DO $$ BEGIN
            DROP ROLE {role};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {role} is still used by another database; kept';
        END $$;
        """)
    sql("""
    GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, uuid, text, text, text, integer, jsonb, integer,
                                           text, jsonb, timestamptz) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION audit_canonical(bigint, timestamptz, text, text, uuid, text, text, text, text, text,
                                              integer, jsonb, integer, text, jsonb) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION ensure_monthly_partitions(regclass, date, integer) TO PUBLIC;
    """)
