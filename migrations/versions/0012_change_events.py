"""Change events of the payments database (the transactional outbox the cache invalidation publisher reads),
its consumers' checkpoints, and the credit-builder leaderboard opt-ins.

A service writes its change and the event in one transaction; `pg_notify('change_events', seq)` wakes the
publisher at COMMIT (a notification is delivered only if the transaction commits).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE TABLE change_events (
        seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic       text NOT NULL CHECK (topic ~ '^[a-z_]{1,40}$'),
        entity_id   text NOT NULL CHECK (length(entity_id) BETWEEN 1 AND 200),
        user_id     uuid,
        data        jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX change_events_created ON change_events (created_at);

    CREATE FUNCTION change_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('change_events', NEW.seq::text);
        RETURN NEW;
    END $$;
    CREATE TRIGGER change_events_notify AFTER INSERT ON change_events
        FOR EACH ROW EXECUTE FUNCTION change_events_notify();

    CREATE TABLE change_event_checkpoints (
        consumer    text PRIMARY KEY CHECK (length(consumer) BETWEEN 1 AND 100),
        seq         bigint NOT NULL CHECK (seq >= 0),
        updated_at  timestamptz NOT NULL DEFAULT now()
    );

    -- Credit-builder leaderboards are opt-in and show only a pseudonymous handle.
    CREATE TABLE leaderboard_optins (
        user_id      uuid PRIMARY KEY REFERENCES users (id),
        handle       text NOT NULL UNIQUE CHECK (handle ~ '^[A-Za-z]+-[A-Za-z]+-[0-9]{2,4}$'),
        corridor_id  text NOT NULL REFERENCES corridors (id),
        opted_in_at  timestamptz NOT NULL DEFAULT now()
    );

    GRANT SELECT, INSERT ON change_events TO kredete_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON change_event_checkpoints, leaderboard_optins TO kredete_app;
    """)


def downgrade() -> None:
    sql("""
    DROP TABLE leaderboard_optins;
    DROP TABLE change_event_checkpoints;
    DROP TRIGGER change_events_notify ON change_events;
    DROP FUNCTION change_events_notify();
    DROP TABLE change_events;
    """)
