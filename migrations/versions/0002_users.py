"""Users and accounts: users (PII field-encrypted), kyc_records, subscriptions, notification_prefs, sessions,
coach_assignments, and the `users_public` view without encrypted columns.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE TYPE user_status AS ENUM ('pending', 'active', 'suspended', 'closed');
    CREATE TYPE kyc_level AS ENUM ('none', 'basic', 'full');
    CREATE TYPE kyc_document_type AS ENUM ('bvn', 'nin', 'passport', 'ssn', 'drivers_license', 'ghana_card',
                                           'kenya_national_id', 'national_insurance');
    CREATE TYPE kyc_status AS ENUM ('pending', 'verified', 'rejected', 'expired');
    CREATE TYPE subscription_plan AS ENUM ('free', 'plus', 'credit_builder', 'premium');
    CREATE TYPE subscription_status AS ENUM ('trialing', 'active', 'past_due', 'cancelled');
    CREATE TYPE notification_channel AS ENUM ('email', 'sms', 'push', 'whatsapp');
    CREATE TYPE notification_category AS ENUM ('transactions', 'security', 'marketing', 'credit');

    -- PII is encrypted by the application (stores.crypto.FieldCipher, envelope keys) before it reaches
    -- the database; the CHECKs refuse plaintext. *_bidx are keyed hashes (blind indexes) for lookups.
    CREATE TABLE users (
        id                 uuid PRIMARY KEY,
        created_at         timestamptz NOT NULL DEFAULT now(),
        updated_at         timestamptz NOT NULL DEFAULT now(),
        status             user_status NOT NULL DEFAULT 'pending',
        country            char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
        home_currency      text NOT NULL REFERENCES currencies (code),
        kyc_level          kyc_level NOT NULL DEFAULT 'none',
        full_name_enc      text CONSTRAINT users_full_name_encrypted CHECK (full_name_enc LIKE 'enc1.%'),
        email_enc          text CONSTRAINT users_email_encrypted CHECK (email_enc LIKE 'enc1.%'),
        email_bidx         text CONSTRAINT users_email_bidx_format CHECK (email_bidx ~ '^[0-9a-f]{64}$'),
        phone_enc          text CONSTRAINT users_phone_encrypted CHECK (phone_enc LIKE 'enc1.%'),
        phone_bidx         text CONSTRAINT users_phone_bidx_format CHECK (phone_bidx ~ '^[0-9a-f]{64}$'),
        date_of_birth_enc  text CONSTRAINT users_dob_encrypted CHECK (date_of_birth_enc LIKE 'enc1.%'),
        address_enc        text CONSTRAINT users_address_encrypted CHECK (address_enc LIKE 'enc1.%'),
        -- Right to deletion: PII columns are nulled and deleted_at set; money rows stay for the regulator.
        deleted_at         timestamptz,
        CONSTRAINT users_deleted_has_no_pii CHECK (deleted_at IS NULL OR (full_name_enc IS NULL AND
            email_enc IS NULL AND phone_enc IS NULL AND date_of_birth_enc IS NULL AND address_enc IS NULL))
    );
    CREATE UNIQUE INDEX users_email_bidx_key ON users (email_bidx);
    CREATE UNIQUE INDEX users_phone_bidx_key ON users (phone_bidx);
    CREATE INDEX users_country_created ON users (country, created_at);
    CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();

    -- What agent tools may see of a user: no encrypted column at all.
    CREATE VIEW users_public AS
        SELECT id, created_at, updated_at, status, country, home_currency, kyc_level, deleted_at FROM users;

    CREATE TABLE kyc_records (
        id                    uuid PRIMARY KEY,
        user_id               uuid NOT NULL REFERENCES users (id),
        document_type         kyc_document_type NOT NULL,
        document_number_enc   text NOT NULL CONSTRAINT kyc_document_number_encrypted
                                  CHECK (document_number_enc LIKE 'enc1.%'),
        document_number_bidx  text NOT NULL CHECK (document_number_bidx ~ '^[0-9a-f]{64}$'),
        issuing_country       char(2) NOT NULL CHECK (issuing_country ~ '^[A-Z]{2}$'),
        status                kyc_status NOT NULL DEFAULT 'pending',
        provider              text NOT NULL,
        submitted_at          timestamptz NOT NULL DEFAULT now(),
        verified_at           timestamptz,
        expires_at            timestamptz,
        rejection_reason      text,
        CONSTRAINT kyc_verified_has_time CHECK (status <> 'verified' OR verified_at IS NOT NULL),
        CONSTRAINT kyc_rejected_has_reason CHECK (status <> 'rejected' OR rejection_reason IS NOT NULL)
    );
    -- One identity document belongs to one person: the same BVN cannot back two accounts.
    CREATE UNIQUE INDEX kyc_records_document_key ON kyc_records (document_type, document_number_bidx);
    CREATE INDEX kyc_records_user ON kyc_records (user_id);

    CREATE TABLE subscriptions (
        id                  uuid PRIMARY KEY,
        user_id             uuid NOT NULL REFERENCES users (id),
        plan                subscription_plan NOT NULL,
        status              subscription_status NOT NULL,
        price_minor         bigint NOT NULL CHECK (price_minor >= 0),
        currency            text NOT NULL REFERENCES currencies (code),
        started_at          timestamptz NOT NULL,
        current_period_end  timestamptz NOT NULL,
        cancelled_at        timestamptz,
        CONSTRAINT subscriptions_period CHECK (current_period_end > started_at),
        CONSTRAINT subscriptions_cancelled_has_time CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
    );
    CREATE UNIQUE INDEX subscriptions_one_live_per_user ON subscriptions (user_id) WHERE status <> 'cancelled';

    CREATE TABLE notification_prefs (
        user_id     uuid NOT NULL REFERENCES users (id),
        channel     notification_channel NOT NULL,
        category    notification_category NOT NULL,
        enabled     boolean NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, channel, category),
        -- Security alerts by email cannot be switched off.
        CONSTRAINT notification_security_email_on CHECK (category <> 'security' OR channel <> 'email' OR enabled)
    );

    CREATE TABLE sessions (
        id            uuid PRIMARY KEY,
        user_id       uuid NOT NULL REFERENCES users (id),
        token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
        created_at    timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL,
        last_seen_at  timestamptz,
        ip            inet,
        user_agent    text,
        revoked_at    timestamptz,
        CONSTRAINT sessions_expiry_after_creation CHECK (expires_at > created_at)
    );
    CREATE INDEX sessions_user_created ON sessions (user_id, created_at DESC);
    CREATE INDEX sessions_live_expiry ON sessions (expires_at) WHERE revoked_at IS NULL;

    -- Which users a credit coach (token subject) may see.
    CREATE TABLE coach_assignments (
        coach_subject  text NOT NULL CHECK (length(coach_subject) BETWEEN 1 AND 200),
        user_id        uuid NOT NULL REFERENCES users (id),
        assigned_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (coach_subject, user_id)
    );
    CREATE INDEX coach_assignments_user ON coach_assignments (user_id);
    """)


def downgrade() -> None:
    sql("""
    DROP TABLE coach_assignments;
    DROP TABLE sessions;
    DROP TABLE notification_prefs;
    DROP TABLE subscriptions;
    DROP TABLE kyc_records;
    DROP VIEW users_public;
    DROP TABLE users;
    DROP TYPE notification_category;
    DROP TYPE notification_channel;
    DROP TYPE subscription_status;
    DROP TYPE subscription_plan;
    DROP TYPE kyc_status;
    DROP TYPE kyc_document_type;
    DROP TYPE kyc_level;
    DROP TYPE user_status;
    """)
