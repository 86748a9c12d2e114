"""Operational table for resumable seeding: one row per committed batch of a seed run.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sql("""
    CREATE TABLE seed_progress (
        run_key      text NOT NULL,
        batch_no     integer NOT NULL CHECK (batch_no >= 0),
        rows         bigint NOT NULL CHECK (rows >= 0),
        finished_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_key, batch_no)
    );
    """)


def downgrade() -> None:
    sql("DROP TABLE seed_progress;")
