"""Group commit for the audit trail: `audit_append_batch(rows jsonb)` appends the rows of many concurrent calls
in one transaction.

The chain stays one sequence of per-row links (the BEFORE INSERT trigger of 0005 still chains every row, so
`kredete db verify-audit` verifies it unchanged); a batch takes the chain lock once and commits once, so
concurrent callers share one lock hold and one WAL flush instead of queueing one commit each. Rows are
appended in the order given; their ids are returned in that order. Only the log role may call it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE FUNCTION audit_append_batch(p_rows jsonb)
    RETURNS SETOF bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        r record;
        new_id bigint;
    BEGIN
        IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'audit_append_batch expects a JSON array' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR r IN
            SELECT x.* FROM ROWS FROM (jsonb_to_recordset(p_rows) AS (
                actor_subject text, actor_role text, actor_user_id uuid, action text, resource text,
                args_digest text, decision text, reason text, rows_returned integer, redactions jsonb,
                latency_ms integer, request_id text, metadata jsonb, occurred_at timestamptz)) WITH ORDINALITY
                AS x(actor_subject, actor_role, actor_user_id, action, resource, args_digest, decision, reason,
                     rows_returned, redactions, latency_ms, request_id, metadata, occurred_at, ord)
            ORDER BY x.ord
        LOOP
            INSERT INTO audit_logs (occurred_at, actor_subject, actor_role, actor_user_id, action, resource,
                                    args_digest, decision, reason, rows_returned, redactions, latency_ms,
                                    request_id, metadata, prev_hash, hash)
            VALUES (COALESCE(r.occurred_at, clock_timestamp()), r.actor_subject, r.actor_role, r.actor_user_id,
                    r.action, r.resource, r.args_digest, r.decision, r.reason, COALESCE(r.rows_returned, 0),
                    COALESCE(r.redactions, '{}'), COALESCE(r.latency_ms, 0), r.request_id,
                    COALESCE(r.metadata, '{}'), repeat('0', 64), repeat('0', 64))
            RETURNING id INTO new_id;
            RETURN NEXT new_id;
        END LOOP;
    END $$;
    REVOKE EXECUTE ON FUNCTION audit_append_batch(jsonb) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION audit_append_batch(jsonb) TO kredete_agent_log, kredete_app;  -- roles: 0006
    """)


def downgrade() -> None:
    sql("DROP FUNCTION audit_append_batch(jsonb);")
