"""Reference data and shared helpers: currencies, corridors, enum types, partition and trigger helpers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE EXTENSION IF NOT EXISTS pg_trgm;

    -- Money is BIGINT minor units; `exponent` says how many minor units make one major unit.
    CREATE TABLE currencies (
        code      text PRIMARY KEY CHECK (code ~ '^[A-Z]{3,4}$'),
        name      text NOT NULL,
        exponent  smallint NOT NULL CHECK (exponent BETWEEN 0 AND 18),
        kind      text NOT NULL CHECK (kind IN ('fiat', 'stablecoin'))
    );
    INSERT INTO currencies (code, name, exponent, kind) VALUES
        ('NGN', 'Nigerian naira', 2, 'fiat'),
        ('GHS', 'Ghanaian cedi', 2, 'fiat'),
        ('KES', 'Kenyan shilling', 2, 'fiat'),
        ('USD', 'US dollar', 2, 'fiat'),
        ('GBP', 'Pound sterling', 2, 'fiat'),
        ('EUR', 'Euro', 2, 'fiat'),
        ('USDC', 'USD Coin', 6, 'stablecoin'),
        ('USDT', 'Tether USD', 6, 'stablecoin');

    CREATE TABLE corridors (
        id                text PRIMARY KEY,
        source_country    char(2) NOT NULL CHECK (source_country ~ '^[A-Z]{2}$'),
        dest_country      char(2) NOT NULL CHECK (dest_country ~ '^[A-Z]{2}$'),
        source_currency   text NOT NULL REFERENCES currencies (code),
        dest_currency     text NOT NULL REFERENCES currencies (code),
        enabled           boolean NOT NULL DEFAULT true,
        min_amount_minor  bigint NOT NULL CHECK (min_amount_minor > 0),
        max_amount_minor  bigint NOT NULL,
        fee_bps           integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 2000),
        fee_fixed_minor   bigint NOT NULL DEFAULT 0 CHECK (fee_fixed_minor >= 0),
        created_at        timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT corridors_id_format CHECK (id = source_country || '-' || dest_country),
        CONSTRAINT corridors_amount_range CHECK (max_amount_minor >= min_amount_minor),
        CONSTRAINT corridors_distinct_countries CHECK (source_country <> dest_country)
    );
    INSERT INTO corridors (id, source_country, dest_country, source_currency, dest_currency,
                           min_amount_minor, max_amount_minor, fee_bps, fee_fixed_minor, created_at) VALUES
        ('US-NG', 'US', 'NG', 'USD', 'NGN', 100, 1000000, 150, 299, '2024-01-01T00:00:00Z'),
        ('GB-NG', 'GB', 'NG', 'GBP', 'NGN', 100, 800000, 150, 199, '2024-01-01T00:00:00Z'),
        ('US-GH', 'US', 'GH', 'USD', 'GHS', 100, 1000000, 175, 299, '2024-01-01T00:00:00Z'),
        ('GB-GH', 'GB', 'GH', 'GBP', 'GHS', 100, 800000, 175, 199, '2024-01-01T00:00:00Z'),
        ('US-KE', 'US', 'KE', 'USD', 'KES', 100, 1000000, 125, 299, '2024-01-01T00:00:00Z'),
        ('GB-KE', 'GB', 'KE', 'GBP', 'KES', 100, 800000, 125, 199, '2024-01-01T00:00:00Z'),
        ('DE-NG', 'DE', 'NG', 'EUR', 'NGN', 100, 900000, 160, 249, '2024-01-01T00:00:00Z');

    -- Monthly range partitions named <parent>_yYYYY_MM; idempotent, used by migrations and the seeder.
    CREATE FUNCTION ensure_monthly_partitions(parent regclass, first_month date, months integer)
    RETURNS integer LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
    DECLARE
        m date := date_trunc('month', first_month)::date;
        lo date;
        created integer := 0;
        part text;
    BEGIN
        FOR i IN 0 .. months - 1 LOOP
            lo := (m + make_interval(months => i))::date;
            part := format('%s_y%s', parent::text, to_char(lo, 'YYYY_MM'));
            IF to_regclass(part) IS NULL THEN
                -- Bounds are explicit UTC instants, whatever the session time zone.
                EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)', part, parent,
                               lo::text || ' 00:00:00+00',
                               (lo + interval '1 month')::date::text || ' 00:00:00+00');
                created := created + 1;
            END IF;
        END LOOP;
        RETURN created;
    END $$;

    CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.updated_at := now();
        RETURN NEW;
    END $$;
    """)


def downgrade() -> None:
    sql("""
    DROP FUNCTION set_updated_at();
    DROP FUNCTION ensure_monthly_partitions(regclass, date, integer);
    DROP TABLE corridors;
    DROP TABLE currencies;
    DROP EXTENSION IF EXISTS pg_trgm;
    """)
