"""Append-only audit log with a hash chain, partitioned by month.

Every insert (through `audit_append(...)` or a plain INSERT) is chained by a BEFORE INSERT trigger under
a transaction-level advisory lock: the id is drawn and the previous hash read while holding it, so
concurrent appends form one chain in id order. UPDATE, DELETE and TRUNCATE are refused for every role
(and the application roles hold no such privilege either). `audit_chain_head` remembers the last link,
so removing rows from the end is detected too.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from migrations.helpers import monthly_partitions, sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE SEQUENCE audit_logs_id_seq AS bigint;
    CREATE TABLE audit_logs (
        id             bigint NOT NULL,
        occurred_at    timestamptz NOT NULL DEFAULT now(),
        actor_subject  text NOT NULL CHECK (length(actor_subject) BETWEEN 1 AND 200),
        actor_role     text NOT NULL CHECK (length(actor_role) BETWEEN 1 AND 100),
        actor_user_id  uuid,
        action         text NOT NULL CHECK (length(action) BETWEEN 1 AND 200),
        resource       text,
        args_digest    text,
        decision       text NOT NULL CHECK (decision IN ('allowed', 'denied', 'rate_limited', 'error')),
        reason         text,
        rows_returned  integer NOT NULL DEFAULT 0 CHECK (rows_returned >= 0),
        redactions     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(redactions) = 'object'),
        latency_ms     integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
        request_id     text,
        metadata       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
        prev_hash      text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
        hash           text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
        PRIMARY KEY (id, occurred_at)
    ) PARTITION BY RANGE (occurred_at);
    ALTER SEQUENCE audit_logs_id_seq OWNED BY audit_logs.id;
    CREATE INDEX audit_logs_time ON audit_logs (occurred_at DESC);
    CREATE INDEX audit_logs_actor_time ON audit_logs (actor_subject, occurred_at DESC);
    CREATE INDEX audit_logs_user_time ON audit_logs (actor_user_id, occurred_at DESC) WHERE actor_user_id IS NOT NULL;
    CREATE INDEX audit_logs_decision_time ON audit_logs (decision, occurred_at DESC);
    CREATE INDEX audit_logs_id ON audit_logs (id);

    CREATE TABLE audit_chain_head (
        singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        last_id    bigint NOT NULL,
        last_hash  text NOT NULL
    );
    INSERT INTO audit_chain_head VALUES (true, 0, repeat('0', 64));

    -- The canonical text of a row that its hash covers; the verifier recomputes the hash from it.
    -- Scalar arguments, because inside a partition's trigger NEW has the partition's row type.
    CREATE FUNCTION audit_canonical(
        id bigint, occurred_at timestamptz, actor_subject text, actor_role text, actor_user_id uuid,
        action text, resource text, args_digest text, decision text, reason text, rows_returned integer,
        redactions jsonb, latency_ms integer, request_id text, metadata jsonb)
    RETURNS text LANGUAGE sql IMMUTABLE SET search_path = public, pg_temp AS $$
        SELECT jsonb_build_object(
            'id', id,
            'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'actor_subject', actor_subject, 'actor_role', actor_role, 'actor_user_id', actor_user_id,
            'action', action, 'resource', resource, 'args_digest', args_digest, 'decision', decision,
            'reason', reason, 'rows_returned', rows_returned, 'redactions', redactions,
            'latency_ms', latency_ms, 'request_id', request_id, 'metadata', metadata)::text
    $$;

    CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
    DECLARE
        head audit_chain_head;
    BEGIN
        -- One chain: appends serialise here until their transaction ends.
        PERFORM pg_advisory_xact_lock(hashtext('kredete.audit_logs.chain'));
        SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
        NEW.id := nextval('audit_logs_id_seq');
        NEW.prev_hash := head.last_hash;
        NEW.hash := encode(sha256(convert_to(NEW.prev_hash || '|' || audit_canonical(
            NEW.id, NEW.occurred_at, NEW.actor_subject, NEW.actor_role, NEW.actor_user_id, NEW.action, NEW.resource,
            NEW.args_digest, NEW.decision, NEW.reason, NEW.rows_returned, NEW.redactions, NEW.latency_ms,
            NEW.request_id, NEW.metadata), 'UTF8')), 'hex');
        UPDATE audit_chain_head SET last_id = NEW.id, last_hash = NEW.hash WHERE singleton;
        RETURN NEW;
    END $$;
    CREATE TRIGGER audit_chain BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_chain();

    CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_logs is append-only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'audit_logs_append_only';
    END $$;
    CREATE TRIGGER audit_logs_no_update_delete BEFORE UPDATE OR DELETE ON audit_logs
        FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
    CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
        FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only();

    -- The one way the logging role writes: append a row, get its id.
    CREATE FUNCTION audit_append(
        p_actor_subject text, p_actor_role text, p_action text, p_decision text,
        p_actor_user_id uuid DEFAULT NULL, p_resource text DEFAULT NULL, p_args_digest text DEFAULT NULL,
        p_reason text DEFAULT NULL, p_rows_returned integer DEFAULT 0, p_redactions jsonb DEFAULT '{}',
        p_latency_ms integer DEFAULT 0, p_request_id text DEFAULT NULL, p_metadata jsonb DEFAULT '{}',
        p_occurred_at timestamptz DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        new_id bigint;
    BEGIN
        INSERT INTO audit_logs (occurred_at, actor_subject, actor_role, actor_user_id, action, resource,
                                args_digest, decision, reason, rows_returned, redactions, latency_ms,
                                request_id, metadata, prev_hash, hash)
        VALUES (COALESCE(p_occurred_at, clock_timestamp()), p_actor_subject, p_actor_role, p_actor_user_id,
                p_action, p_resource, p_args_digest, p_decision, p_reason, COALESCE(p_rows_returned, 0),
                COALESCE(p_redactions, '{}'), COALESCE(p_latency_ms, 0), p_request_id,
                COALESCE(p_metadata, '{}'), repeat('0', 64), repeat('0', 64))
        RETURNING id INTO new_id;
        RETURN new_id;
    END $$;
    """)
    monthly_partitions("audit_logs")


def downgrade() -> None:
    sql("""
    DROP FUNCTION audit_append(text, text, text, text, uuid, text, text, text, integer, jsonb, integer, text,
                               jsonb, timestamptz);
    DROP TABLE audit_logs;
    DROP FUNCTION audit_logs_append_only();
    DROP FUNCTION audit_chain();
    DROP FUNCTION audit_canonical(bigint, timestamptz, text, text, uuid, text, text, text, text, text, integer,
                                  jsonb, integer, text, jsonb);
    DROP TABLE audit_chain_head;
    """)
