"""Privacy: per-user encrypted PII (`enc2.` tokens), legal hold, data-subject requests, erased payment
methods, the audit archive, and search-feed views that leave erased users out.

- Encrypted columns accept `enc2.` tokens (encrypted under the user's own data key, `stores.keys`) beside the
  older `enc1.` ones; plaintext is still refused.
- `users.legal_hold_at/_reason`: a user under legal hold cannot be erased (`kredete dsr hold|release`).
  An erased user (`deleted_at`) keeps no PII column and no blind index.
- `payment_methods.status = 'erased'`: the row stays (transactions reference it) without details,
  fingerprint or last digits.
- `dsr_requests` / `dsr_steps`: every erasure and export, step by step, so an interrupted run continues.
- `audit_archive`: audit_logs partitions archived to the logs bucket (object lock) before they are dropped,
  with the chain segments that let `kredete db verify-audit` verify across the archive.
- `transactions_searchable`, `users_searchable`, `audit_logs_searchable`: what the search feeds read, so a
  rebuild never re-indexes an erased user (audit rows stay, with the user id masked).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

USER_PII = {"full_name_enc": "users_full_name_encrypted", "email_enc": "users_email_encrypted",
            "phone_enc": "users_phone_encrypted", "date_of_birth_enc": "users_dob_encrypted",
            "address_enc": "users_address_encrypted"}


def _checks(pattern: str) -> str:
    users = ",\n        ".join(f"DROP CONSTRAINT {name}, ADD CONSTRAINT {name} CHECK ({col} {pattern})"
                              for col, name in USER_PII.items())
    return f"""
    ALTER TABLE users
        {users};
    ALTER TABLE kyc_records DROP CONSTRAINT kyc_document_number_encrypted,
        ADD CONSTRAINT kyc_document_number_encrypted CHECK (document_number_enc {pattern});
    ALTER TABLE payment_methods DROP CONSTRAINT payment_methods_details_encrypted,
        ADD CONSTRAINT payment_methods_details_encrypted CHECK (details_enc {pattern});
    """


def upgrade() -> None:
    sql(_checks("~ '^enc[12]\\.'"))
    sql("""
    ALTER TABLE users
        ADD COLUMN legal_hold_at timestamptz,
        ADD COLUMN legal_hold_reason text CHECK (length(legal_hold_reason) BETWEEN 1 AND 500),
        ADD CONSTRAINT users_legal_hold_has_reason CHECK ((legal_hold_at IS NULL) = (legal_hold_reason IS NULL)),
        DROP CONSTRAINT users_deleted_has_no_pii,
        ADD CONSTRAINT users_deleted_has_no_pii CHECK (deleted_at IS NULL OR (full_name_enc IS NULL AND
            email_enc IS NULL AND phone_enc IS NULL AND date_of_birth_enc IS NULL AND address_enc IS NULL
            AND email_bidx IS NULL AND phone_bidx IS NULL));

    ALTER TABLE payment_methods
        DROP CONSTRAINT payment_methods_status_check,
        ADD CONSTRAINT payment_methods_status_check CHECK (status IN ('active', 'disabled', 'expired', 'erased')),
        ALTER COLUMN details_enc DROP NOT NULL,
        ALTER COLUMN fingerprint_bidx DROP NOT NULL,
        ADD CONSTRAINT payment_methods_erased_has_no_pii CHECK ((status = 'erased') =
            (details_enc IS NULL AND fingerprint_bidx IS NULL)),
        ADD CONSTRAINT payment_methods_erased_no_last4 CHECK (status <> 'erased' OR last4 IS NULL);

    CREATE TABLE dsr_requests (
        id           uuid PRIMARY KEY,
        kind         text NOT NULL CHECK (kind IN ('erase', 'export')),
        -- no foreign key: an access request may name an id we hold nothing for (an empty export)
        user_id      uuid NOT NULL,
        ticket       text NOT NULL CHECK (ticket ~ '^[A-Z][A-Z0-9]*-[0-9]+$'),
        reason       text NOT NULL CHECK (length(reason) BETWEEN 10 AND 500),
        actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
        status       text NOT NULL CHECK (status IN ('running', 'failed', 'done')),
        error        text,
        result       jsonb NOT NULL DEFAULT '{}',
        started_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        finished_at  timestamptz,
        CONSTRAINT dsr_requests_done_has_time CHECK ((status = 'done') = (finished_at IS NOT NULL))
    );
    -- At most one unfinished erasure per user: a rerun continues it instead of starting another.
    CREATE UNIQUE INDEX dsr_requests_one_open_erasure ON dsr_requests (user_id)
        WHERE kind = 'erase' AND status <> 'done';
    CREATE INDEX dsr_requests_user ON dsr_requests (user_id, started_at DESC);

    CREATE TABLE dsr_steps (
        request_id   uuid NOT NULL REFERENCES dsr_requests (id),
        step         text NOT NULL,
        status       text NOT NULL CHECK (status IN ('done', 'failed')),
        attempts     integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
        detail       jsonb NOT NULL DEFAULT '{}',
        error        text,
        started_at   timestamptz NOT NULL,
        finished_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (request_id, step)
    );

    CREATE TABLE audit_archive (
        partition    text PRIMARY KEY,
        month        date NOT NULL UNIQUE,
        rows         bigint NOT NULL CHECK (rows >= 0),
        first_id     bigint,
        last_id      bigint,
        -- maximal runs of the chain (in id order) that lie in this partition: first/last id, the prev_hash
        -- of the first row, the hash of the last, the row count
        segments     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(segments) = 'array'),
        object_key   text NOT NULL,
        version_id   text,
        sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        bytes        bigint NOT NULL CHECK (bytes >= 0),
        archived_at  timestamptz NOT NULL DEFAULT now(),
        dropped_at   timestamptz
    );

    CREATE VIEW transactions_searchable AS
        SELECT t.* FROM transactions t
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id AND u.deleted_at IS NOT NULL);
    CREATE VIEW users_searchable AS
        SELECT * FROM users_public WHERE deleted_at IS NULL;
    CREATE VIEW audit_logs_searchable AS
        SELECT a.id, a.occurred_at,
               CASE WHEN u.deleted_at IS NOT NULL AND strpos(a.actor_subject, u.id::text) > 0 THEN '[erased]'
                    ELSE a.actor_subject END AS actor_subject,
               a.actor_role, CASE WHEN u.deleted_at IS NULL THEN a.actor_user_id END AS actor_user_id,
               a.action, a.resource, a.args_digest, a.decision, a.reason, a.rows_returned, a.redactions,
               a.latency_ms, a.request_id
        FROM audit_logs a LEFT JOIN users u ON u.id = a.actor_user_id;

    GRANT SELECT, INSERT, UPDATE ON dsr_requests, dsr_steps, audit_archive TO kredete_app;
    GRANT SELECT ON transactions_searchable, users_searchable, audit_logs_searchable TO kredete_app,
        kredete_agent_ro;
    """)


def downgrade() -> None:
    sql("""
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM users WHERE deleted_at IS NOT NULL)
           OR EXISTS (SELECT 1 FROM payment_methods WHERE status = 'erased') THEN
            RAISE EXCEPTION 'users were erased in this database: 0011 cannot hold erased rows (payment methods '
                            'without details, users without blind indexes); it cannot be rolled back';
        END IF;
    END $$;
    DROP VIEW audit_logs_searchable;
    DROP VIEW users_searchable;
    DROP VIEW transactions_searchable;
    DROP TABLE audit_archive;
    DROP TABLE dsr_steps;
    DROP TABLE dsr_requests;
    ALTER TABLE payment_methods
        DROP CONSTRAINT payment_methods_erased_no_last4,
        DROP CONSTRAINT payment_methods_erased_has_no_pii,
        ALTER COLUMN fingerprint_bidx SET NOT NULL,
        ALTER COLUMN details_enc SET NOT NULL,
        DROP CONSTRAINT payment_methods_status_check,
        ADD CONSTRAINT payment_methods_status_check CHECK (status IN ('active', 'disabled', 'expired'));
    ALTER TABLE users
        DROP CONSTRAINT users_deleted_has_no_pii,
        ADD CONSTRAINT users_deleted_has_no_pii CHECK (deleted_at IS NULL OR (full_name_enc IS NULL AND
            email_enc IS NULL AND phone_enc IS NULL AND date_of_birth_enc IS NULL AND address_enc IS NULL)),
        DROP CONSTRAINT users_legal_hold_has_reason,
        DROP COLUMN legal_hold_reason,
        DROP COLUMN legal_hold_at;
    """)
    sql(_checks("LIKE 'enc1.%'"))
